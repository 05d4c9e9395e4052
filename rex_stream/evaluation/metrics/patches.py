"""Square patches of a case's spatial axes, and the features in patch-removal order.

Region-perturbation, selectivity and infidelity remove whole patches. Under Quantus'
conventions the patches tile the input padded as Quantus pads it (half the remainder before),
and a patch's sum runs over the channel-broadcast map in Quantus' element order, so that ties
rank the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rex_stream.engine.ranking import rank_positions
from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import Params
from rex_stream.evaluation.metrics.removal import (
    Random,
    bounded,
    map_scale,
    prepared_slab,
)
from rex_stream.evaluation.ranked import PatchRanking, Ranking, slab_ranges


def patch_labels(case: Case, patch_size: int) -> tuple[np.ndarray, int]:
    """Patch number of every spatial element, and how many patches (raster order)."""
    labels, count = patch_rows(case, patch_size)
    return labels(0, case.subject.spatial_shape[0]), count


def patch_rows(case: Case, patch_size: int) -> tuple[Callable[[int, int], np.ndarray], int]:
    """A function giving the patch numbers of the spatial rows ``[first, stop)`` along the
    first spatial axis, and how many patches there are."""
    shape = case.subject.spatial_shape
    padded = case.conventions.padded_patches
    if padded and len(shape) != 2:
        raise InputError("region metrics in Quantus-compatible mode need a 2-D image")
    indices, tiles = [], []
    for extent in shape:
        pad = (-extent) % patch_size if padded else 0
        indices.append((np.arange(extent) + pad // 2) // patch_size)
        tiles.append((extent + pad + patch_size - 1) // patch_size)
    rest = np.zeros(shape[1:], dtype=np.int64)
    for axis in range(1, len(shape)):
        view = [1] * (len(shape) - 1)
        view[axis - 1] = shape[axis]
        rest = rest * tiles[axis] + indices[axis].reshape(view)
    stride = math.prod(tiles[1:])

    def labels(first: int, stop: int) -> np.ndarray:
        rows = indices[0][first:stop].reshape(-1, *([1] * (len(shape) - 1)))
        return rows * stride + rest

    return labels, math.prod(tiles)


def patch_sums(
    case: Case, prepared: np.ndarray, label: np.ndarray, count: int, size: int
) -> np.ndarray:
    """Σ attribution per patch (see the module's docstring for Quantus' order)."""
    if not case.conventions.padded_patches:
        return np.bincount(label.ravel(), weights=prepared.ravel(), minlength=count)
    # Quantus: the map broadcast to C×H×W, zero-padded, cut into C×p×p blocks, each summed
    channels = case.subject.tensor.size // case.subject.size
    full = np.broadcast_to(prepared[None], (channels, *prepared.shape))
    pads = [(0, 0)] + [((-d) % size // 2, (-d) % size - (-d) % size // 2) for d in prepared.shape]
    padded = np.pad(full, pads)
    _, height, width = padded.shape
    blocks = padded.reshape(channels, height // size, size, width // size, size)
    grouped = blocks.transpose(1, 3, 0, 2, 4).reshape(count, -1)
    return grouped.sum(axis=-1)


def patch_order(case: Case, sums: np.ndarray, order: str, rng: Random) -> np.ndarray:
    """Patch numbers in removal order: most relevant first (morf), least (lerf), random."""
    if order == "morf":
        return case.descending(sums)
    if order == "lerf":
        return case.ascending(sums)
    if order == "random":
        return rng.permutation(sums.size)
    raise ConfigError(f"order={order!r}: use morf, lerf or random")


def patch_positions(
    case: Case, params: Params, order: str, rng: Random
) -> tuple[np.ndarray | Ranking, int]:
    """Features in patch-removal order (a position per feature, or for a large input a
    ranking of the patches), and the number of patches."""
    patch = int(params["patch_size"])
    if patch > min(case.subject.spatial_shape):
        raise ConfigError(
            f"patch_size={patch} is larger than the input {case.subject.spatial_shape}"
        )
    if bounded(case):
        labels, count = patch_rows(case, patch)
        sums = np.zeros(count)
        shape = case.subject.spatial_shape
        plane = case.subject.size // shape[0]
        scale = map_scale(case, params)
        for start, stop in slab_ranges(shape):
            part = prepared_slab(case, params, scale, start, stop)
            rows = labels(start // plane, stop // plane).reshape(-1)
            sums += np.bincount(rows, weights=part, minlength=count)
        ranked = patch_order(case, sums, order, rng)
        return PatchRanking(rank_positions(ranked), labels, shape, patch), count
    prepared = case.prepared(dict(params))
    label, count = patch_labels(case, patch)
    ranked = patch_order(case, patch_sums(case, prepared, label, count, patch), order, rng)
    rank_of_patch = rank_positions(ranked)
    spatial = rank_of_patch[label]
    if case.conventions.element_features:
        tensor = case.subject.tensor
        spatial = np.broadcast_to(case.subject.expand(spatial), tensor.shape)
    return np.ascontiguousarray(spatial).reshape(-1), count
