"""A stored map scored against another input, model or target than the one it was made for
is refused in one line (issue 27, item 2), unless ``--allow-mismatch`` says to go ahead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rex_stream import evaluate_sync
from rex_stream.errors import InputError
from tests.cli.test_cli import _one_line_error, rex
from tests.onnx_models import save_tiny_cnn


@pytest.fixture(scope="module")
def explained(tiny_cnn: Path, tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the map of ``tiny.png`` under ``tiny_cnn``."""
    runs = tmp_path_factory.mktemp("origin") / "runs.zarr"
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "2", "--seed", "1",
              "--min-box-size", "4", "-n", "--store", str(runs), "-q")  # fmt: skip
    assert out.returncode == 0, out.stderr
    return runs


def _evaluate(photo: Path, model: Path, runs: Path, *extra: str):  # type: ignore[no-untyped-def]
    return rex("evaluate", str(photo), "--model", str(model), "--attribution",
               f"rex={runs}/tiny", "--metrics", "sparseness", "--json", "-q", *extra)  # fmt: skip


def test_the_same_input_model_and_target_are_scored(
    explained: Path, tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    out = _evaluate(tiny_image, tiny_cnn, explained)
    assert out.returncode == 0, out.stderr
    # a copy of the input under another name is still the same input (its tensor's digest)
    copy = tmp_path / "copy.png"
    copy.write_bytes(tiny_image.read_bytes())
    assert _evaluate(copy, tiny_cnn, explained).returncode == 0


def test_another_input_is_refused_and_allowed_with_the_flag(
    explained: Path, tiny_cnn: Path, tmp_path: Path
) -> None:
    dog = tmp_path / "dog.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(dog)
    out = _evaluate(dog, tiny_cnn, explained)
    _one_line_error(out, "another input")
    assert "tiny.png" in out.stderr and "dog.png" in out.stderr and "--allow-mismatch" in out.stderr
    allowed = _evaluate(dog, tiny_cnn, explained, "--allow-mismatch")
    assert allowed.returncode == 0, allowed.stderr
    assert "sparseness" in json.dumps(json.loads(allowed.stdout))


def test_another_model_is_refused(explained: Path, tiny_image: Path, tmp_path: Path) -> None:
    other = save_tiny_cnn(tmp_path / "other.onnx", classes=11)
    _one_line_error(_evaluate(tiny_image, other, explained), "another model (sha256")
    assert _evaluate(tiny_image, other, explained, "--allow-mismatch").returncode == 0


def test_another_target_is_refused(explained: Path, tiny_cnn: Path, tiny_image: Path) -> None:
    import zarr

    stored = zarr.open_group(str(explained), mode="r")["tiny"].attrs["target"]["class"]
    other = str((stored + 1) % 10)
    out = _evaluate(tiny_image, tiny_cnn, explained, "--target", other)
    _one_line_error(out, f"another target (class {stored}, not {other})")


def test_the_library_refuses_and_takes_allow_mismatch(
    explained: Path, tiny_cnn: Path, tmp_path: Path
) -> None:
    dog = tmp_path / "dog.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(dog)
    maps = {"rex": f"{explained}/tiny"}
    with pytest.raises(InputError, match="was made for another input"):
        evaluate_sync(str(dog), str(tiny_cnn), maps, "sparseness")
    result = evaluate_sync(str(dog), str(tiny_cnn), maps, "sparseness", allow_mismatch=True)
    assert len(result.inputs) == 1
