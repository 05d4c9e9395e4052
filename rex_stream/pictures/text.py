"""Pictures of a text explanation: the text with a responsibility colour per unit and the
explanation's units outlined — as a self-contained HTML page, a PNG (matplotlib), or a line
for the terminal."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rex_stream.errors import OutputError
from rex_stream.pictures.image import save_figure

#: Colours of the kept explanations of ``--multi`` (one outline each).
MULTI_COLOURS = ("#2ca02c", "#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#8c564b")

_ANSI_ON, _ANSI_OFF = "\033[1;30;42m", "\033[0m"


def _shades(responsibility: np.ndarray) -> np.ndarray:
    peak = float(np.max(responsibility)) if responsibility.size else 0.0
    return np.clip(responsibility / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(responsibility)


def highlight_terminal(
    units: Sequence[str], gaps: Sequence[str], shown: np.ndarray, *, colour: bool
) -> str:
    """The text on one line, the explanation's units in colour (or in ``[brackets]``)."""
    pieces = []
    for gap, unit, keep in zip(gaps, units, shown.tolist()):
        gap = " " if gap and gap.isspace() else gap
        if keep:
            unit = f"{_ANSI_ON}{unit}{_ANSI_OFF}" if colour else f"[{unit}]"
        pieces.append(gap + unit)
    return "".join(pieces).strip()


def text_html(
    units: Sequence[str],
    gaps: Sequence[str],
    responsibility: np.ndarray,
    shown: np.ndarray | None,
    title: str,
    multi: Sequence[np.ndarray] = (),
) -> str:
    """A self-contained HTML page: each unit's background is its responsibility (orange,
    stronger is more), the explanation's units are outlined in green (``--multi``: one colour
    per explanation), and hovering a unit shows its responsibility."""
    shades = _shades(responsibility)
    spans = []
    for index, (gap, unit) in enumerate(zip(gaps, units)):
        style = f"background: rgba(255, 127, 14, {0.08 + 0.82 * shades[index]:.3f});"
        outlines = [MULTI_COLOURS[k % len(MULTI_COLOURS)] for k, m in enumerate(multi) if m[index]]
        if not multi and shown is not None and shown[index]:
            outlines = [MULTI_COLOURS[0]]
        if outlines:
            style += f" outline: 2px solid {outlines[0]}; font-weight: bold;"
        classes = "unit explanation" if outlines else "unit"
        spans.append(
            html.escape(gap)
            + f'<span class="{classes}" style="{style}" '
            + f'title="{float(responsibility[index]):.4g}">{html.escape(unit)}</span>'
        )
    body = "".join(spans).replace("\n", "<br>\n")
    legend = (
        "background: responsibility (darker = more); green outline: the sufficient explanation"
        if not multi
        else f"background: responsibility; outlines: {len(multi)} explanations, one colour each"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.9}"
        ".unit{padding:1px 2px;border-radius:3px}.legend{color:#555;font-size:85%}</style>"
        f'</head><body><h3>{html.escape(title)}</h3>\n<p class="text">{body}</p>\n'
        f'<p class="legend">{legend}</p></body></html>\n'
    )


def save_text_picture(
    path: Path,
    units: Sequence[str],
    gaps: Sequence[str],
    responsibility: np.ndarray,
    shown: np.ndarray | None,
    title: str,
    multi: Sequence[np.ndarray] = (),
) -> None:
    """Write ``path``: an HTML page for ``.html``/``.htm``, else a picture (PNG, SVG, PDF …)."""
    if path.suffix.lower() in (".html", ".htm"):
        page = text_html(units, gaps, responsibility, shown, title, multi)
        try:
            path.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
        return
    _save_png(path, units, gaps, responsibility, shown, title, multi)


def _save_png(
    path: Path,
    units: Sequence[str],
    gaps: Sequence[str],
    responsibility: np.ndarray,
    shown: np.ndarray | None,
    title: str,
    multi: Sequence[np.ndarray],
) -> None:
    """The text laid out in lines of boxes, coloured as in the HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shades = _shades(responsibility)
    width_chars = 80
    lines: list[list[int]] = [[]]
    used = 0
    for index, (gap, unit) in enumerate(zip(gaps, units)):
        size = len(unit) + (1 if gap else 0)
        if "\n" in gap or (used + size > width_chars and lines[-1]):
            lines.append([])
            used = 0
        lines[-1].append(index)
        used += size
    height = 0.9 + 0.32 * len(lines)
    figure = plt.figure(figsize=(10, height), dpi=120)
    axes = figure.add_axes((0.02, 0.02, 0.96, 0.96 - 0.35 / height))
    axes.set_axis_off()
    axes.set_xlim(0, width_chars + 2)
    axes.set_ylim(len(lines), -0.2)
    colours = plt.get_cmap("Oranges")
    for row, indices in enumerate(lines):
        x = 0.0
        for index in indices:
            if x > 0 and gaps[index]:
                x += 1
            outlines = [
                MULTI_COLOURS[k % len(MULTI_COLOURS)] for k, m in enumerate(multi) if m[index]
            ]
            if not multi and shown is not None and shown[index]:
                outlines = [MULTI_COLOURS[0]]
            box = {
                "boxstyle": "round,pad=0.15",
                "facecolor": colours(0.05 + 0.8 * shades[index]),
                "edgecolor": outlines[0] if outlines else "none",
                "linewidth": 2 if outlines else 0,
            }
            axes.text(
                x, row + 0.5, units[index], family="monospace", fontsize=10, va="center",
                fontweight="bold" if outlines else "normal", bbox=box,
            )  # fmt: skip
            x += len(units[index])
    figure.suptitle(title + " — green: explanation; orange: responsibility", fontsize=9)
    try:
        save_figure(figure, path)
    finally:
        plt.close(figure)
