"""The library's entry points with bad values raise the library's own errors (a
``RexStreamError`` subclass naming the setting), never a TypeError or numpy's ValueError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rex_stream as rs
from rex_stream.evaluation.metrics.registry import choose

Call = Callable[[Path, Path, Path], Any]


def _map(folder: Path) -> Path:
    np.save(folder / "map.npy", np.random.default_rng(1).random((32, 32)))
    return folder / "map.npy"


#: name → (the call from (model, picture, a folder), the error class, what it must say)
CASES: dict[str, tuple[Call, type[rs.RexStreamError], str]] = {
    "iters as text": (
        lambda m, p, f: rs.explain_sync(p, m, iters="ten"),
        rs.ConfigError,
        "causal.iters = 'ten' must be a whole number",
    ),
    "iters as a fraction": (
        lambda m, p, f: rs.explain_sync(p, m, iters=2.5),
        rs.ConfigError,
        "must be a whole number",
    ),
    "means as text": (
        lambda m, p, f: rs.explain_sync(p, m, iters=1, means="abc"),
        rs.ConfigError,
        "rex.onnx.means",
    ),
    "one path to explain_many": (
        lambda m, p, f: rs.explain_many_sync(p, m, iters=1),  # would iterate its characters
        rs.ConfigError,
        "a list of inputs",
    ),
    "explain_many at 0 inputs at once": (
        lambda m, p, f: rs.explain_many_sync([p], m, iters=1, concurrent_inputs=0),
        rs.ConfigError,
        "concurrent_inputs = 0",
    ),
    "evaluate with a negative seed": (
        lambda m, p, f: rs.evaluate_sync(p, m, {"a": _map(f)}, choose("sparseness"), seed=-1),
        rs.ConfigError,
        "seed = -1",
    ),
    "evaluate at 0 inputs at once": (
        lambda m, p, f: rs.evaluate_sync(
            p, m, {"a": _map(f)}, choose("sparseness"), concurrent_inputs=0
        ),
        rs.ConfigError,
        "concurrent_inputs = 0",
    ),
    "meta-evaluation with negative noise": (
        lambda m, p, f: rs.meta_evaluate_sync(
            p, m, {"a": _map(f)}, choose("sparseness"), noise_resilience=-1
        ),
        rs.ConfigError,
        "noise levels must be numbers > 0",
    ),
    "an unknown CEM kind": (lambda m, p, f: rs.CemConfig(kind="xx"), rs.ConfigError, "cem.kind"),
    "a CEM seed below 0": (lambda m, p, f: rs.CemConfig(seed=-1), rs.ConfigError, "cem.seed"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_value_is_a_rex_stream_error(
    name: str, tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    call, error, needle = CASES[name]
    with pytest.raises(error) as raised:
        call(tiny_cnn, tiny_image, tmp_path)
    assert needle in str(raised.value)


#: A model module whose function fails on every batch (imported from a temporary folder).
FAILING_MODEL = """
import numpy as np
input_shape = (3, 32, 32)
def raises(batch):
    raise RuntimeError("boom")
"""

#: name → a blocking entry point called with a failing backend spec, the input and a folder
BLOCKING: dict[str, Callable[[str, Path, Path], Any]] = {
    "explain_sync": lambda b, p, f: rs.explain_sync(p, b, iters=1),
    "explain_many_sync": lambda b, p, f: rs.explain_many_sync([p], b, iters=1),
    "explain_cem_sync": lambda b, p, f: rs.explain_cem_sync(p, b, rs.CemConfig(steps=1)),
    "evaluate_sync": lambda b, p, f: rs.evaluate_sync(
        p, b, {"a": _map(f)}, choose("pixel-flipping")
    ),
}


@pytest.mark.parametrize("name", list(BLOCKING))
def test_blocking_entry_points_raise_the_library_error(
    name: str, tiny_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend failing inside the run's task groups comes out as a BackendError, never as an
    exception group, whichever blocking entry point ran it."""
    (tmp_path / "rexapi_failing.py").write_text(FAILING_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(rs.BackendError) as raised:
        BLOCKING[name]("python:rexapi_failing:raises", tiny_image, tmp_path)
    assert "boom" in str(raised.value)
