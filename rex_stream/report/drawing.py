"""Drawing every entry's index row and card, in worker processes when there are many.

Decoding photos and encoding JPEG/PNG pictures is most of a report's build time and holds
Python's lock, so a large report draws its entries in a bounded pool of processes (one per
core, at most :data:`MAX_WORKERS`), a chunk of entries per task; results come back in entry
order, so the page is the same whatever the pool's size. Small reports draw in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from rex_stream.pictures.thumbnails import colour_table
from rex_stream.report.cards import card_html
from rex_stream.report.index import row_html
from rex_stream.report.reading import Entry
from rex_stream.report.visuals import draw_entry

#: Drawing processes at most (each holds one chunk's pictures at a time).
MAX_WORKERS = 4
#: Entries per task sent to a drawing process.
CHUNK = 25
#: Below this many entries the pool's start-up costs more than it saves.
POOL_FROM = 100


def draw_html(
    entries: Sequence[Entry],
    size: int,
    thumb: int,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
) -> list[tuple[str, str]]:
    """(index row, card) HTML of every entry, in order; ``workers`` processes (None: one per
    available core, none for a small report, 0: in this process), ``chunk`` entries a task."""
    if workers is None:
        workers = 0 if len(entries) < POOL_FROM else min(MAX_WORKERS, available_cores())
    chunks = [
        (start, list(entries[start : start + chunk])) for start in range(0, len(entries), chunk)
    ]
    out: list[tuple[str, str]] = []

    def keep(drawn: list[tuple[str, str]]) -> None:
        out.extend(drawn)
        if progress is not None:
            progress(len(out), len(entries))

    if workers <= 1 or len(chunks) <= 1 or sys.platform != "linux":
        for start, part in chunks:
            keep(draw_chunk(start, part, size, thumb))
        return out
    # fork: workers start at once, with the modules and the colour table already loaded, and
    # need no importable __main__ (zarr resets its event loop in a forked child itself)
    colour_table()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
        tasks = [pool.submit(draw_chunk, start, part, size, thumb) for start, part in chunks]
        for task in tasks:
            keep(task.result())
    return out


def draw_chunk(start: int, entries: list[Entry], size: int, thumb: int) -> list[tuple[str, str]]:
    """(index row, card) HTML of ``entries``, numbered from ``start``."""
    drawn = []
    for number, entry in enumerate(entries, start):
        visuals = draw_entry(entry, size, thumb)
        drawn.append((row_html(number, entry, visuals), card_html(number, entry, visuals)))
    return drawn


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
