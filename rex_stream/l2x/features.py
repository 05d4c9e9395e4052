"""What the selector and approximator see of an input: per-region summaries.

Each region contributes the mean of ``x − baseline`` over its elements, per channel, and, for
regions of more than one element, its standard deviation. A masked region (at the baseline)
therefore has all-zero features, so masking an input and zeroing its features agree.
"""

from __future__ import annotations

import numpy as np

from rex_stream.engine.regions import Regions
from rex_stream.engine.subject import Subject


def region_features(subject: Subject, regions: Regions) -> np.ndarray:
    """``(regions, features)`` summaries of ``subject`` (float64)."""
    tensor = subject.tensor.astype(np.float64)
    base = np.broadcast_to(np.asarray(subject.baseline, np.float64), tensor.shape)
    axes = subject.spatial_axes
    channels = [a for a in range(tensor.ndim) if a not in axes]
    difference = np.moveaxis(tensor - base, [*axes, *channels], list(range(tensor.ndim)))
    flat = difference.reshape(subject.size, -1)
    labels = regions.labels.reshape(-1)
    counts = np.maximum(1, np.bincount(labels, minlength=regions.count))[:, None]
    sums = np.zeros((regions.count, flat.shape[1]))
    np.add.at(sums, labels, flat)
    means = sums / counts
    if regions.edge == 1:
        return means
    squares = np.zeros_like(sums)
    np.add.at(squares, labels, flat**2)
    spread = np.sqrt(np.maximum(squares / counts - means**2, 0.0))
    return np.concatenate([means, spread], axis=1)
