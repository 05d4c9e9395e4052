"""Smaller ways a run went wrong without a word (issue 27, item 20), through the real command:
a complex ``.npy``, ``--mask-value nan``, an empty input name, and ``--iters`` below what a
store already holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from tests.cli.test_cli import _one_line_error, rex


def test_a_complex_npy_is_refused_in_one_line(tiny_cnn: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.random((3, 32, 32)) + 1j * rng.random((3, 32, 32))
    np.save(tmp_path / "complex.npy", values.astype(np.complex64))
    out = rex(str(tmp_path / "complex.npy"), "--model", str(tiny_cnn), "--iters", "1", "-q")
    _one_line_error(out, "holds complex numbers (complex64)")
    assert "ComplexWarning" not in out.stderr
    # the same values as real numbers are explained
    np.save(tmp_path / "real.npy", values.real.astype(np.float32))
    real = rex(str(tmp_path / "real.npy"), "--model", str(tiny_cnn), "--iters", "1", "-q", "-n")
    assert real.returncode == 0, real.stderr


def test_mask_value_nan_is_refused(tiny_cnn: Path, tiny_image: Path) -> None:
    for text in ("nan", "NaN"):
        out = rex(str(tiny_image), "--model", str(tiny_cnn), "--mask-value", text, "-q")
        _one_line_error(out, f"--mask-value {text!r}: masked elements would be NaN")


def test_an_empty_input_name_is_refused(tiny_cnn: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")  # were "" the current folder, this would be read
    out = rex("", "--model", str(tiny_cnn), "-q", cwd=tmp_path)
    _one_line_error(out, "'': an empty input name")


def test_fewer_iterations_than_stored_are_refused_and_more_extend(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.zarr"
    common = (str(tiny_image), "--model", str(tiny_cnn), "--seed", "3", "--store", str(runs),
              "-n", "-q", "--json")  # fmt: skip
    first = rex(*common, "--iters", "4")
    assert first.returncode == 0, first.stderr
    fewer = rex(*common, "--iters", "2", "--resume")
    _one_line_error(fewer, "holds 4 committed iterations of this input, up to #3; --iters 2")
    assert "--iters 4 or more" in fewer.stderr
    more = rex(*common, "--iters", "6", "--resume")
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["stats"]["resumed_iterations"] == 4
    # an uninterrupted 6-iteration run gives the same map: extending changed nothing else
    fresh = tmp_path / "fresh.zarr"
    whole = rex(*common[:-5], "--store", str(fresh), "-n", "-q", "--iters", "6")
    assert whole.returncode == 0, whole.stderr
    extended = np.asarray(zarr.open_group(str(runs), mode="r")["tiny/responsibility"][...])
    direct = np.asarray(zarr.open_group(str(fresh), mode="r")["tiny/responsibility"][...])
    np.testing.assert_array_equal(extended, direct)
