"""IROF (Rieger & Hansen): remove superpixels in order of mean relevance, area over the curve.

Superpixels come from scikit-image's SLIC on the input tensor (channels last, float64, as
Quantus segments it), so it needs ``pip install 'rex-stream[evaluation]'``.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.engine.ranking import rank_positions
from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.statistics import trapezoid
from rex_stream.evaluation.scoring import RowScorer, target_scores


def superpixels(case: Case, method: str) -> np.ndarray:
    """Segment labels 0…n−1 over the spatial axes (a 2-D image)."""
    subject = case.subject
    if len(subject.spatial_shape) != 2:
        raise InputError(f"irof needs a 2-D image, not spatial shape {subject.spatial_shape}")
    try:
        from skimage.segmentation import felzenszwalb, slic
    except ImportError:
        raise ConfigError(f"irof needs scikit-image: {install_command('evaluation')}") from None
    channels = [a for a in range(subject.tensor.ndim) if a not in subject.spatial_axes]
    image = np.moveaxis(subject.tensor, channels, list(range(2, 2 + len(channels))))
    image = image.reshape(*subject.spatial_shape, -1).astype("double")
    if method == "slic":
        return np.asarray(slic(image, start_label=0))
    if method == "felzenszwalb":
        return np.asarray(felzenszwalb(image))
    raise ConfigError(f"irof: segmentation_method={method!r}: use slic or felzenszwalb")


def _segment_means(case: Case, prepared: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    if case.conventions.float64_maps:
        sums = np.bincount(labels.ravel(), weights=prepared.ravel(), minlength=count)
        return sums / np.maximum(1, np.bincount(labels.ravel(), minlength=count))
    # Quantus: the mean of the channel-broadcast map over each segment, in the map's dtype
    channels = case.subject.tensor.size // case.subject.size
    full = np.broadcast_to(prepared[None], (channels, *prepared.shape))
    return np.array([np.mean(full[:, labels == s]) for s in range(count)])


def _removal_values(
    case: Case, labels: np.ndarray, order: np.ndarray, baseline: Any, rng: Any
) -> float | np.ndarray | None:
    """What each removed feature becomes. Quantus' "mean" is the mean of the input as
    perturbed so far (so it changes every step): Quantus' conventions replay that exactly."""
    if not (case.conventions.running_mean and str(baseline).lower() == "mean"):
        return case.baseline(baseline, rng)
    subject = case.subject
    current = subject.tensor.copy()
    values = np.empty(subject.tensor.shape, dtype=subject.tensor.dtype)
    for segment in order:
        region = np.broadcast_to(subject.expand(labels == segment), current.shape)
        value = current.mean()
        current[region] = value
        values[region] = value
    return values.reshape(-1)


def _plan(case: Case, params: Params) -> tuple[int, np.ndarray, float | np.ndarray | None]:
    """Segments, each feature's removal position and what removed features become."""
    labels = superpixels(case, str(params["segmentation_method"]))
    count = int(labels.max()) + 1
    if count < 2:
        raise InputError("irof: the input has fewer than 2 superpixels")
    prepared = case.prepared(dict(params))
    means = _segment_means(case, prepared, labels, count)
    order = case.descending(means)
    rank = rank_positions(order)[labels]
    rng = case.generator("irof")
    values = _removal_values(case, labels, order, params["perturb_baseline"], rng)
    position = rank.reshape(-1)
    if case.conventions.element_features:
        tensor = case.subject.tensor
        position = np.broadcast_to(case.subject.expand(rank), tensor.shape).reshape(-1)
    return count, position, values


async def irof(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Score = N − trapz(f(x without the first j segments) / f(x)), j = 1…N segments."""
    # segmenting and ranking take real CPU time: off the event loop, so batches keep flowing
    count, position, values = await anyio.to_thread.run_sync(_plan, case, params)
    softmax = bool(params["softmax"])
    f_x = float(target_scores(await scorer.score([case.original()], case.target), softmax)[0])
    rows = (case.removed_first(position, j, values) for j in range(1, count + 1))
    curve = target_scores(await scorer.score_all(rows, case.target), softmax) / f_x
    return MetricResult(count - trapezoid(curve), curve, count + 1, case.seed)


SPECS = [
    MetricSpec(
        "irof",
        "IROF",
        "queries",
        True,
        {
            "abs": False,
            "normalise": True,
            "perturb_baseline": "mean",
            "segmentation_method": "slic",
            "softmax": True,
        },
        irof,
        curve=True,
        curve_axis="fraction of segments removed",
        curve_better="lower",  # f(x without segments) / f(x): the score is the area over it
    )
]
