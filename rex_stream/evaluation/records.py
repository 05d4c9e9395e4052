"""The evaluation wing's side of the store seam: one record per (attribution, metric).

Record ``metric/<index>`` (index = attribution number × metric count + metric number) holds
the table ``[score, *curve]`` (float64, so NaN scores survive) and the attributes ``metric``
(label), ``attribution`` (name), ``queries`` and ``seed``; it is marked committed last, so a
resumed run recomputes exactly the pairs a killed run had not finished.
"""

from __future__ import annotations

import numpy as np

from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.evaluation.metric import MetricResult

METRIC = "metric"


def to_record(index: int, metric: str, attribution: str, result: MetricResult) -> Record:
    """The record that stores one metric's result."""
    curve = np.asarray(result.curve, np.float64) if result.curve is not None else np.empty(0)
    table = np.concatenate([[result.score], curve.reshape(-1)])
    attributes = {
        "metric": metric,
        "attribution": attribution,
        "queries": result.queries,
        "seed": result.seed,
        "curve": result.curve is not None,
    }
    return Record(index, table, attributes)


def from_record(record: Record) -> tuple[str, str, MetricResult]:
    """(metric label, attribution name, result) from a record."""
    attrs = record.attributes
    table = np.asarray(record.table, np.float64).reshape(-1)
    curve = table[1:] if attrs.get("curve") else None
    result = MetricResult(float(table[0]), curve, int(attrs["queries"]), int(attrs["seed"]))
    return str(attrs["metric"]), str(attrs["attribution"]), result


def committed_results(store: ExplanationStore) -> dict[int, tuple[str, str, MetricResult]]:
    """Every finished (attribution, metric) the store holds, by record index."""
    return {i: from_record(r) for i, r in store.committed(METRIC).items()}
