"""--overwrite replaces a finished result only once the new one is complete."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import zarr

from rex_stream import BackendError, explain_sync
from rex_stream.adapters.python import PythonBackend

SETTINGS = {"iters": 4, "min_box_size": 4}


def _failing_backend(model: Path, calls_before_failure: int) -> PythonBackend:
    """The ONNX model, until its ``calls_before_failure``-th call raises (a server going down)."""
    session = ort.InferenceSession(str(model))
    calls = 0

    def score(batch: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls > calls_before_failure:
            raise BackendError("the server went away")
        return session.run(None, {"input": batch})[0]

    return PythonBackend(score, (3, 32, 32), name="tiny_cnn.onnx", max_inflight=1)


def _entries(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir())


def test_a_failed_overwrite_keeps_the_old_result(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.zarr"
    old = explain_sync(tiny_image, str(tiny_cnn), store=store, seed=1, **SETTINGS)
    before = _entries(store / "tiny")
    with pytest.raises(BackendError, match="went away"):
        explain_sync(
            tiny_image,
            _failing_backend(tiny_cnn, 5),
            store=store,
            overwrite=True,
            seed=2,
            **SETTINGS,
        )
    assert _entries(store) == ["tiny", "zarr.json"]  # no half-built sibling left behind
    assert not (tmp_path / "s.zarr.locks").exists()  # the lock was released
    group = zarr.open_group(str(store), mode="r")["tiny"]
    assert _entries(store / "tiny") == before
    assert group.attrs["settings"]["seed"] == 1 and group.attrs["complete"]
    assert np.array_equal(group["responsibility"][:], old.responsibility)
    # the old result still resumes; a complete overwrite then replaces it
    again = explain_sync(tiny_image, str(tiny_cnn), store=store, resume=True, **SETTINGS)
    assert again.stats.resumed_iterations == 4
    new = explain_sync(tiny_image, str(tiny_cnn), store=store, overwrite=True, seed=2, **SETTINGS)
    group = zarr.open_group(str(store), mode="r")["tiny"]
    assert group.attrs["settings"]["seed"] == 2
    assert np.array_equal(group["responsibility"][:], new.responsibility)
    assert _entries(store) == ["tiny", "zarr.json"]


@pytest.mark.parametrize("finished", [True, False])
def test_an_overwrite_killed_mid_swap_is_settled(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path, finished: bool
) -> None:
    """Killed between the swap's two renames: the next open finishes the swap when the new
    result was complete, and otherwise puts the old one back."""
    store = tmp_path / "s.zarr"
    old = explain_sync(tiny_image, str(tiny_cnn), store=store, seed=1, **SETTINGS)
    side = tmp_path / "side.zarr"
    new = explain_sync(tiny_image, str(tiny_cnn), store=side, seed=2, **SETTINGS)
    shutil.copytree(side / "tiny", store / "tiny~new")
    if not finished:
        group = zarr.open_group(str(store / "tiny~new"), mode="a")
        group.attrs["complete"] = False
    (store / "tiny").rename(store / "tiny~old")
    resumed = explain_sync(tiny_image, str(tiny_cnn), store=store, resume=True, **SETTINGS)
    expected = new if finished else old
    assert resumed.seed == expected.seed and resumed.stats.resumed_iterations == 4
    assert np.array_equal(resumed.responsibility, expected.responsibility)
    assert _entries(store) == ["tiny", "zarr.json"]


def test_a_resumed_group_is_complete_only_once_finished(
    tiny_image: Path, tiny_cnn: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.zarr"
    explain_sync(tiny_image, _failing_backend(tiny_cnn, 10**6), store=store, **SETTINGS)
    assert zarr.open_group(str(store), mode="r")["tiny"].attrs["complete"] is True
    more = {**SETTINGS, "iters": 8}  # more iterations: the resumed run writes again
    with pytest.raises(BackendError, match="went away"):
        explain_sync(tiny_image, _failing_backend(tiny_cnn, 3), store=store, resume=True, **more)
    assert zarr.open_group(str(store), mode="r")["tiny"].attrs["complete"] is False
    explain_sync(tiny_image, _failing_backend(tiny_cnn, 10**6), store=store, resume=True, **more)
    assert zarr.open_group(str(store), mode="r")["tiny"].attrs["complete"] is True
