"""Real stores for the report tests: a directory run (``--multi``) with one unreadable input,
an evaluation of it, a CEM pertinent positive and an L2X selection, all made by the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rex_stream.cli.main import main
from tests.onnx_models import save_tiny_cnn
from tests.report.photos import photos_and_a_broken_one

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
DIGITS = MODELS / "digits-mlp.onnx"


@dataclass(frozen=True)
class Stores:
    """Paths of the stores and files one session of report tests shares."""

    folder: Path
    rex: Path
    evaluation: Path
    cem: Path
    l2x: Path
    summary: Path
    photos: int


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    folder = tmp_path_factory.mktemp("report-stores")
    model = save_tiny_cnn(folder / "tiny.onnx", size=32, classes=10)
    photos = photos_and_a_broken_one(folder, 5, seed=0)
    rex = folder / "runs.zarr"
    summary = folder / "run.json"
    arguments = [str(photos), "--model", str(model), "--iters", "2", "--seed", "1", "-q"]
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        code = main([*arguments, "--multi", "3", "--store", str(rex), "--json"])
    assert code == 1  # the broken input fails, the others are explained
    summary.write_text(out.getvalue())
    assert any("error" in item for item in json.loads(out.getvalue()))

    good = folder / "good"
    good.mkdir()
    for number in range(2):
        shutil.copy(photos / f"photo{number}.png", good)
    evaluation = folder / "eval.zarr"
    metrics = "pixel-flipping:features_in_step=64,sparseness"
    with redirect_stdout(StringIO()):
        code = main(
            [
                "evaluate",
                str(good),
                "--model",
                str(model),
                "--attribution",
                f"rex={rex}",
                "--attribution",
                f"same={rex}",
                "--metrics",
                metrics,
                "--store",
                str(evaluation),
            ]
        )
    assert code == 0

    digit = folder / "digit.npy"
    np.save(digit, (np.load(MODELS / "digits-test.npy")[3, None] / 16.0).astype(np.float32))
    train = folder / "train.npy"
    np.save(train, (np.load(MODELS / "digits-train.npy")[:200, None] / 16.0).astype(np.float32))
    cem, l2x, explainer = folder / "cem.zarr", folder / "l2x.zarr", folder / "explainer.npz"
    digits = ["--model", str(DIGITS)]
    with redirect_stdout(StringIO()):
        assert main(["cem", str(digit), *digits, "--steps", "20", "--store", str(cem)]) == 0
        trained = ["l2x-train", str(train), *digits, "--k", "8", "--epochs", "2"]
        assert main([*trained, "--max-gap", "1", "--out", str(explainer)]) == 0
        assert main(["l2x", str(digit), "--explainer", str(explainer), "--store", str(l2x)]) == 0
    return Stores(folder, rex, evaluation, cem, l2x, summary, 5)
