"""Regions: a regular partition of the spatial axes that CEM and L2X optimise and select over.

Features for a short 1-D input (a table row), intervals for a long one (a spectrum, audio),
grid cells for an image, blocks for a volume: one rule, ``edge`` elements per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: About this many regions when the user names no region size: the zeroth-order estimate's
#: cosine to the true gradient falls as √(q/R), so R stays in the low hundreds.
TARGET_REGIONS = 100


@dataclass(frozen=True)
class Regions:
    """``labels[element]`` is the region of each spatial element; ``count`` regions in all."""

    labels: np.ndarray
    count: int
    edge: int

    @classmethod
    def grid(cls, spatial_shape: tuple[int, ...], edge: int | None = None) -> Regions:
        """Cells of ``edge`` elements per axis (the last cell on an axis may be smaller)."""
        size = math.prod(spatial_shape)
        if edge is None:
            edge = max(1, math.ceil((size / TARGET_REGIONS) ** (1 / len(spatial_shape))))
        cells = [math.ceil(extent / edge) for extent in spatial_shape]
        index = np.meshgrid(*(np.arange(n) // edge for n in spatial_shape), indexing="ij")
        labels = np.ravel_multi_index(tuple(index), cells).astype(np.int32)
        return cls(labels, math.prod(cells), edge)

    def expand(self, values: np.ndarray) -> np.ndarray:
        """Per-region ``values`` as a spatial array (each element takes its region's value)."""
        return np.asarray(values)[self.labels]

    def sizes(self) -> np.ndarray:
        """Number of elements in each region."""
        return np.bincount(self.labels.reshape(-1), minlength=self.count)

    def centres(self) -> np.ndarray:
        """Each region's centre on the (first) spatial axis, for 1-D bases."""
        positions = np.arange(self.labels.shape[0], dtype=np.float64)
        flat = self.labels if self.labels.ndim == 1 else self.labels[:, 0]
        total = np.bincount(flat, weights=positions, minlength=self.count)
        return total / np.maximum(1, np.bincount(flat, minlength=self.count))
