"""The causal method's side of the store seam: iterations as engine :class:`Record` s.

An iteration becomes one record of kind ``"ledger"``: its ledger table (``start[0..d),
stop[0..d), class, amount`` per row) and its run statistics as attributes.
"""

from __future__ import annotations

from rex_stream.causal.responsibility import Ledger
from rex_stream.causal.search import IterationResult
from rex_stream.engine.store import ExplanationStore, Record

LEDGER = "ledger"
_STATS = ("passing", "failing", "depth", "box_area_sum", "box_count")


def to_record(result: IterationResult) -> Record:
    """The record that stores ``result``."""
    return Record(
        result.index,
        result.ledger.to_array(),
        {name: getattr(result, name) for name in _STATS},
    )


def from_record(record: Record, ndim: int) -> IterationResult:
    """The iteration a record holds."""
    attrs = record.attributes
    return IterationResult(
        index=record.index,
        ledger=Ledger.from_array(record.table, ndim),
        passing=int(attrs["passing"]),
        failing=int(attrs["failing"]),
        depth=int(attrs["depth"]),
        box_area_sum=float(attrs["box_area_sum"]),
        box_count=int(attrs["box_count"]),
    )


def committed_iterations(store: ExplanationStore) -> dict[int, IterationResult]:
    """Every iteration the store holds completely, by index."""
    return {i: from_record(r, store.ndim) for i, r in store.committed(LEDGER).items()}


def commit_iteration(store: ExplanationStore, result: IterationResult) -> None:
    """Commit one finished iteration."""
    store.commit(LEDGER, to_record(result))
