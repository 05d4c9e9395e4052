"""Which metrics apply to an input that has units but no values to perturb: a text (strings,
or token ids), whose features are its words, sentences or tokens.

A removed unit is masked as its mode masks it (``--mask-value``: deleted, a literal, attention
0), so the removal metrics that take the mode's own masking (``perturb_baseline=black``, the
default under rex-stream's conventions) score a text over its units, and the map-only and
mask metrics need no query at all. Metrics that add noise to the input's values (infidelity,
road, irof's superpixels, monotonicity-correlation's uniform baseline) or re-explain perturbed
inputs have nothing to act on: each is refused in one line naming the ones that apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.evaluation.metric import MetricChoice

#: Query metrics that remove features by ranking, with the mode's own masking.
UNIT_QUERY_METRICS = (
    "pixel-flipping",
    "region-perturbation",
    "selectivity",
    "faithfulness-correlation",
    "faithfulness-estimate",
    "monotonicity-arya",
    "sensitivity-n",
    "insertion",
    "deletion",
)

#: The perturbation baseline that means "as the mode masks" (rex-stream's conventions).
MODE_BASELINE = "black"


def has_values(subject: Subject) -> bool:
    """Whether the input's tensor holds numbers (pixels, samples) rather than units."""
    return subject.tensor.dtype.kind in "biuf"


def check_unit_metrics(subject: Subject, choices: Sequence[MetricChoice]) -> None:
    """Refuse, in one line, a metric that cannot act on an input without values."""
    if has_values(subject):
        return
    kind = f"a {subject.mode} input" if subject.mode else "this input"
    for choice in choices:
        spec = choice.spec
        if spec.needs in ("map", "mask"):
            continue
        if spec.name not in UNIT_QUERY_METRICS:
            raise InputError(
                f"{spec.name}: {kind} has units (words, tokens), no values to perturb or "
                f"re-explain; over units: {', '.join(UNIT_QUERY_METRICS)}, and the map and "
                "mask metrics"
            )
        baseline = choice.params.get("perturb_baseline", MODE_BASELINE)
        if str(baseline).strip().lower() != MODE_BASELINE:
            raise InputError(
                f"{spec.name}: perturb_baseline={baseline}: {kind}'s units are removed as its "
                f"mode masks them (--mask-value); leave perturb_baseline={MODE_BASELINE}"
            )
