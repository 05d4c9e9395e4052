"""A picture of an evaluation: each curve metric's curves, and the attributions ranked per
metric (1 = best by the metric's direction), for one input."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rex_stream.errors import OutputError


class _Spec(Protocol):
    @property
    def higher_is_better(self) -> bool: ...
    @property
    def curve(self) -> bool: ...


class _Choice(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def spec(self) -> _Spec: ...


class _Result(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def curve(self) -> np.ndarray | None: ...


class _Scores(Protocol):
    @property
    def input(self) -> str: ...
    @property
    def target(self) -> int: ...
    @property
    def results(self) -> Mapping[str, Mapping[str, _Result]]: ...


class Evaluation(Protocol):
    """What the picture reads of an evaluation (:class:`rex_stream.evaluation.report.Evaluation`
    is one; pictures sit below the evaluation wing and draw what they are given)."""

    @property
    def metrics(self) -> Sequence[_Choice]: ...
    @property
    def attributions(self) -> Sequence[str]: ...
    @property
    def inputs(self) -> Sequence[_Scores]: ...


def ranks(evaluation: Evaluation, input_index: int = 0) -> dict[str, list[float]]:
    """Per metric, each attribution's rank (1 = best; NaN scores rank last)."""
    scores = evaluation.inputs[input_index].results
    names = evaluation.attributions
    out: dict[str, list[float]] = {}
    for choice in evaluation.metrics:
        values = np.array([scores[n][choice.label].score for n in names], dtype=np.float64)
        key = -values if choice.spec.higher_is_better else values
        key = np.where(np.isfinite(key), key, np.inf)
        order = np.argsort(key, kind="stable")
        rank = np.empty(len(names))
        rank[order] = np.arange(1, len(names) + 1)
        out[choice.label] = rank.tolist()
    return out


def save_plot(evaluation: Evaluation, path: str | Path, input_index: int = 0) -> None:
    """Write the picture (PNG, PDF, SVG … by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = evaluation.inputs[input_index]
    curves = [c for c in evaluation.metrics if c.spec.curve]
    panels = len(curves) + 1
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    flat = list(axes.ravel())
    for axis, choice in zip(flat, curves):
        for name in evaluation.attributions:
            curve = scores.results[name][choice.label].curve
            if curve is not None:
                axis.plot(np.arange(1, curve.size + 1), curve, label=name)
        arrow = "↑" if choice.spec.higher_is_better else "↓"
        axis.set_title(f"{choice.label} (area {arrow})", fontsize=9)
        axis.set_xlabel("step")
        axis.legend(fontsize=7)
    ranking = flat[len(curves)]
    table = ranks(evaluation, input_index)
    labels = list(table)
    width = 0.8 / max(1, len(evaluation.attributions))
    for index, name in enumerate(evaluation.attributions):
        heights = [len(evaluation.attributions) + 1 - table[label][index] for label in labels]
        ranking.bar(np.arange(len(labels)) + index * width, heights, width, label=name)
    ranking.set_xticks(np.arange(len(labels)) + width * (len(evaluation.attributions) - 1) / 2)
    ranking.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ranking.set_yticks(range(1, len(evaluation.attributions) + 1))
    ranking.set_yticklabels([str(r) for r in range(len(evaluation.attributions), 0, -1)])
    ranking.set_ylabel("rank (top = best)")
    ranking.set_title("attributions ranked per metric", fontsize=9)
    ranking.legend(fontsize=7)
    for axis in flat[panels:]:
        axis.axis("off")
    figure.suptitle(f"{scores.input}: class {scores.target}", fontsize=10)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise OutputError(f"--plot {path}: cannot write it ({exc})") from exc
    finally:
        plt.close(figure)
