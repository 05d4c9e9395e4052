"""A writer whose lock was taken over touches nothing (issue 27, item 15).

A runs ``--overwrite`` and stalls (SIGSTOP, a long GC pause) past the lock's staleness; B takes
the stale lock over and rebuilds the new result; A wakes up. Before the fix, A's ``close()``
removed ``<key>~new`` while B wrote it, and B marked the group complete with records missing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from rex_stream.engine.lock import BEAT, OWNER, GroupLock
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.errors import StoreError

SETTINGS = {"seed": 1}


def _age_lock(store: Path, key: str) -> None:
    """Make the lock of ``key`` look like a holder's on a host that stopped beating long ago."""
    lock = GroupLock.for_group(store, key)
    owner = lock.path / OWNER
    text = owner.read_text().replace(f'"host": "{os.uname().nodename}"', '"host": "elsewhere"')
    owner.write_text(text)
    past = time.time() - 3600
    for beat in lock.path.glob(f"{BEAT}*"):
        os.utime(beat, (past, past))


def _table(value: float) -> np.ndarray:
    return np.full((3, 6), value)


def test_a_writer_taken_over_leaves_the_new_owners_work_alone(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    old = ExplanationStore.open(store, "photo", SETTINGS, 2)
    old.commit("ledger", Record(0, _table(1.0)))
    old.finish()
    old.close()

    stalled = ExplanationStore.open(store, "photo", SETTINGS, 2, overwrite=True)
    stalled.commit("ledger", Record(0, _table(2.0)))
    _age_lock(store, "photo")  # A is stopped past the lock's staleness

    taker = ExplanationStore.open(store, "photo", SETTINGS, 2, overwrite=True)
    taker.commit("ledger", Record(0, _table(3.0)))
    taker.commit("ledger", Record(1, _table(3.0)))

    # A wakes up: every destructive step is refused, nothing of B's is touched
    with pytest.raises(StoreError, match="lost the lock"):
        stalled.commit("ledger", Record(2, _table(2.0)))
    with pytest.raises(StoreError, match="lost the lock"):
        stalled.finish()
    stalled.close()
    assert (store / "photo~new").is_dir()

    taker.commit("ledger", Record(2, _table(3.0)))
    taker.finish()
    taker.close()
    done = ExplanationStore.open(store, "photo", SETTINGS, 2, resume=True)
    try:
        records = done.committed("ledger")
    finally:
        done.close()
    assert sorted(records) == [0, 1, 2]
    assert all(np.array_equal(r.table, _table(3.0)) for r in records.values())


def test_a_lock_taken_over_is_seen_before_the_heartbeat_notices(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    first = GroupLock.for_group(store, "photo", heartbeat_s=3600)
    first.acquire()
    _age_lock(store, "photo")
    second = GroupLock.for_group(store, "photo")
    second.acquire()
    try:
        with pytest.raises(StoreError, match="lost the lock"):
            first.check()  # the beat thread sleeps an hour: check() must look itself
        first.release()
        assert second.held and second.holder() is not None
        second.check()
    finally:
        second.release()
