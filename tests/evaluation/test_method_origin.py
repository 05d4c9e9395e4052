"""CEM and L2X stores record the input, model and target their map was made for, as a ReX
store does, and ``evaluate`` refuses a mismatch unless ``--allow-mismatch`` (issue 27, item 2);
a plain ``.npy`` records nothing, and evaluate says so in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.cli.test_cli import _one_line_error, rex

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
DIGITS = MODELS / "digits-mlp.onnx"


def _digit(path: Path, row: int) -> Path:
    np.save(path, (np.load(MODELS / "digits-test.npy")[row, None] / 16.0).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CEM store and an L2X store (judged by the model) of ``digit.npy``, and a second
    digit, a copy of the first under another name and a copy of the model."""
    import onnx

    folder = tmp_path_factory.mktemp("method-origin")
    digit, other = _digit(folder / "digit.npy", 3), _digit(folder / "other.npy", 11)
    copy = folder / "renamed.npy"
    copy.write_bytes(digit.read_bytes())
    model = onnx.load(str(DIGITS))
    model.doc_string = "the same network, another file"  # another sha256, the same answers
    retrained = folder / "retrained.onnx"
    onnx.save(model, str(retrained))
    train = folder / "train.npy"
    np.save(train, (np.load(MODELS / "digits-train.npy")[:200, None] / 16.0).astype(np.float32))
    cem, l2x, explainer = folder / "cem.zarr", folder / "l2x.zarr", folder / "explainer.npz"
    ran = rex("cem", str(digit), "--model", str(DIGITS), "--steps", "40", "--store", str(cem), "-q")
    assert ran.returncode == 0, ran.stderr
    ran = rex("l2x-train", str(train), "--model", str(DIGITS), "--k", "8", "--epochs", "5",
              "--max-gap", "1", "--out", str(explainer), "-q")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    ran = rex("l2x", str(digit), "--explainer", str(explainer), "--model", str(DIGITS),
              "--store", str(l2x))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return {"digit": digit, "other": other, "copy": copy, "cem": cem, "l2x": l2x,
            "retrained": retrained}  # fmt: skip


def _evaluate(photo: Path, model: Path, attribution: str, *extra: str):  # type: ignore[no-untyped-def]
    return rex("evaluate", str(photo), "--model", str(model), "--attribution", attribution,
               "--metrics", "sparseness", "--json", *extra)  # fmt: skip


@pytest.mark.parametrize("method", ["cem", "l2x"])
def test_the_store_records_the_origin(stores: dict[str, Path], method: str) -> None:
    group = zarr.open_group(str(stores[method]), mode="r")["digit"]
    settings = group.attrs["settings"]
    assert settings["model"]["identity"]["sha256"]
    assert group.attrs["source"] == str(stores["digit"])
    assert isinstance(group.attrs["target"]["class"], int)


@pytest.mark.parametrize("method", ["cem", "l2x"])
def test_the_same_input_under_another_name_is_scored(stores: dict[str, Path], method: str) -> None:
    for photo in (stores["digit"], stores["copy"]):
        out = _evaluate(photo, DIGITS, f"m={stores[method]}/digit")
        assert out.returncode == 0, out.stderr
        assert "sparseness" in json.dumps(json.loads(out.stdout))


@pytest.mark.parametrize("method", ["cem", "l2x"])
def test_another_input_or_model_is_refused_unless_allowed(
    stores: dict[str, Path], method: str
) -> None:
    attribution = f"m={stores[method]}/digit"
    _one_line_error(_evaluate(stores["other"], DIGITS, attribution), "another input")
    _one_line_error(
        _evaluate(stores["digit"], stores["retrained"], attribution), "another model (sha256"
    )
    allowed = _evaluate(stores["other"], stores["retrained"], attribution, "--allow-mismatch")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("method", ["cem", "l2x"])
def test_another_target_is_refused(stores: dict[str, Path], method: str) -> None:
    stored = zarr.open_group(str(stores[method]), mode="r")["digit"].attrs["target"]["class"]
    other = str((stored + 1) % 10)
    out = _evaluate(stores["digit"], DIGITS, f"m={stores[method]}/digit", "--target", other)
    _one_line_error(out, f"another target (class {stored}, not {other})")


def test_a_plain_npy_says_in_one_line_that_it_cannot_be_checked(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    plain = tmp_path / "map.npy"
    np.save(plain, np.random.default_rng(0).random((8, 8)))
    out = _evaluate(stores["digit"], DIGITS, f"m={plain}", "-q")
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if "cannot be checked" in line]
    assert len(said) == 1 and str(plain) in said[0], out.stderr
    stored = _evaluate(stores["digit"], DIGITS, f"m={stores['cem']}/digit", "-q")
    assert "cannot be checked" not in stored.stderr
