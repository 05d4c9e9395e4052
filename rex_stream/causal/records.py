"""The causal method's side of the store seam: iterations as engine :class:`Record` s.

An iteration becomes one record of kind ``"ledger"``: its ledger table (``start[0..d),
stop[0..d), class, amount`` per row) and its run statistics as attributes (with the
iteration's own mask value when the run sweeps it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rex_stream.causal.responsibility import Ledger
from rex_stream.causal.search import IterationResult
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.errors import StoreError

LEDGER = "ledger"
_STATS = ("passing", "failing", "depth", "box_area_sum", "box_count")


def to_record(result: IterationResult) -> Record:
    """The record that stores ``result``."""
    attributes = {name: getattr(result, name) for name in _STATS}
    if result.mask_value is not None:
        attributes["mask_value"] = result.mask_value
    return Record(result.index, result.ledger.to_array(), attributes)


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
        mask_value=float(attrs["mask_value"]) if "mask_value" in attrs else None,
    )


def committed_iterations(store: ExplanationStore) -> dict[int, IterationResult]:
    """Every iteration the store holds completely, by index."""
    return {i: from_record(r, store.ndim) for i, r in store.committed(LEDGER).items()}


def commit_iteration(store: ExplanationStore, result: IterationResult) -> None:
    """Commit one finished iteration."""
    store.commit(LEDGER, to_record(result))


def check_mask_values(
    committed: Mapping[int, IterationResult], wanted: Sequence[float] | None, where: str
) -> None:
    """Refuse to resume iterations searched with another mask value than this run's (a
    ``linear`` sweep's values depend on the number of iterations)."""
    for index, result in sorted(committed.items()):
        if wanted is None or index >= len(wanted):
            continue
        stored = result.mask_value
        if stored is None or not math.isclose(stored, wanted[index], rel_tol=1e-9, abs_tol=1e-12):
            raise StoreError(
                f"{where}: iteration {index} was searched with mask value {stored}, this run "
                f"would use {wanted[index]:.6g} (a linear sweep depends on --iters); resume "
                "with the same settings, or --overwrite"
            )
