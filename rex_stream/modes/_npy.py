"""Which mode a ``.npy`` file (or an array) is: decided by the model's input rank and shape.

A ``.npy`` can hold an image tensor, a volume, a spectrum or a table row; the suffix says
nothing. The model's input shape (without the batch axis) mostly does:

- ``(H, W)``, or rank 3 with 1, 3 or 4 channels first or last: an image tensor (``RGB``/``L``);
- other rank 3, and rank 4: a volume (``voxel``);
- ``(L,)``, ``(1, L)`` or ``(L, 1)``: a spectrum or a table row. A row must match the model's
  width; a spectrum may be resampled. So an array whose length differs from the model's is a
  spectrum; otherwise up to :data:`TABLE_MAX_FEATURES` values are a table row, from
  :data:`SPECTRUM_MIN_SAMPLES` a spectrum, and in between ``--mode`` must say.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rex_stream.errors import InputError

logger = logging.getLogger(__name__)

#: The most values a ``.npy`` row may have to be read as a table row without ``--mode``.
TABLE_MAX_FEATURES = 64

#: The fewest samples a ``.npy`` signal must have to be read as a spectrum without ``--mode``.
SPECTRUM_MIN_SAMPLES = 128

#: Channel counts of image tensors.
IMAGE_CHANNELS = (1, 3, 4)


def array_shape(path: Path) -> tuple[int, ...] | None:
    """The shape stored in a ``.npy`` header (the data is not read), or None if unreadable."""
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except (OSError, ValueError, EOFError):
        return None


def load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """The array in a ``.npy`` file (no pickles; ``mmap``: mapped, not read). Complex values
    are refused in one line: taking their real part silently would explain another input."""
    array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    if array.dtype.kind == "c":
        raise InputError(
            f"{path}: holds complex numbers ({array.dtype}); save the part the model takes "
            "as real numbers (np.real, np.abs or np.angle) and explain that"
        )
    return array


def mode_for_array(model_shape: tuple[int, ...], shape: tuple[int, ...] | None, what: str) -> str:
    """The mode (``RGB``, ``voxel``, ``spectral`` or ``tabular``) for an array of ``shape``
    (None: unknown) given to a model taking ``model_shape``; raises InputError when ambiguous."""
    rank = len(model_shape)
    one_dimensional = rank == 1 or (rank == 2 and 1 in model_shape)
    if rank == 2 and not one_dimensional:
        return "RGB"
    if rank == 3:
        first, last = model_shape[0], model_shape[2]
        return "RGB" if first in IMAGE_CHANNELS or last in IMAGE_CHANNELS else "voxel"
    if rank >= 4:
        return "voxel"
    if not one_dimensional:
        raise InputError(f"{what}: the model's input shape {model_shape} takes no known mode")
    width = next((n for n in model_shape if n != 1), 1)  # ≤ 0: any length
    length = _signal_length(shape) if shape is not None else None
    if length is None or (width > 0 and length != width):
        # a table row must match the model's width; a spectrum may be resampled, and the
        # spectral reader explains what is wrong with an unreadable file
        return "spectral"
    if length <= TABLE_MAX_FEATURES:
        logger.info("%s: %d values for a 1-D model: read as a table row", what, length)
        return "tabular"
    if length >= SPECTRUM_MIN_SAMPLES:
        logger.info("%s: %d values for a 1-D model: read as a spectrum", what, length)
        return "spectral"
    raise InputError(
        f"{what}: {length} values for a model taking {model_shape} could be a table row or a "
        "spectrum; pass --mode tabular or --mode spectral"
    )


def _signal_length(shape: tuple[int, ...]) -> int | None:
    """The length of the signal or row(s) an array holds: its last axis once axes of size 1
    are dropped (a 2-D array is several rows), or None when it is no 1-D data."""
    squeezed = [n for n in shape if n != 1] or [1]
    if len(squeezed) > 2:
        return None
    return squeezed[-1]
