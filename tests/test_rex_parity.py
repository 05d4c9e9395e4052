"""ReX 0.4.1 itself (its venv: REX_STREAM_REX_PYTHON) against rex-stream on the same ONNX model
and picture: the options that must mean the same in both."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import zlib
from ast import literal_eval
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_cli import rex

REX_PYTHON = os.environ.get("REX_STREAM_REX_PYTHON")
needs_rex = pytest.mark.skipif(
    not REX_PYTHON, reason="REX_STREAM_REX_PYTHON (a ReX 0.4.1 venv) is not set"
)

#: Runs ReX's command line once per config file, in one process (torch is imported once).
REX_RUNS = """
import sys
from rex_xai.rex_wrapper import main
image, model, *configs = sys.argv[1:]
for config in configs:
    sys.argv = ["ReX", image, "--model", model, "-c", config, "-vv", "-n"]
    main()
"""


@needs_rex
def test_per_iteration_mask_values_are_rex_values(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """``mask_value = random`` (seeded) and ``linear``: ReX logs each iteration's value
    ("using 0.788 for process 1"); rex-stream uses the same ones, in the same order."""
    configs = []
    for kind in ("random", "linear"):
        path = tmp_path / f"{kind}.toml"
        path.write_text(
            f'[rex]\nmask_value = "{kind}"\nseed = 7\ngpu = false\n'
            "[causal]\niters = 4\nmin_box_size = 4\n"
        )
        configs.append(path)
    ran = subprocess.run(
        [str(REX_PYTHON), "-c", REX_RUNS, str(tiny_image), str(tiny_cnn), *map(str, configs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    text = ran.stdout + ran.stderr  # ReX logs to stdout
    logged = [float(v) for v in re.findall(r"using (-?[\d.]+) for process \d+", text)]
    assert len(logged) == 8
    for number, config in enumerate(configs):
        out = rex(str(tiny_image), "--model", str(tiny_cnn), "-c", str(config), "-n", "--json")
        assert out.returncode == 0, out.stderr
        ours = json.loads(out.stdout)["mask_values"]
        assert ours == pytest.approx(logged[4 * number : 4 * number + 4], abs=5e-4)


#: A ReX detector script: tiny_cnn in onnxruntime, every prediction carrying one fixed box.
DETECTOR = """
import numpy as np
import onnxruntime as ort
from PIL import Image
from rex_xai.input.input_data import Data
from rex_xai.responsibility.prediction import Prediction

SESSION = ort.InferenceSession({model!r})
BOX = np.array({box})
model_shape = ["N", 3, 32, 32]


def preprocess(path, shape, device, mode=None):
    data = Data(Image.open(path).convert("RGB"), shape, device)
    data.generic_image_preprocess(norm=255.0)
    return data


def prediction_function(mutants, target=None, raw=False, binary_threshold=None):
    batch = np.asarray(mutants, dtype=np.float32).reshape(-1, 3, 32, 32)
    logits = SESSION.run(None, {{"input": batch}})[0]
    rows = np.exp(logits - logits.max(axis=1, keepdims=True))
    rows /= rows.sum(axis=1, keepdims=True)
    if raw:
        return rows
    return [Prediction(int(r.argmax()), float(r.max()), BOX) for r in rows]
"""


@needs_rex
def test_bounding_box_bounds_the_map_as_in_rex(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """ReX with a detector script and ``use_bounding_box``, rex-stream with the same box: in
    both, responsibility lies only inside the box, read as (x0, y0, x1, y1) — columns x,
    rows y (the box is not square, so a transposed reading would show)."""
    box = (2, 10, 14, 30)
    script = tmp_path / "detector.py"
    script.write_text(DETECTOR.format(model=str(tiny_cnn), box=list(box)))
    config = tmp_path / "box.toml"
    config.write_text(
        "[rex]\nseed = 3\ngpu = false\n[causal]\niters = 3\nmin_box_size = 4\n"
        'use_bounding_box = true\nresponsibility_style = "additive"\n'
    )
    database = tmp_path / "rex.db"
    ran = subprocess.run(
        [
            str(REX_PYTHON),
            "-c",
            "import sys; from rex_xai.rex_wrapper import main; sys.argv[0] = 'ReX'; main()",
            str(tiny_image),
            "--script",
            str(script),
            "-c",
            str(config),
            "-db",
            str(database),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-2000:]
    rex_map = _rex_map(database)
    store = tmp_path / "ours.zarr"
    out = rex(
        str(tiny_image),
        "--model",
        str(tiny_cnn),
        "-c",
        str(config),
        "--bounding-box",
        ",".join(map(str, box)),
        "-n",
        "--store",
        str(store),
    )
    assert out.returncode == 0, out.stderr
    ours = _stored_map(store)
    inside = np.zeros((32, 32), bool)
    inside[box[1] : box[3], box[0] : box[2]] = True
    for found in (rex_map, ours):
        assert found.shape == (32, 32)
        assert not np.any(found[~inside]) and np.count_nonzero(found[inside]) > inside.sum() / 2


def _rex_map(database: Path) -> np.ndarray:
    with sqlite3.connect(database) as connection:
        blob, shape = connection.execute(
            "SELECT responsibility, responsibility_shape FROM rex"
        ).fetchone()
    return np.frombuffer(zlib.decompress(blob), np.float32).reshape(literal_eval(shape))


def _stored_map(store: Path) -> np.ndarray:
    import zarr

    root = zarr.open_group(str(store), mode="r")
    (name,) = list(root.group_keys())
    return np.asarray(root[name]["responsibility"][...])
