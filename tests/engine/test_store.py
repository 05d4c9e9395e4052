"""The Zarr store: layout readable with plain zarr, exact resume after kill -9, settings checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import StoreError, explain_sync
from rex_stream.engine.store import ExplanationStore
from tests.killing import kill_mid_run
from tests.slow_run import SETTINGS, slow_backend

ROOT = Path(__file__).resolve().parents[2]


def _committed(store: Path) -> int:
    ledger = store / "tiny" / "ledger"
    if not ledger.exists():
        return 0
    count = 0
    for entry in ledger.iterdir():
        meta = entry / "zarr.json"
        if meta.exists() and '"committed": true' in meta.read_text(errors="ignore"):
            count += 1
    return count


def test_store_layout_opens_with_plain_zarr(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    store = tmp_path / "out.zarr"
    result = explain_sync(tiny_image, str(tiny_cnn), store=store, iters=4, seed=2, min_box_size=4)
    group = zarr.open_group(str(store), mode="r")["tiny"]
    assert np.array_equal(group["responsibility"][:], result.responsibility)
    assert group["explanation"][:].astype(bool).tolist() == result.mask.tolist()  # type: ignore[union-attr]
    (pack,) = group["ledger"].array_keys()  # the finished input's records, compacted
    assert pack.startswith("pack-") and len(group["ledger"][pack].attrs["records"]) == 4
    records = ExplanationStore.attach(store, "tiny", 2).committed("ledger")
    assert sorted(records) == list(range(4))
    attrs = dict(group.attrs)
    assert attrs["target"]["class"] == result.target.classification
    assert attrs["settings"]["seed"] == 2
    assert attrs["stats"]["queries"] == result.stats.queries


def test_resume_after_kill_9_gives_the_same_map(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    reference = explain_sync(tiny_image, slow_backend(str(tiny_cnn)), **SETTINGS).responsibility
    store = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "tests.slow_run", str(tiny_cnn), str(tiny_image), str(store)]
    kill_mid_run(command, lambda: _committed(store), 3, "iteration", 60, cwd=ROOT)
    done_before = _committed(store)
    assert 3 <= done_before < SETTINGS["iters"]
    resumed = explain_sync(
        tiny_image, slow_backend(str(tiny_cnn)), store=store, resume=True, **SETTINGS
    )
    assert resumed.stats.resumed_iterations >= 3
    assert np.array_equal(resumed.responsibility, reference)
    stored = zarr.open_group(str(store), mode="r")["tiny/responsibility"][:]
    assert np.array_equal(stored, reference)


def test_existing_store_needs_resume_or_overwrite(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.zarr"
    explain_sync(tiny_image, str(tiny_cnn), store=store, iters=2, seed=1, min_box_size=4)
    with pytest.raises(StoreError, match="already exists"):
        explain_sync(tiny_image, str(tiny_cnn), store=store, iters=2, seed=1, min_box_size=4)
    with pytest.raises(StoreError, match="different settings"):
        explain_sync(
            tiny_image, str(tiny_cnn), store=store, resume=True, iters=2, seed=1, min_box_size=8
        )
    again = explain_sync(
        tiny_image, str(tiny_cnn), store=store, resume=True, iters=3, min_box_size=4
    )  # seed comes from the store; one more iteration
    assert again.seed == 1 and again.stats.resumed_iterations == 2
    explain_sync(
        tiny_image, str(tiny_cnn), store=store, overwrite=True, iters=2, seed=9, min_box_size=4
    )


def test_many_groups_of_a_new_store_open_at_once(tmp_path: Path) -> None:
    """Threads opening different inputs' groups of a store that does not exist yet."""
    from concurrent.futures import ThreadPoolExecutor

    from rex_stream.engine.store import ExplanationStore

    def open_one(index: int) -> str:
        path = tmp_path / f"new{index // 8}.zarr"
        store = ExplanationStore.open(path, f"input{index}", {"n": index}, 2)
        try:
            return store.location
        finally:
            store.close()

    with ThreadPoolExecutor(8) as pool:
        locations = list(pool.map(open_one, range(64)))
    assert len(set(locations)) == 64
