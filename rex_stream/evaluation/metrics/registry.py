"""Every metric rex-stream evaluates, by name."""

from __future__ import annotations

from rex_stream.evaluation.metric import MetricChoice, MetricSpec, parse_metrics
from rex_stream.evaluation.metrics import (
    complexity,
    curves,
    faithfulness,
    infidelity,
    irof,
    localisation,
    parameter_randomisation,
    randomisation,
    road,
    robustness,
    sensitivity_n,
)

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for module in (
        faithfulness,
        sensitivity_n,
        irof,
        infidelity,
        road,
        curves,
        complexity,
        localisation,
        parameter_randomisation,
        robustness,
        randomisation,
    )
    for spec in module.SPECS
}


def choose(text: str) -> list[MetricChoice]:
    """Parse a ``--metrics`` string against the registry."""
    return parse_metrics(text, METRICS)
