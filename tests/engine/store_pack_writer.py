"""A writer for the kill -9 during compaction test: commits RECORDS records of one input's
group, then finishes it (compaction). Usage: python -m tests.engine.store_pack_writer STORE
[--resume]."""

from __future__ import annotations

import sys

import numpy as np

from rex_stream.engine.store import ExplanationStore, Record

RECORDS = 400
SETTINGS = {"method": "pack test"}


def table(index: int) -> np.ndarray:
    """Record ``index``'s table (its own numbers, a shape that varies)."""
    return np.arange(6 * (1 + index % 3), dtype=np.float64).reshape(-1, 6) + index


def write(store: str, resume: bool) -> None:
    opened = ExplanationStore.open(store, "input", SETTINGS, 2, resume=resume)
    try:
        done = opened.committed("ledger")
        for index in range(RECORDS):
            if index not in done:
                opened.commit("ledger", Record(index, table(index), {"iteration": index}))
        opened.finish()
    finally:
        opened.close()


if __name__ == "__main__":
    write(sys.argv[1], "--resume" in sys.argv)
