"""A picture of an evaluation: per input, each curve metric's curves and the attributions
ranked per metric (1 = best by the metric's direction)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rex_stream.errors import OutputError


class _Spec(Protocol):
    @property
    def higher_is_better(self) -> bool: ...
    @property
    def curve(self) -> bool: ...
    @property
    def curve_axis(self) -> str: ...
    @property
    def better_curve(self) -> str: ...
    def x_values(
        self, params: Mapping[str, Any], features: int, length: int, shape: tuple[int, ...] = ()
    ) -> np.ndarray: ...


class _Choice(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def spec(self) -> _Spec: ...
    @property
    def params(self) -> Mapping[str, Any]: ...


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
    @property
    def features(self) -> int: ...
    @property
    def class_text(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...


class Evaluation(Protocol):
    """What the picture reads of an evaluation (:class:`rex_stream.evaluation.report.Evaluation`
    is one; pictures sit below the evaluation wing and draw what they are given)."""

    @property
    def metrics(self) -> Sequence[_Choice]: ...
    @property
    def attributions(self) -> Sequence[str]: ...
    @property
    def inputs(self) -> Sequence[_Scores]: ...


def ranks(evaluation: Evaluation, input_index: int = 0) -> dict[str, list[int]]:
    """Per metric, each attribution's rank (1 = best by the metric's direction; equal scores
    share a rank, the next rank skipping as in sports: 1, 1, 3; NaN scores rank last)."""
    from scipy.stats import rankdata

    scores = evaluation.inputs[input_index].results
    names = evaluation.attributions
    out: dict[str, list[int]] = {}
    for choice in evaluation.metrics:
        values = np.array([scores[n][choice.label].score for n in names], dtype=np.float64)
        key = -values if choice.spec.higher_is_better else values
        key = np.where(np.isfinite(key), key, np.inf)
        out[choice.label] = [int(r) for r in rankdata(key, method="min")]
    return out


#: the most inputs one picture draws (one row of panels each); the rest are in ``--json``
MAX_PLOTTED_INPUTS = 6


def short_names(inputs: Sequence[str]) -> list[str]:
    """Each input by its file name; where two share a name, with their parent folders."""
    names = [Path(text).name or text for text in inputs]
    return [
        str(Path(*Path(text).parts[-2:])) if names.count(name) > 1 else name
        for text, name in zip(inputs, names)
    ]


def save_plot(
    evaluation: Evaluation,
    path: str | Path,
    input_index: int | None = None,
    max_inputs: int = MAX_PLOTTED_INPUTS,
) -> None:
    """Write the picture (PNG, PDF, SVG … by suffix): per input (every input, at most
    ``max_inputs``, or only ``input_index``), a row of panels titled with the input's name and
    class: one per curve metric, its x axis in the fraction of the features the metric removes
    (ROAD's percentages), titled with the direction of its score and of its curve; then the
    ranking, each bar with its score. A capped picture says how many inputs it leaves out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = list(range(len(evaluation.inputs))) if input_index is None else [input_index]
    shown = every[: max(1, max_inputs)]
    names = short_names([evaluation.inputs[i].input for i in every])
    curves = [c for c in evaluation.metrics if c.spec.curve]
    panels = len(curves) + 1
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    figure = plt.figure(figsize=(5 * columns, 4.3 * rows * len(shown) + 0.4), layout="constrained")
    blocks = figure.subfigures(len(shown), 1, squeeze=False)[:, 0]
    for block, position in zip(blocks, shown):
        scores = evaluation.inputs[position]
        axes = list(block.subplots(rows, columns, squeeze=False).ravel())
        for axis, choice in zip(axes, curves):
            _draw_curves(axis, evaluation, scores, choice)
        _draw_ranking(axes[len(curves)], evaluation, position)
        for axis in axes[panels:]:
            axis.axis("off")
        block.suptitle(f"{names[every.index(position)]}: {scores.class_text}", fontsize=10)
    if len(every) > len(shown):
        figure.supxlabel(
            f"the first {len(shown)} of {len(every)} inputs (every input's scores: --json)",
            fontsize=9,
        )
    try:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise OutputError(f"--plot {path}: cannot write it ({exc})") from exc
    finally:
        plt.close(figure)


def _draw_curves(axis: Any, evaluation: Evaluation, scores: _Scores, choice: _Choice) -> None:
    """One metric's curve of every attribution on one input."""
    for name in evaluation.attributions:
        curve = scores.results[name][choice.label].curve
        if curve is not None:
            curve = np.asarray(curve, np.float64).reshape(-1)
            x = choice.spec.x_values(choice.params, scores.features, curve.size, scores.shape)
            axis.plot(x, curve, label=name)
    arrow = "↑" if choice.spec.higher_is_better else "↓"
    axis.set_title(
        f"{choice.label}: score {arrow} (curve {choice.spec.better_curve} is better)",
        fontsize=8,
    )
    axis.set_xlabel(choice.spec.curve_axis, fontsize=8)
    axis.legend(fontsize=7, loc="best")


def _draw_ranking(axis: Any, evaluation: Evaluation, input_index: int) -> None:
    """Bars of each attribution's rank per metric (top = best, ties level), each labelled
    with its score; the legend below the axes, never over the bars."""
    scores = evaluation.inputs[input_index].results
    table = ranks(evaluation, input_index)
    labels = list(table)
    count = len(evaluation.attributions)
    width = 0.8 / max(1, count)
    for index, name in enumerate(evaluation.attributions):
        heights = [count + 1 - table[label][index] for label in labels]
        bars = axis.bar(np.arange(len(labels)) + index * width, heights, width, label=name)
        values = [scores[name][label].score for label in labels]
        axis.bar_label(
            bars,
            labels=[f"{v:.3g}" if math.isfinite(v) else "nan" for v in values],
            fontsize=6,
            rotation=90,
            padding=2,
        )
    axis.set_xticks(np.arange(len(labels)) + width * (count - 1) / 2)
    axis.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    axis.set_yticks(range(1, count + 1))
    axis.set_yticklabels([str(r) for r in range(count, 0, -1)])
    axis.set_ylim(0, count + 0.9)  # room for the values above the best bars
    axis.set_ylabel("rank (top = best; ties level)")
    axis.set_title("attributions ranked per metric (bar labels: scores)", fontsize=9)
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=min(4, count))
