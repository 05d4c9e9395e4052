"""The torch path of ``--script``: a ReX user's script with a torch ``model``, a ``preprocess``
that returns a torch tensor and a ``prediction_function`` that takes torch mutants and returns
torch probabilities (or ReX-style predictions). It must give the same map as the same model
in ONNX through ``--model``.

torch is an optional dependency of nothing in rex-stream, and the test venv does not carry it
(about 800 MB, and it would silently turn every script test's mutants into tensors). The CLI
runs in a subprocess of this interpreter: with torch when this interpreter has it, else with
the torch of ReX 0.4.1's venv (REX_STREAM_REX_PYTHON, torch 2.13 CPU) appended to the end of
``sys.path`` (so every other package still comes from this venv); otherwise the test skips.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cli import rex
from tests.onnx_models import planted_image

#: Runs the CLI with ``argv[1]`` (a site-packages folder holding torch, or "") appended to
#: ``sys.path``, the rest as the CLI's arguments.
RUN_CLI = """
import runpy, sys
if sys.argv[1]:
    sys.path.append(sys.argv[1])
sys.argv = ["rex-stream", *sys.argv[2:]]
runpy.run_module("rex_stream.cli", run_name="__main__", alter_sys=True)
"""

SCRIPT = """
import torch
import torch.nn.functional as F
from PIL import Image


class PatchNet(torch.nn.Module):
    \"\"\"The patch model of tests/onnx_models.py: logits [2, Σ w·x / 9].\"\"\"

    def __init__(self, weights):
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights) / 9.0)

    def forward(self, x):
        evidence = (x * self.weights).sum(dim=(1, 2, 3))
        return torch.stack([torch.full_like(evidence, 2.0), evidence], dim=1)


model = PatchNet({weights})
model.eval()


class Data:
    def __init__(self, data):
        self.data = data


class Prediction:
    def __init__(self, classification, confidence):
        self.classification = classification
        self.confidence = confidence


def model_shape():
    return ["N", 1, 24, 24]


def preprocess(path, shape, device, mode):
    pixels = torch.tensor(list(Image.open(path).convert("L").getdata()), dtype=torch.float32)
    return Data((pixels / 255.0).reshape(1, 1, 24, 24).to(device))


def prediction_function(mutants, target=None, raw=False, binary_threshold=None):
    if not isinstance(mutants, torch.Tensor):
        raise TypeError(f"expected torch mutants, got {{type(mutants).__name__}}")
    with torch.no_grad():
        probabilities = F.softmax(model(mutants), dim=1)
    if raw:
        return probabilities
    return [Prediction(int(p.argmax()), float(p.max())) for p in probabilities]
"""


@cache
def torch_site() -> str | None:
    """ "" when this interpreter imports torch; else the site-packages folder of ReX's venv
    when torch imports from it next to this venv's numpy; else None."""
    if importlib.util.find_spec("torch") is not None:
        return ""
    rex_python = os.environ.get("REX_STREAM_REX_PYTHON")
    if not rex_python:
        return None
    venv = Path(rex_python).parent.parent  # the venv's python is <venv>/bin/python
    sites = [p for p in venv.glob("lib/python*/site-packages") if (p / "torch").is_dir()]
    if not sites:
        return None
    site = str(sites[0])
    check = (
        f"import sys; sys.path.append({site!r}); import numpy, torch; "
        "torch.from_numpy(numpy.ones(2))"
    )
    usable = subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=120)
    return site if usable.returncode == 0 else None


def rex_with_torch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    site = torch_site()
    assert site is not None
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI, site, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_torch_script_gives_the_onnx_models_map(patch_model: Path, tmp_path: Path) -> None:
    if torch_site() is None:
        pytest.skip(
            "no torch: not in this venv, and REX_STREAM_REX_PYTHON (ReX 0.4.1's venv, with "
            "torch 2.13 CPU) is unset or its torch does not import here"
        )
    from tests.onnx_models import patch_weights

    picture = tmp_path / "planted.png"
    Image.fromarray((planted_image()[0] * 255).round().astype(np.uint8)).save(picture)
    script = tmp_path / "torch_script.py"
    script.write_text(SCRIPT.format(weights=patch_weights().tolist()))
    common = ["--iters", "3", "--seed", "4", "--min-box-size", "4", "--json"]
    maps = {}
    for name, model in (
        ("torch", ["--script", str(script)]),
        ("onnx", ["--model", str(patch_model)]),
    ):
        store = tmp_path / f"{name}.zarr"
        run = rex_with_torch if name == "torch" else rex
        out = run(str(picture), *model, *common, "--store", str(store), cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        summary = json.loads(out.stdout)
        maps[name] = (summary, _stored_map(store))
    torch_summary, torch_map = maps["torch"]
    onnx_summary, onnx_map = maps["onnx"]
    assert torch_summary["target"]["class"] == onnx_summary["target"]["class"] == 1
    assert torch_summary["target"]["confidence"] == pytest.approx(
        onnx_summary["target"]["confidence"], abs=1e-5
    )
    assert torch_summary["stats"]["queries"] == onnx_summary["stats"]["queries"]
    assert torch_summary["explanation"]["area"] == onnx_summary["explanation"]["area"]
    assert np.allclose(torch_map, onnx_map, rtol=1e-4, atol=1e-6) and torch_map.max() > 0


def _stored_map(store: Path) -> np.ndarray:
    import zarr

    root = zarr.open_group(str(store), mode="r")
    (name,) = list(root.group_keys())
    return np.asarray(root[name]["responsibility"][...])


def test_torch_script_errors_are_one_line(tmp_path: Path) -> None:
    """A torch script whose prediction fails: one line naming the script and the error."""
    if torch_site() is None:
        pytest.skip("no torch here nor in REX_STREAM_REX_PYTHON's venv")
    script = tmp_path / "broken.py"
    script.write_text(
        "import torch\n"
        "def model_shape():\n    return ['N', 1, 24, 24]\n"
        "def preprocess(path, shape, device, mode):\n    return torch.zeros(1, 1, 24, 24)\n"
        "def prediction_function(mutants, target=None, raw=False, binary_threshold=None):\n"
        "    return torch.ones(3, 3) @ mutants\n"
    )
    picture = tmp_path / "in.png"
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(picture)
    out = rex_with_torch(str(picture), "--script", str(script), "--iters", "1", cwd=tmp_path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "prediction_function failed (RuntimeError" in lines[0]
