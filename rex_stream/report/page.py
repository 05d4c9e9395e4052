"""One self-contained HTML file: summary, index and cards, with the style sheet, the script and
every picture inline (data URIs and SVG), so it opens offline and from an e-mail attachment."""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape

from rex_stream.report.assets import SCRIPT, STYLE
from rex_stream.report.drawing import draw_html
from rex_stream.report.index import controls_html, index_html, summary_html
from rex_stream.report.options import ReportOptions
from rex_stream.report.reading import Contents, Entry


def chosen_entries(contents: Contents, options: ReportOptions) -> list[Entry]:
    """The entries the filters keep, at most ``limit`` of them, in store order."""
    kept = [e for e in contents.entries if options.keeps(e)]
    return kept if options.limit is None else kept[: options.limit]


def build_page(
    contents: Contents,
    options: ReportOptions,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """The whole page as one string."""
    entries = chosen_entries(contents, options)
    drawn = draw_html(
        entries, options.picture_size, options.thumbnail_size, options.workers, progress
    )
    templates = "".join(
        f'<template class="card-t" data-i="{i}">{card}</template>'
        for i, (_, card) in enumerate(drawn)
    )
    title = escape(options.title or "rex-stream report: " + ", ".join(contents.stores))
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f'<h1>{title}</h1><p class="made">made {made} by rex-stream report</p>'
        f"{summary_html(contents, len(entries))}"
        f"<h2>Inputs</h2>{controls_html(entries, options.page_size)}"
        f'{index_html([row for row, _ in drawn])}<h2>Cards</h2><div id="cards"></div>{templates}'
        f"<script>{SCRIPT}</script></body></html>"
    )
