"""Image pictures (issue 27, item 13): ``--complete``'s picture outlines the necessary part in
its own colour with a legend line, colour-bar ticks are round numbers, and an outline that
reaches the picture's edge closes along it."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from rex_stream import explain_sync
from rex_stream.pictures.colour_bar import add_colour_bar, round_levels
from rex_stream.pictures.image import NECESSARY_COLOUR, save_heatmap, save_overlay
from rex_stream.pictures.outline import draw_outline


def _colour_pixels(picture: Path, colour: str) -> int:
    """How many pixels of the PNG are (about) ``colour``."""
    pixels = np.asarray(Image.open(picture).convert("RGB"), np.int16)
    wanted = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - wanted).max(axis=2) <= 12).sum())


@pytest.fixture(scope="module")
def complete(tiny_cnn: Path, tiny_image: Path):  # type: ignore[no-untyped-def]
    return explain_sync(str(tiny_image), str(tiny_cnn), iters=4, seed=1, complete=True)


def test_the_complete_picture_outlines_the_necessary_part(
    complete,
    tiny_cnn: Path,
    tiny_image: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    assert complete.complete is not None and complete.complete.necessary.mask.any()
    with_part, svg = tmp_path / "complete.png", tmp_path / "complete.svg"
    save_overlay(complete, with_part)
    assert _colour_pixels(with_part, NECESSARY_COLOUR) > 50
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        save_overlay(complete, svg)
    area = f"{complete.complete.necessary.area:.1%}"
    assert f"necessary part: {area} of the input" in svg.read_text().replace("&#37;", "%")
    plain = explain_sync(str(tiny_image), str(tiny_cnn), iters=4, seed=1)
    without = tmp_path / "plain.png"
    save_overlay(plain, without)
    assert _colour_pixels(without, NECESSARY_COLOUR) == 0


def _tick_labels(svg: Path) -> list[str]:
    """The numbers written in an SVG's text (its tick labels)."""
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text())
    return [
        t.strip().replace("\u2212", "-")
        for t in texts
        if re.fullmatch(r"\s*[-\u2212]?[\d.]+\s*", t)
    ]


def test_the_heatmap_colour_bar_has_round_ticks(complete, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svg = tmp_path / "heat.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        save_heatmap(complete, svg)
    ticks = _tick_labels(svg)
    assert len(ticks) >= 3
    for tick in ticks:  # 0, 0.2, 0.25, 0.5 … never 0.0137
        assert len(tick.partition(".")[2]) <= 2, ticks


def _round_step(step: float) -> bool:
    """Whether ``step`` is 1, 2, 2.5 or 5 times a power of ten."""
    mantissa = step / 10 ** np.floor(np.log10(step))
    return any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


@pytest.mark.parametrize(("low", "high"), [(0.0137, 0.9713), (0.31, 0.33), (-2.7, 41.3)])
def test_levels_and_bar_ticks_are_round_numbers(low: float, high: float) -> None:
    import matplotlib.pyplot as plt

    levels = round_levels(low, high, 12)
    assert levels[0] <= low and levels[-1] >= high
    step = levels[1] - levels[0]
    assert np.allclose(np.diff(levels), step)
    assert _round_step(step)
    figure, axis = plt.subplots()
    try:
        values = np.linspace(low, high, 100).reshape(10, 10)
        bar = add_colour_bar(figure, axis.contourf(values, levels=levels), axis, "x")
        ticks = np.asarray(bar.get_ticks())
        ticks = ticks[(ticks >= levels[0]) & (ticks <= levels[-1])]
        assert len(ticks) >= 2
        spacing = ticks[1] - ticks[0]
        assert np.allclose(ticks / spacing, np.round(ticks / spacing)), ticks
        assert _round_step(spacing), ticks
    finally:
        plt.close(figure)


@pytest.mark.parametrize("where", ["left", "top-left corner", "everything but a hole"])
def test_an_outline_at_the_edge_is_closed(where: str) -> None:
    import matplotlib.pyplot as plt

    mask = np.zeros((10, 12), bool)
    if where == "left":
        mask[2:6, 0:4] = True
    elif where == "top-left corner":
        mask[0:5, 0:5] = True
    else:
        mask[:] = True
        mask[4:6, 5:7] = False
    figure, axis = plt.subplots()
    try:
        axis.imshow(mask)
        limits = axis.get_xlim(), axis.get_ylim()
        draw_outline(axis, mask, "red")
        assert (axis.get_xlim(), axis.get_ylim()) == limits  # the picture keeps its size
        paths = axis.collections[-1].get_paths()
        rings = [ring for path in paths for ring in path.to_polygons(closed_only=False)]
        assert rings and all(np.allclose(ring[0], ring[-1]) for ring in rings)
        corners = np.concatenate(rings)
        assert np.isclose(corners[:, 0].min(), -0.5)  # along the left edge of the picture
    finally:
        plt.close(figure)
