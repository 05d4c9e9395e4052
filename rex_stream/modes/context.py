"""ReX's ``--context FILE`` / ``--noise SIGMA``: masked elements take the values of another
input (a healthy scan, an empty road…), loaded exactly as the explained input is and
optionally blurred with a Gaussian of ``SIGMA`` elements along the spatial axes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.install_hint import install_command
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError


def with_context(subject: Subject, info: ModelInfo, config: ExplainConfig) -> Subject:
    """``subject`` with the context input as its baseline (unchanged without ``--context``)."""
    image = config.image
    if image.context is None:
        return subject
    from rex_stream.modes import load_subject

    plain = replace(config, image=replace(image, context=None))
    context = load_subject(image.context, info, plain).tensor
    if context.shape != subject.tensor.shape:
        raise InputError(
            f"--context {image.context}: loads as shape {context.shape}, but the input "
            f"is {subject.tensor.shape}"
        )
    if image.context_noise > 0:
        try:
            from scipy.ndimage import gaussian_filter
        except ImportError:
            raise InputError(f"--noise needs scipy: {install_command('spectral')}") from None

        sigma = [
            image.context_noise if a in subject.spatial_axes else 0.0 for a in range(context.ndim)
        ]
        context = gaussian_filter(context, sigma=sigma)
    subject.baseline = np.asarray(context, subject.tensor.dtype)
    subject.__post_init__()  # recompute the broadcast baseline
    return subject
