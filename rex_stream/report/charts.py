"""Inline SVG drawings for the report: curves, 1-D signals with their explanation, sparklines.

SVG text is written by hand (no library, no external reference), so a chart is a few hundred
bytes and scales with the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

from rex_stream.pictures.thumbnails import MULTI_COLOURS

#: Line colours of methods side by side, as CSS colours.
LINE_COLOURS = tuple(f"rgb{colour}" for colour in MULTI_COLOURS)


def _points(values: np.ndarray, width: float, height: float, low: float, high: float) -> str:
    """A polyline's points for ``values`` spread over ``width`` and scaled into ``height``."""
    count = max(len(values) - 1, 1)
    span = high - low if high > low else 1.0
    xs = np.arange(len(values)) * (width / count)
    ys = height - (np.nan_to_num(values, nan=low) - low) / span * height
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def curves_svg(
    title: str, lines: Sequence[tuple[str, np.ndarray]], width: int = 260, height: int = 120
) -> str:
    """One metric's curves (one line per attribution), titled, with a small legend."""
    finite = [v[np.isfinite(v)] for _, v in lines if v.size]
    values = np.concatenate(finite) if finite else np.zeros(1)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 6
    inner_w, inner_h = width - 2 * pad, height - 2 * pad - 14
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img"><title>{escape(title)}</title>',
        f'<text x="{pad}" y="11" font-size="10">{escape(title)}</text>',
        f'<g transform="translate({pad},{pad + 14})">',
        f'<rect width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>',
    ]
    for number, (name, curve) in enumerate(lines):
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        if curve.size >= 2:
            points = _points(curve, inner_w, inner_h, low, high)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}">'
                f"<title>{escape(name)}</title></polyline>"
            )
        parts.append(
            f'<text x="{inner_w - 4}" y="{12 + 11 * number}" font-size="9" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append(
        f'<text x="2" y="{inner_h - 2}" font-size="8" fill="#666">{low:.3g}…{high:.3g}</text>'
    )
    parts.append("</g></svg>")
    return "".join(parts)


def signal_svg(
    values: np.ndarray,
    mask: np.ndarray | None = None,
    title: str = "",
    width: int = 320,
    height: int = 110,
) -> str:
    """A 1-D map (or signal) as a line, the explanation's elements shaded behind it."""
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size > 2000:  # a long signal: every k-th element is enough to see it
        step = int(np.ceil(values.size / 2000))
        values = values[::step]
        mask = None if mask is None else np.asarray(mask).reshape(-1)[::step]
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img"><title>{escape(title)}</title>'
    ]
    if mask is not None and values.size:
        flat = np.asarray(mask).reshape(-1) > 0
        cell = width / max(values.size, 1)
        for start, stop in _runs(flat):
            parts.append(
                f'<rect x="{start * cell:.1f}" y="0" width="{(stop - start) * cell:.1f}" '
                f'height="{height}" fill="rgba(255,200,0,0.35)"/>'
            )
    if values.size >= 2:
        points = _points(values, width, height - 4, low, high)
        parts.append(f'<polyline fill="none" stroke="#333" stroke-width="1" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
