"""ROAD (Rong et al. 2022, "remove and debias"): the top p % of pixels are imputed from their
neighbours (noisy linear imputation) instead of set to a baseline, and the curve records
whether the model still predicts the target.

Each removed pixel becomes the weighted mean of its eight neighbours (1/6 edge, 1/12
diagonal), removed neighbours being unknowns of the same sparse linear system, plus
N(0, noise²). Quantus 0.6.0 applies element indices as pixel indices on RGB (an IndexError);
here pixels are removed with all their channels. Needs scipy (``scipy.sparse``).
"""

from __future__ import annotations

import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.engine.scheduler import Fill
from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case, Row
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.scoring import TOP, RowScorer

NEIGHBOURS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)


def impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Values for the ``removed`` pixels (bool H×W) of a C×H×W image, solved from their
    neighbours: one sparse system shared by all channels."""
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import spsolve
    except ImportError:
        raise ConfigError(f"road needs scipy: {install_command('evaluation')}") from None
    height, width = removed.shape
    rows, cols = np.nonzero(removed)
    count = rows.size
    variable = np.full(removed.shape, -1, dtype=np.int64)
    variable[rows, cols] = np.arange(count)
    flat = image.reshape(image.shape[0], -1).astype(np.float64)
    right = np.zeros((count, image.shape[0]))
    weight_sum = np.zeros(count)
    entries_i, entries_j, entries_w = [], [], []
    for (dy, dx), weight in NEIGHBOURS:
        ny, nx = rows + dy, cols + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        weight_sum[inside] += weight
        ids = np.flatnonzero(inside)
        neighbour = variable[ny[inside], nx[inside]]
        known = neighbour < 0
        right[ids[known]] -= weight * flat[:, ny[inside][known] * width + nx[inside][known]].T
        entries_i.append(ids[~known])
        entries_j.append(neighbour[~known])
        entries_w.append(np.full(int((~known).sum()), weight))
    entries_i.append(np.arange(count))
    entries_j.append(np.arange(count))
    entries_w.append(-weight_sum)
    matrix = coo_matrix(
        (np.concatenate(entries_w), (np.concatenate(entries_i), np.concatenate(entries_j))),
        shape=(count, count),
    ).tocsc()
    solved = spsolve(matrix, right)
    return np.asarray(solved).reshape(count, -1).T  # channels × removed pixels


async def road(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """c_p = 1 if the model still predicts the target with the top p % of pixels imputed;
    the score is the mean of c over the percentages (lower: a more faithful ranking)."""
    subject = case.subject
    if len(subject.spatial_shape) != 2 or subject.spatial_axes != (1, 2):
        raise InputError("road needs a channel-first 2-D image (C, H, W)")
    percentages = _percentages(params["percentages"])
    weights = case.prepared(dict(params)).reshape(-1)
    order = case.descending(weights)
    rng = case.generator("road")
    noise = float(params["noise"])
    size = subject.size

    def rows() -> list[Row]:
        built = []
        for percentage in percentages:
            chosen = order[: int(size * percentage / 100)]
            flat = np.zeros(size, dtype=bool)
            flat[chosen] = True
            removed = flat.reshape(subject.spatial_shape)
            image = subject.tensor.copy()
            if chosen.size:
                values = impute(subject.tensor, removed)
                values = values + noise * rng.standard_normal(values.shape)
                image[:, removed] = values.astype(image.dtype)
            key = (case.input_key, "road", case.token(order), percentage, noise, case.seed)
            built.append(Row(key, _copy_of(image)))
        return built

    values = await scorer.score_all(rows(), case.target)
    curve = values[:, TOP]
    return MetricResult(float(curve.mean()), curve, len(percentages), case.seed)


def _copy_of(image: np.ndarray) -> Fill:
    def fill(out: np.ndarray) -> None:
        np.copyto(out, image)

    return fill


def _percentages(text: object) -> list[int]:
    try:
        values = [int(p) for p in str(text).replace(";", "+").split("+") if p.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0 or max(values) > 100:
        raise ConfigError(f"road: percentages={text!r}: integers 0…100 joined by +, e.g. 5+10+20")
    return values


SPECS = [
    MetricSpec(
        "road",
        "ROAD",
        "queries",
        False,
        {
            "abs": False,
            "normalise": True,
            "percentages": "+".join(str(p) for p in range(1, 100, 2)),
            "noise": 0.01,
        },
        road,
        curve=True,
        curve_x=lambda params, features, length: np.asarray(
            _percentages(params["percentages"])[:length], np.float64
        ),
        curve_axis="% of features imputed",
    )
]
