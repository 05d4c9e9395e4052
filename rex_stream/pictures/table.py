"""The picture of a table row's explanation: its top features as horizontal bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rex_stream.pictures.image import save_figure

#: bar colours: in the sufficient explanation, and not
EXPLAINED_COLOUR = "#d62728"
OTHER_COLOUR = "#9aa5b1"


def save_feature_bars(
    labels: Sequence[str],
    responsibility: Sequence[float],
    explained: Sequence[bool],
    title: str,
    path: Path,
) -> None:
    """Bars of the features' responsibility, the first at the top; features in the
    explanation in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(labels)
    figure, axes = plt.subplots(figsize=(7.5, 1.2 + 0.32 * count), dpi=120)
    colours = [EXPLAINED_COLOUR if shown else OTHER_COLOUR for shown in explained]
    axes.barh(range(count), list(responsibility)[::-1], color=colours[::-1])
    axes.set_yticks(range(count), list(labels)[::-1], fontsize=8)
    axes.set_xlabel("responsibility")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    try:
        save_figure(figure, path)
    finally:
        plt.close(figure)
