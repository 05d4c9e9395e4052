"""Pictures of multiple explanations: ReX's ``composite`` (one picture, one colour per
explanation) and ``separate`` (``<stem>_<i><suffix>`` per explanation) styles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from rex_stream.errors import OutputError

if TYPE_CHECKING:
    from rex_stream.result import Explanation


def render_multi(result: Explanation, path: Path) -> list[Path]:
    """Draw ``result``'s kept explanations at ``path`` as its ``multi_style`` says.

    Composite works on images (and greyscale images); the other modes draw each explanation
    in its own file with the mode's picture, as ``separate`` does.
    """
    if result.multi is None or not result.multi.kept:
        return []
    composite = result.config.visual.multi_style == "composite"
    if composite and result.subject.mode in ("RGB", "L"):
        save_composite(result, path)
        return [path]
    from rex_stream.modes import render_explanation

    written = []
    for number, found in enumerate(result.multi.kept):
        one = replace(result, sufficiency=found, multi=None)
        target = path.with_name(f"{path.stem}_{number}{path.suffix}")
        render_explanation(one, target)
        written.append(target)
    return written


def explanation_colours(count: int, colormap: str) -> np.ndarray:
    """``count`` distinct RGB colours (uint8) from a matplotlib colormap."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[colormap]
    except KeyError:
        cmap = colormaps["tab10"]
    points = np.linspace(0.15, 0.85, count) if count > 1 else np.array([0.6])
    return (np.asarray(cmap(points))[:, :3] * 255).astype(np.uint8)


def save_composite(result: Explanation, path: Path) -> None:
    """The image greyed outside every explanation; each explanation tinted and outlined in
    its own colour."""
    from rex_stream.visualise import _display_rgb

    assert result.multi is not None
    visual = result.config.visual
    image = _display_rgb(result).astype(np.float32)
    masks = [np.asarray(e.mask, bool) for e in result.multi.kept]
    union = np.any(masks, axis=0)
    grey = np.full_like(image, visual.colour)
    picture = np.where(union[:, :, None], image, visual.alpha * image + (1 - visual.alpha) * grey)
    colours = explanation_colours(len(masks), visual.heatmap_colours).astype(np.float32)
    for mask, colour in zip(masks, colours):
        picture[mask] = 0.75 * picture[mask] + 0.25 * colour
        picture[_boundary(mask)] = colour
    try:
        Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(path)
    except (OSError, ValueError, KeyError) as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Elements of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner
