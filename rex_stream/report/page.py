"""One self-contained HTML file: summary, index and cards, with the style sheet, the script and
every picture inline (data URIs and SVG), so it opens offline and from an e-mail attachment."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from html import escape

from rex_stream.report.assets import SCRIPT, STYLE
from rex_stream.report.cards import card_html
from rex_stream.report.index import controls_html, index_html, summary_html
from rex_stream.report.options import ReportOptions
from rex_stream.report.reading import Contents, Entry
from rex_stream.report.visuals import Visuals, draw_entry

#: Entries drawn at once (their store reads overlap; the drawing itself is numpy and Pillow).
DRAWING_THREADS = 8


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

    def drawn(entry: Entry) -> Visuals:
        return draw_entry(entry, options.picture_size, options.thumbnail_size)

    visuals: list[Visuals] = []
    # threads overlap the store reads (zarr waits on its own event loop) with the drawing
    with ThreadPoolExecutor(max_workers=DRAWING_THREADS) as pool:
        for number, picture in enumerate(pool.map(drawn, entries)):
            visuals.append(picture)
            if progress is not None:
                progress(number + 1, len(entries))
    templates = "".join(
        f'<template class="card-t" data-i="{i}">{card_html(i, e, v)}</template>'
        for i, (e, v) in enumerate(zip(entries, visuals, strict=True))
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
        f'{index_html(entries, visuals)}<h2>Cards</h2><div id="cards"></div>{templates}'
        f"<script>{SCRIPT}</script></body></html>"
    )
