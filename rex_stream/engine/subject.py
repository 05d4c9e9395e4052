"""The Subject: one input in model space, with its spatial axes and its baseline (mask value)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rex_stream.engine.geometry import Box


@dataclass
class Subject:
    """An input ready for the model: ``tensor`` has the model's input shape (no batch axis).

    ``spatial_axes`` are the axes that boxes partition (in order); the other axes (channels)
    are masked together. ``baseline`` is what masked elements become: a scalar or an array
    broadcastable to ``tensor``. ``display`` is a picture of the input for visualisations.
    """

    name: str
    tensor: np.ndarray
    spatial_axes: tuple[int, ...]
    baseline: np.ndarray | float
    mode: str
    display: np.ndarray | None = None
    source: str | None = None
    _baseline_full: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if list(self.spatial_axes) != sorted(self.spatial_axes):
            raise ValueError(f"spatial_axes must be increasing, got {self.spatial_axes}")
        self._baseline_full = np.broadcast_to(
            np.asarray(self.baseline, dtype=self.tensor.dtype), self.tensor.shape
        )

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Extent of the partitioned axes."""
        return tuple(self.tensor.shape[a] for a in self.spatial_axes)

    @property
    def size(self) -> int:
        """Number of spatial elements."""
        return int(np.prod(self.spatial_shape))

    def index(self, box: Box) -> tuple[slice, ...]:
        """Index of ``box``'s region in ``tensor`` (all channels)."""
        parts = [slice(None)] * self.tensor.ndim
        for axis, part in zip(self.spatial_axes, box.slices):
            parts[axis] = part
        return tuple(parts)

    def fill_boxes(self, out: np.ndarray, boxes: Sequence[Box]) -> None:
        """Write the mutant that shows only ``boxes`` into ``out`` (one batch row)."""
        np.copyto(out, self._baseline_full)
        for box in boxes:
            region = self.index(box)
            out[region] = self.tensor[region]
        self.after_fill()

    def fill_mask(self, out: np.ndarray, visible: np.ndarray) -> None:
        """Write the input with only the spatial elements where ``visible`` is true shown."""
        # copy under a mask: no input-sized temporary (a 512³ volume would need 512 MiB)
        np.copyto(out, self._baseline_full)
        np.copyto(out, self.tensor, where=self.expand(visible))
        self.after_fill()

    def fill_at_least(
        self, out: np.ndarray, weights: np.ndarray, level: float, slab: int = 1 << 22
    ) -> None:
        """Write the input with only the spatial elements whose ``weights`` are ≥ ``level``
        shown; slab by slab along the first spatial axis, so no input-sized mask is made."""
        np.copyto(out, self._baseline_full)
        axis = self.spatial_axes[0]
        rows = max(1, slab // max(1, int(np.prod(weights.shape[1:], dtype=np.int64))))
        for start in range(0, weights.shape[0], rows):
            part = slice(start, start + rows)
            index = [slice(None)] * self.tensor.ndim
            index[axis] = part
            where = tuple(index)
            np.copyto(out[where], self.tensor[where], where=self.expand(weights[part] >= level))
        self.after_fill()

    def after_fill(self) -> None:
        """Called after every fill (a memory-mapped input hands its pages back here)."""

    def with_baseline(self, baseline: np.ndarray | float) -> Subject:
        """A shallow copy that masks with ``baseline`` (the tensor is shared, not copied)."""
        twin = copy.copy(self)
        twin.baseline = baseline
        Subject.__post_init__(twin)
        return twin

    def for_iteration(self, seed: int, key: int, iteration: int) -> Subject:
        """The subject as iteration ``iteration`` partitions it: itself, for most modes.

        A mode whose element order carries no meaning (tabular) returns a view whose boxes
        are intervals over a per-iteration random order of its elements; the view's
        :meth:`input_regions` maps those boxes back onto the input.
        """
        return self

    def input_regions(self, box: Box) -> tuple[Box, ...]:
        """The regions of the input a box of this subject covers (the box itself, here)."""
        return (box,)

    def weights_for_view(self, weights: np.ndarray) -> np.ndarray:
        """A map over the input's spatial axes, as seen by this subject's boxes (unchanged)."""
        return weights

    def content(self) -> np.ndarray:
        """What identifies the input (its fingerprint seeds the search): the tensor, here."""
        return self.tensor

    def summary_facts(self, mask: np.ndarray | None) -> dict[str, Any]:
        """Facts a mode adds to the summary and the store (a text's units): none here."""
        return {}

    def expand(self, spatial: np.ndarray) -> np.ndarray:
        """Reshape a spatial array (or a slab of one) so it broadcasts against ``tensor``."""
        shape = [1] * self.tensor.ndim
        slab = spatial.ndim == len(self.spatial_axes)
        for axis, extent in zip(self.spatial_axes, spatial.shape if slab else self.spatial_shape):
            shape[axis] = extent
        return spatial.reshape(shape)
