"""The pictures of one entry, drawn once and shared by its index row and its card."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

from rex_stream.pictures import thumbnails as draw
from rex_stream.report.charts import signal_svg
from rex_stream.report.mode_pictures import IMAGE_MODES, mode_picture, source_path
from rex_stream.report.reading import Entry, Section


@dataclass
class Panel:
    """One picture of a card, titled: a data URI (with an optional overlay layer) or SVG."""

    title: str
    uri: str = ""
    layer: str = ""  # an RGBA overlay drawn over ``uri``, faded by the opacity control
    svg: str = ""  # inline SVG instead of a picture (1-D maps, boxes over the photo)
    html: str = ""  # inline markup instead of a picture (text units)


@dataclass
class Visuals:
    """The thumbnail of an entry and the panels of each of its sections, by section index."""

    thumbnail: str = ""
    thumbnail_svg: str = ""
    panels: dict[int, list[Panel]] = field(default_factory=dict)


def draw_entry(entry: Entry, size: int, thumb: int) -> Visuals:
    """Every picture of ``entry``: cards at ``size`` pixels, the thumbnail at ``thumb``."""
    visuals = Visuals()
    for number, section in enumerate(entry.sections):
        if section.kind == "rex":
            visuals.panels[number] = _rex_panels(section, size, visuals, thumb)
        elif section.kind == "cem":
            visuals.panels[number] = _cem_panels(section, size, visuals, thumb)
        elif section.kind == "l2x":
            visuals.panels[number] = _l2x_panels(section, size, visuals, thumb)
    return visuals


def photo_for(section: Section, size: int) -> np.ndarray | None:
    """The input's photo at card size, when the group names a picture that is still there."""
    source = section.attributes.get("source")
    mode = section.attributes.get("mode") or (section.settings.get("image") or {}).get("mode")
    if not isinstance(source, str) or (mode or "") not in IMAGE_MODES:
        return None
    path = source_path(source, section.store)
    return None if path is None else draw.read_photo(path, size)


def _rex_panels(section: Section, size: int, visuals: Visuals, thumb: int) -> list[Panel]:
    responsibility = section.array("responsibility")
    if responsibility is None:
        return []
    mask = section.array("explanation")
    multi = section.array("explanations")
    masks = (
        list(multi) if multi is not None and len(multi) else ([mask] if mask is not None else [])
    )
    attributes = section.attributes
    units = attributes.get("units")
    if isinstance(units, list) and responsibility.ndim == 1 and len(units) == responsibility.size:
        html = text_html([str(u) for u in units], responsibility, mask)
        visuals.thumbnail_svg = visuals.thumbnail_svg or signal_svg(
            responsibility, mask, "", 64, 32
        )
        return [Panel("text, by responsibility (explanation underlined)", html=html)]
    if responsibility.ndim == 2:
        photo = photo_for(section, size)
        shape = photo.shape[:2] if photo is not None else draw.fit_size(responsibility.shape, size)
        background = photo if photo is not None else draw.heatmap(responsibility, shape)
        panels = []
        if masks:
            layer = draw.png_uri(draw.overlay(masks, shape))
            box = box_svg(attributes.get("target_box"), responsibility.shape, shape)
            title = f"{len(masks)} explanation(s) (--multi)" if multi is not None else "explanation"
            panels.append(Panel(title, draw.jpeg_uri(background), layer, box))
        panels.append(Panel("responsibility", draw.jpeg_uri(draw.heatmap(responsibility, shape))))
        necessary = section.array("necessary")
        if necessary is not None:
            layer = draw.png_uri(draw.overlay([necessary], shape))
            panels.append(Panel("necessary part (--complete)", draw.jpeg_uri(background), layer))
        if not visuals.thumbnail:
            small = draw.fit_size(shape, thumb)
            picture = draw.dimmed(draw.resize(background, small, smooth=True), mask)
            visuals.thumbnail = draw.jpeg_uri(picture, quality=70)
        return panels
    drawn = mode_picture(attributes, responsibility, mask, section.store)
    panels = [Panel(f"{attributes.get('mode', 'input')} explanation", uri=drawn)] if drawn else []
    if responsibility.ndim == 1:
        if not panels:
            panels.append(Panel("responsibility", svg=signal_svg(responsibility, mask)))
        visuals.thumbnail_svg = visuals.thumbnail_svg or signal_svg(
            responsibility, mask, "", 64, 32
        )
    elif responsibility.ndim == 3:
        slab = int(np.argmax(responsibility.reshape(responsibility.shape[0], -1).sum(axis=1)))
        shape = draw.fit_size(responsibility.shape[1:], size)
        panels.append(
            Panel(
                f"responsibility, slice {slab}",
                draw.jpeg_uri(draw.heatmap(responsibility[slab], shape)),
            )
        )
        if not visuals.thumbnail:
            visuals.thumbnail = draw.jpeg_uri(
                draw.heatmap(responsibility[slab], draw.fit_size(shape, thumb)), 70
            )
    return panels


