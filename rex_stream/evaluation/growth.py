"""An evaluation store group that grows: ``--resume`` with more attributions or metrics.

A resumed group may be asked for attributions and metrics it does not hold yet: everything
else that decides the results (model, target, scoring, the input's reading, seed, mask,
conventions) must match, and a name it already holds must still be the same map (its digest).
The group's settings then become the union, and each (attribution, metric) pair keeps the
record it was committed under, found by its labels rather than its position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rex_stream.engine.settings_diff import plain
from rex_stream.evaluation.metric import MetricResult

#: The evaluation settings that may grow; every other one must match exactly.
GROWING = ("metrics", "attributions")


def grown_settings(stored: Any, wanted: Mapping[str, Any]) -> dict[str, Any] | None:
    """The union of ``stored`` and ``wanted`` when ``wanted`` only adds attributions or
    metrics (or asks for a part of what is stored); None when anything else differs, so
    the store refuses the resume and names the difference."""
    if not isinstance(stored, Mapping):
        return None
    ours = plain(wanted)
    if set(stored) != set(ours):
        return None
    if any(stored[k] != ours[k] for k in ours if k != "evaluation"):
        return None
    before, after = stored.get("evaluation"), ours.get("evaluation")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return None
    merged = dict(before)
    for key, value in after.items():
        if key in GROWING:
            continue
        if key in before and before[key] != value:
            return None
        merged[key] = value
    held, given = before.get("attributions"), after.get("attributions")
    if not isinstance(held, Mapping) or not isinstance(given, Mapping):
        return None
    if any(name in held and held[name] != digest for name, digest in given.items()):
        return None  # a changed map under a stored name: refused
    merged["attributions"] = {**held, **given}
    metrics = list(before.get("metrics") or [])
    known = {entry.get("metric") for entry in metrics if isinstance(entry, Mapping)}
    metrics += [m for m in after.get("metrics") or [] if m.get("metric") not in known]
    merged["metrics"] = metrics
    return {**dict(stored), "evaluation": merged}


def pair_indices(
    pairs: Sequence[tuple[str, str]], committed: Mapping[int, tuple[str, str, MetricResult]]
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], MetricResult]]:
    """A record index for every (attribution, metric label) pair, and the results already
    committed for them.

    A committed pair keeps its record; a new one takes its position in ``pairs`` when no
    committed record holds that index, else the next index above every one in use.
    """
    by_pair = {(name, label): (index, result) for index, (label, name, result) in committed.items()}
    done = {pair: by_pair[pair][1] for pair in pairs if pair in by_pair}
    taken = set(committed)
    indices: dict[tuple[str, str], int] = {}
    free = max([*taken, len(pairs) - 1], default=-1) + 1
    for position, pair in enumerate(pairs):
        if pair in by_pair:
            indices[pair] = by_pair[pair][0]
        elif position not in taken:
            indices[pair] = position
        else:
            indices[pair] = free
            free += 1
    return indices, done
