"""CEM's side of the store seam: each chain's state as an engine :class:`Record`.

A chain is record ``index`` of kind ``"cem_chain"``: a 3-row table (current values, momentum
point, best solution or NaN) and its counters as attributes. The record is rewritten every
``block_steps`` steps; a chain's path depends only on its state and its seed, so a resumed
chain continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

from rex_stream.cem.chain import ChainState
from rex_stream.engine.store import ExplanationStore, Record

CHAIN = "cem_chain"


def to_record(state: ChainState) -> Record:
    """The record that stores ``state``."""
    best = state.best if state.best is not None else np.full_like(state.current, np.nan)
    return Record(
        state.index,
        np.stack([state.current, state.momentum, best]),
        {
            "penalty": state.penalty,
            "restart": state.restart,
            "step": state.step,
            "stale": state.stale,
            "done": state.done,
            "queries": state.queries,
            "best_objective": state.best_objective if state.best is not None else None,
            "best_margin": state.best_margin if state.best is not None else None,
            "best_class": state.best_class,
            "smoothing": state.smoothing,
            "best_reconstruction": state.best_reconstruction if state.best is not None else None,
            "autoencoder_queries": state.autoencoder_queries,
        },
    )


def from_record(record: Record) -> ChainState:
    """The chain state a record holds."""
    attrs = record.attributes
    current, momentum, best = (np.asarray(row, dtype=np.float64) for row in record.table)
    found = attrs.get("best_objective") is not None
    return ChainState(
        index=record.index,
        penalty=float(attrs["penalty"]),
        restart=int(attrs["restart"]),
        current=current,
        momentum=momentum,
        step=int(attrs["step"]),
        stale=int(attrs["stale"]),
        done=bool(attrs["done"]),
        queries=int(attrs["queries"]),
        best=best if found else None,
        best_objective=float(attrs["best_objective"]) if found else float("inf"),
        best_margin=float(attrs["best_margin"]) if found else float("nan"),
        best_class=int(attrs["best_class"]),
        smoothing=float(attrs.get("smoothing", 0.0)),
        best_reconstruction=float(attrs.get("best_reconstruction") or float("nan")),
        autoencoder_queries=int(attrs.get("autoencoder_queries", 0)),
    )


def committed_chains(store: ExplanationStore) -> dict[int, ChainState]:
    """Every chain state the store holds, by chain index."""
    return {i: from_record(r) for i, r in store.committed(CHAIN).items()}


def commit_chain(store: ExplanationStore, state: ChainState) -> None:
    """Commit one chain's state (replacing its previous record)."""
    store.commit(CHAIN, to_record(state))
