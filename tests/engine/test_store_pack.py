"""A finished input's records compacted into one pack on a local store: a constant number of
files whatever ``--iters``, exact resume after ``kill -9`` during compaction, more iterations
added to a packed input."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import explain_sync
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.engine.store_pack import write_pack
from tests.engine.store_pack_writer import RECORDS, SETTINGS, table, write
from tests.killing import kill_mid_run

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def test_files_per_finished_input_do_not_grow_with_iterations(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    counts = {}
    for iters in (20, 100):
        store = tmp_path / f"s{iters}.zarr"
        explain_sync(tiny_image, str(tiny_cnn), store=store, iters=iters, seed=4, min_box_size=4)
        counts[iters] = _files(store / "tiny")
        records = ExplanationStore.attach(store, "tiny", 2).committed("ledger")
        assert sorted(records) == list(range(iters))
    # the group, the map and the mask (metadata + chunk each), the ledger group, its pack
    assert counts[20] == counts[100] <= 8, counts


def test_more_iterations_on_a_packed_input_equal_one_run(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    settings = {"seed": 6, "min_box_size": 4}
    straight = explain_sync(tiny_image, str(tiny_cnn), store=tmp_path / "a.zarr", iters=10,
                            **settings)  # fmt: skip
    store = tmp_path / "b.zarr"
    explain_sync(tiny_image, str(tiny_cnn), store=store, iters=6, **settings)
    more = explain_sync(tiny_image, str(tiny_cnn), store=store, iters=10, resume=True, **settings)
    assert more.stats.resumed_iterations == 6
    assert np.array_equal(more.responsibility, straight.responsibility)
    assert [p.name[:5] for p in (store / "tiny" / "ledger").iterdir() if p.is_dir()] == ["pack-"]


def _packs(store: Path) -> int:
    """Packs begun in the group (a pack's folder appears when its writing starts)."""
    return len(list((store / "input" / "ledger").glob("pack-*")))


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2])
def test_kill_during_compaction_resumes_every_record(tmp_path: Path, delay_s: float) -> None:
    """``kill -9`` once the pack is begun (while it is written, or while the records it holds
    are removed): a resumed writer finds every record, each once, and packs them again."""
    store = tmp_path / "s.zarr"
    command = [sys.executable, "-m", "tests.engine.store_pack_writer", str(store)]

    def packing() -> int:
        if _packs(store) and delay_s:
            time.sleep(delay_s)
        return _packs(store)

    try:
        kill_mid_run(command, packing, 1, "pack", timeout_s=120, cwd=ROOT)
    except AssertionError as exc:
        if "ended before" not in str(exc):
            raise  # a writer that finished before the kill: the end state is checked below
    write(str(store), resume=True)
    records = ExplanationStore.attach(store, "input", 2).committed("ledger")
    assert sorted(records) == list(range(RECORDS))
    for index, record in records.items():
        assert np.array_equal(record.table, table(index)), index
        assert dict(record.attributes) == {"iteration": index}
    (pack,) = (p for p in (store / "input" / "ledger").iterdir() if p.is_dir())
    assert pack.name.startswith("pack-")


def test_a_pack_torn_by_kill_is_ignored_and_replaced(tmp_path: Path) -> None:
    """``kill -9`` while the pack itself is written leaves it uncommitted: its records are
    read from the single ones, and the next compaction removes it."""
    store = tmp_path / "s.zarr"
    opened = ExplanationStore.open(store, "input", SETTINGS, 2)
    try:
        for index in range(5):
            opened.commit("ledger", Record(index, table(index), {"iteration": index}))
        records_group = opened.group["ledger"]
        assert isinstance(records_group, zarr.Group)
        torn = write_pack(records_group, {i: Record(i, table(i) + 1) for i in range(5)})
        records_group[torn].update_attributes({"committed": False})
    finally:
        opened.close()
    write(str(store), resume=True)
    records = ExplanationStore.attach(store, "input", 2).committed("ledger")
    assert sorted(records) == list(range(RECORDS))
    assert all(np.array_equal(r.table, table(i)) for i, r in records.items())
    (pack,) = (p for p in (store / "input" / "ledger").iterdir() if p.is_dir())
    assert pack.name != torn
