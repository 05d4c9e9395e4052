"""Pictures of inputs that are not photos, drawn as their mode draws them (spectra with shaded
responsibility, volumes' slice montages, waveforms, ranked feature bars): the input is read
again from its ``source`` with the stored settings and the mode's own ``render`` draws it."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.causal.extraction import Sufficiency
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.verdicts import Target
from rex_stream.errors import RexStreamError
from rex_stream.modes import load_subject, render_explanation
from rex_stream.pictures.thumbnails import file_uri
from rex_stream.result import Explanation, RunStats

logger = logging.getLogger(__name__)

#: Modes whose pictures the report draws itself (photos: overlay and heatmap side by side).
IMAGE_MODES = ("RGB", "L", "")


def source_path(source: str, store: str) -> Path | None:
    """The input file a group names: as written (relative to where the run was started), or
    relative to the store's folder."""
    for candidate in (Path(source), Path(store).resolve().parent / source):
        if candidate.is_file():
            return candidate
    return None


def mode_picture(
    attributes: dict[str, Any], responsibility: np.ndarray, mask: np.ndarray | None, store: str
) -> str | None:
    """The mode's explanation picture as a PNG data URI, or None when the input cannot be
    read again (moved, another machine) or the mode cannot draw it."""
    settings = attributes.get("settings") or {}
    source = attributes.get("source")
    model = settings.get("model") or {}
    if not isinstance(source, str) or not model.get("input_shape"):
        return None
    path = source_path(source, store)
    if path is None:
        return None
    image = {k: v for k, v in (settings.get("image") or {}).items() if v is not None}
    for key in ("means", "stds"):
        if isinstance(image.get(key), list):
            image[key] = tuple(image[key])
    try:
        config = ExplainConfig().with_overrides(**image)
        info = ModelInfo(str(model.get("name", "")), "input", tuple(model["input_shape"]))
        subject = load_subject(path, info, config)
        target = attributes.get("target") or {}
        explanation = Explanation(
            subject=subject,
            target=Target(int(target.get("class", 0)), float(target.get("confidence", 0.0))),
            responsibility=responsibility,
            stats=RunStats(**_stats(attributes.get("stats") or {})),
            config=config,
            sufficiency=None
            if mask is None
            else Sufficiency(
                mask, float((attributes.get("explanation") or {}).get("confidence", 0)), 0
            ),
            model=str(model.get("name", "")),
            label=target.get("label"),
        )
        with tempfile.TemporaryDirectory() as folder:
            picture = Path(folder) / "mode.png"
            render_explanation(explanation, picture)
            return file_uri(picture)
    except (RexStreamError, OSError, ValueError, TypeError, KeyError) as exc:
        logger.info("no mode picture for %s: %s", source, exc)
        return None


def _stats(stats: dict[str, Any]) -> dict[str, Any]:
    """RunStats fields from the stored stats (zeros for any that are missing)."""
    names = RunStats.__dataclass_fields__
    out: dict[str, Any] = {name: 0 for name in names}
    out.update({k: v for k, v in stats.items() if k in names})
    return out
