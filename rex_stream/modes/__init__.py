"""Input modes: how a file or array becomes a Subject in the model's input space."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rex_stream.backend import ModelInfo
from rex_stream.config import ExplainConfig
from rex_stream.errors import InputError
from rex_stream.modes.image import IMAGE_SUFFIXES, load_image, subject_from_array
from rex_stream.subject import Subject

__all__ = ["load_subject"]


def load_subject(
    source: str | Path | np.ndarray, info: ModelInfo, config: ExplainConfig
) -> Subject:
    """Load ``source`` (a file path or a model-space array) as a Subject for this model."""
    if isinstance(source, np.ndarray):
        return subject_from_array(source, info, config.image)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give one input file")
    mode = config.image.mode
    if mode in (None, "RGB", "L") and (path.suffix.lower() in IMAGE_SUFFIXES or mode):
        return load_image(path, info, config.image)
    raise InputError(
        f"{path}: cannot tell how to read {path.suffix or 'this file'!r}; "
        f"images ({', '.join(sorted(IMAGE_SUFFIXES))}) are supported"
    )
