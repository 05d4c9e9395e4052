"""How a chain's region values become model inputs: keep regions (PP) or add to them (PN).

Pertinent positive: ``baseline + m ⊙ (x − baseline)``, ``m ∈ [0, 1]`` per region, starting
from the whole input (``m = 1``). Pertinent negative: ``x + Σ a_r B_r``, ``a ∈ [0, 1]``, over
the mode's *addition basis*, starting from the input itself (``a = 0``):

- images (``L``, ``RGB``) and volumes (``voxel``): brighten a region toward the input's
  maximum, or move it toward a reference input when one is given;
- spectra (``spectral``): a Gaussian bump centred on each interval, as high as the signal's
  range;
- tables (``tabular``): move a feature toward a reference row (by default the baseline, e.g.
  the training mean given with ``baseline=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rex_stream.cem.config import CemKind
from rex_stream.engine.regions import Regions
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError, InputError

#: Modes whose pertinent negatives move regions along a direction (brighten, or toward a row).
DIRECTION_MODES = ("L", "RGB", "voxel", "tabular")
BUMP_MODES = ("spectral",)


class Perturbation(Protocol):
    """Writes the inputs chains' region values describe, many rows at once."""

    start: float

    def write(self, out: np.ndarray, values: np.ndarray) -> None:
        """Write the input for each row of region ``values`` (``n × R``) into ``out``
        (``n`` batch rows), vectorised over the rows."""
        ...

    def tensor(self, values: np.ndarray) -> np.ndarray:
        """The input for one row of region ``values``, as a new array in the model's units."""
        ...


class _Writer:
    start = 0.0
    dtype: np.dtype
    subject: Subject
    regions: Regions

    def write(self, out: np.ndarray, values: np.ndarray) -> None:
        raise NotImplementedError

    def tensor(self, values: np.ndarray) -> np.ndarray:
        out = np.empty((1, *self.shape), dtype=self.dtype)
        self.write(out, np.asarray(values)[None])
        return out[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.subject.tensor.shape)

    def weights(self, values: np.ndarray) -> np.ndarray:
        """Rows of region values as per-element weights, shaped to broadcast against a batch
        of inputs (``n × …``)."""
        spatial = np.asarray(values, self.dtype)[:, self.regions.labels]
        layout = self.subject.expand(self.regions.labels).shape
        return spatial.reshape(len(spatial), *layout)


@dataclass
class KeepRegions(_Writer):
    """Pertinent positive: each region shows ``m_r`` of the way from baseline to input."""

    subject: Subject
    regions: Regions
    start: float = 1.0

    def __post_init__(self) -> None:
        tensor = self.subject.tensor
        self.dtype = tensor.dtype
        self._base = np.broadcast_to(np.asarray(self.subject.baseline, tensor.dtype), tensor.shape)
        self._difference = (tensor - self._base).astype(tensor.dtype)

    def write(self, out: np.ndarray, values: np.ndarray) -> None:
        np.multiply(self._difference, self.weights(values), out=out)
        out += self._base


@dataclass
class MoveRegions(_Writer):
    """Pertinent negative along a direction: region ``r`` moves ``a_r`` of ``direction``."""

    subject: Subject
    regions: Regions
    direction: np.ndarray

    def __post_init__(self) -> None:
        self.dtype = self.subject.tensor.dtype

    def write(self, out: np.ndarray, values: np.ndarray) -> None:
        np.multiply(self.direction, self.weights(values), out=out)
        out += self.subject.tensor


@dataclass
class AddBumps(_Writer):
    """Pertinent negative for a 1-D signal: a Gaussian bump of height ``a_r × height`` per
    interval (σ half an interval), added to the signal."""

    subject: Subject
    regions: Regions

    def __post_init__(self) -> None:
        tensor = self.subject.tensor
        self.dtype = tensor.dtype
        length = self.subject.spatial_shape[0]
        positions = np.arange(length, dtype=np.float64)
        sigma = max(1.0, self.regions.edge / 2)
        centres = self.regions.centres()
        self._bumps = np.exp(-0.5 * ((positions[None, :] - centres[:, None]) / sigma) ** 2)
        self.height = float(tensor.max() - tensor.min()) or 1.0

    def write(self, out: np.ndarray, values: np.ndarray) -> None:
        added = ((np.asarray(values, np.float64) @ self._bumps) * self.height).astype(self.dtype)
        layout = self.subject.expand(added[0]).shape
        np.add(self.subject.tensor, added.reshape(len(added), *layout), out=out)


def perturbation_for(
    subject: Subject, regions: Regions, kind: CemKind, reference: np.ndarray | None = None
) -> Perturbation:
    """The writer for ``kind`` on this subject's mode (a pertinent negative needs a basis)."""
    if kind is CemKind.PERTINENT_POSITIVE:
        return KeepRegions(subject, regions)
    tensor = subject.tensor
    if reference is not None:
        reference = np.asarray(reference, dtype=tensor.dtype)
        if reference.shape != tensor.shape:
            raise InputError(
                f"the reference has shape {reference.shape} but the input has {tensor.shape}"
            )
    if subject.mode in BUMP_MODES and reference is None:
        return AddBumps(subject, regions)
    if subject.mode not in DIRECTION_MODES + BUMP_MODES:
        raise ConfigError(
            f"cem-pn needs an addition basis and mode {subject.mode!r} has none "
            f"(modes with one: {', '.join(DIRECTION_MODES + BUMP_MODES)})"
        )
    if reference is None and subject.mode == "tabular":
        reference = np.broadcast_to(np.asarray(subject.baseline, tensor.dtype), tensor.shape)
    if reference is None:
        reference = np.full_like(tensor, tensor.max())
    direction = (reference - tensor).astype(tensor.dtype)
    if not np.any(direction):
        raise InputError(
            "cem-pn: the addition basis is zero (the reference equals the input); "
            "give another reference or baseline"
        )
    return MoveRegions(subject, regions, direction)
