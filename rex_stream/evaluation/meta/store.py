"""A meta-evaluation's units in an input's store group, and the count of units done.

Both MetaQuantus tests (input and model perturbation) split an input's work into the same
units and commit each one as a :class:`~rex_stream.engine.store.Record` when it is done:

- ``meta-original/0`` = ``[target, q…]``: every metric × method scored on x, unperturbed;
- ``meta-copy/<(test × rounds + round) × copies + copy>`` = ``[predicted, kept, q̂…]``: the
  class predicted under one perturbation (a noisy copy of x, or a noisy model), whether the
  input is kept, and the scores under it (NaN when not kept).

Scores are ordered method-major (attribution-major), as ``metric`` records are numbered. A
record of the wrong width (other metrics or methods) is not taken as done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.engine.store import ExplanationStore, Record

ORIGINAL = "meta-original"
COPY = "meta-copy"

#: ``on_progress(units done, units planned, model queries so far)``.
MetaProgressCallback = Callable[[int, int, int], None]


def pack_scores(values: np.ndarray) -> np.ndarray:
    """(metrics, methods) → flat, method-major."""
    return np.asarray(values, np.float64).T.reshape(-1)


def unpack_scores(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat, method-major → (metrics, methods)."""
    return np.asarray(flat, np.float64).reshape(shape[::-1]).T


def unit_index(shape: tuple[int, int, int], test: int, round_: int, copy: int) -> int:
    """The record number of one perturbation unit in a (tests, rounds, copies) plan."""
    return (test * shape[1] + round_) * shape[2] + copy


class MetaGroup:
    """One input's store group: the units it holds, and commits of the new ones."""

    def __init__(self, store: ExplanationStore, scores: tuple[int, int]) -> None:
        self.store = store
        self.scores = scores  # (metrics, methods)
        self.originals: dict[int, Record] = {}
        self.copies: dict[int, Record] = {}

    @classmethod
    async def open(
        cls,
        path: str | Path,
        key: str,
        settings: Mapping[str, Any],
        ndim: int,
        scores: tuple[int, int],
        *,
        resume: bool,
        overwrite: bool,
    ) -> MetaGroup:
        """Open (or create) ``key``'s group, checking a resumed one's settings, and read the
        units it holds."""
        store = ExplanationStore.open(path, key, settings, ndim, resume=resume, overwrite=overwrite)
        group = cls(store, scores)
        try:
            await anyio.to_thread.run_sync(group._read)
        except BaseException:
            store.close()
            raise
        return group

    def _read(self) -> None:
        width = self.scores[0] * self.scores[1]
        self.originals = _of_width(self.store.committed(ORIGINAL), width + 1)
        self.copies = _of_width(self.store.committed(COPY), width + 2)

    @property
    def resumed(self) -> int:
        """Units read back from the store."""
        return len(self.originals) + len(self.copies)

    def original(self) -> np.ndarray | None:
        """q (metrics, methods) if the unperturbed unit is done."""
        record = self.originals.get(0)
        return None if record is None else unpack_scores(record.table[1:], self.scores)

    def copy(self, index: int) -> tuple[bool, np.ndarray] | None:
        """(kept, q̂) of perturbation unit ``index`` if it is done."""
        record = self.copies.get(index)
        if record is None:
            return None
        return bool(record.table[1]), unpack_scores(record.table[2:], self.scores)

    async def commit_original(self, target: int, q: np.ndarray) -> None:
        """Commit the unperturbed unit."""
        table = np.concatenate([[target], pack_scores(q)])
        await anyio.to_thread.run_sync(self.store.commit, ORIGINAL, Record(0, table))

    async def commit_copy(
        self,
        index: int,
        predicted: int,
        kept: bool,
        q_hat: np.ndarray,
        attributes: Mapping[str, Any],
    ) -> None:
        """Commit one perturbation unit."""
        table = np.concatenate([[predicted, float(kept)], pack_scores(q_hat)])
        record = Record(index, table, dict(attributes))
        await anyio.to_thread.run_sync(self.store.commit, COPY, record)

    async def finish(self, summary: Mapping[str, Any]) -> None:
        """Record the summary and mark the group complete."""
        await anyio.to_thread.run_sync(self._finish, summary)

    def _finish(self, summary: Mapping[str, Any]) -> None:
        self.store.update_attributes(summary)
        self.store.finish()

    def close(self) -> None:
        """Release the group's lock."""
        self.store.close()


def _of_width(records: dict[int, Record], width: int) -> dict[int, Record]:
    return {i: r for i, r in records.items() if r.table.shape == (width,)}


class UnitProgress:
    """Counts a meta-evaluation's units (read back or computed) for ``on_progress``."""

    def __init__(
        self,
        planned: int,
        callback: MetaProgressCallback | None,
        queries: Callable[[], int] = lambda: 0,
    ) -> None:
        self.planned = planned
        self.done = 0
        self.callback = callback
        self.queries = queries

    def add(self, units: int = 1) -> None:
        """``units`` more are done."""
        self.done += units
        if self.callback is not None and units:
            self.callback(self.done, self.planned, self.queries())