def _cem_panels(section: Section, size: int, visuals: Visuals, thumb: int) -> list[Panel]:
    panels = []
    for kind in ("pertinent_positive", "pertinent_negative"):
        solution, regions = section.array(kind), section.array(f"{kind}_regions")
        words = kind.replace("_", " ")
        if solution is not None:
            panels.append(array_panel(words, solution, size, grey_picture=True))
        if regions is not None:
            panels.append(array_panel(f"{words}: region values", regions, size))
            if not visuals.thumbnail and not visuals.thumbnail_svg:
                _thumbnail_of(visuals, regions, thumb)
    return panels


def _l2x_panels(section: Section, size: int, visuals: Visuals, thumb: int) -> list[Panel]:
    selection = section.array("l2x_selection")
    if selection is None:
        return []
    photo = photo_for(section, size) if selection.ndim == 2 else None
    if photo is not None:
        layer = draw.png_uri(draw.overlay([selection], photo.shape[:2]))
        panel = Panel("selected regions", draw.jpeg_uri(photo), layer)
    else:
        panel = array_panel("selected regions", selection, size)
    if not visuals.thumbnail and not visuals.thumbnail_svg:
        _thumbnail_of(visuals, selection, thumb)
    return [panel]


def _thumbnail_of(visuals: Visuals, values: np.ndarray, thumb: int) -> None:
    flat = np.squeeze(values)
    if flat.ndim == 2:
        visuals.thumbnail = draw.jpeg_uri(draw.heatmap(flat, draw.fit_size(flat.shape, thumb)), 70)
    elif flat.ndim == 1:
        visuals.thumbnail_svg = signal_svg(flat, None, "", 64, 32)


def array_panel(title: str, values: np.ndarray, size: int, grey_picture: bool = False) -> Panel:
    """Any array as a picture: 1-D as a line, 2-D as a heatmap (or grey picture), a channel
    axis of 1 or 3 as a picture, 3-D as its fullest slice."""
    array = np.squeeze(np.asarray(values, np.float64))
    if array.ndim == 3 and array.shape[0] == 3:
        array = np.moveaxis(array, 0, -1)
        return Panel(title, draw.jpeg_uri(draw.grey(array, draw.fit_size(array.shape[:2], size))))
    if array.ndim == 3:
        slab = int(np.argmax(np.abs(array).reshape(array.shape[0], -1).sum(axis=1)))
        array, title = array[slab], f"{title} (slice {slab})"
    if array.ndim == 2:
        shape = draw.fit_size(array.shape, size)
        picture = draw.grey(array, shape) if grey_picture else draw.heatmap(array, shape)
        return Panel(title, draw.png_uri(picture))
    return Panel(title, svg=signal_svg(array.reshape(-1), None, title))


def text_html(units: list[str], responsibility: np.ndarray, mask: np.ndarray | None) -> str:
    """Text units (words, sentences or tokens) shaded by responsibility, the explanation's
    units underlined."""
    weights = draw.scaled(responsibility)
    inside = np.zeros(len(units), bool) if mask is None else np.asarray(mask).reshape(-1) > 0
    spans = []
    for unit, weight, chosen in zip(units, weights, inside, strict=False):
        style = f"background:rgba(255,140,0,{weight:.2f})"
        extra = ' class="chosen"' if chosen else ""
        spans.append(f'<span{extra} style="{style}">{escape(unit)}</span>')
    return '<p class="text-units">' + " ".join(spans) + "</p>"


def box_svg(box: Any, map_shape: tuple[int, ...], shape: tuple[int, int]) -> str:
    """A detection target's box (model pixels x0, y0, x1, y1) over the card's picture."""
    if not (isinstance(box, list) and len(box) == 4 and len(map_shape) == 2):
        return ""
    sy, sx = shape[0] / map_shape[0], shape[1] / map_shape[1]
    x0, y0, x1, y1 = (float(v) for v in box)
    return (
        f'<svg class="box" viewBox="0 0 {shape[1]} {shape[0]}"><rect x="{x0 * sx:.1f}" '
        f'y="{y0 * sy:.1f}" width="{(x1 - x0) * sx:.1f}" height="{(y1 - y0) * sy:.1f}" '
        'fill="none" stroke="#0f0" stroke-width="2"/></svg>'
    )
