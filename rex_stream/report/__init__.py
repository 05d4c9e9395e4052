"""Reports: one self-contained HTML page from one or more stores (``rex-stream report``).

:func:`write_report` reads the stores (:mod:`.reading`), draws every entry (:mod:`.visuals`),
assembles the page (:mod:`.page`) and writes it atomically (:mod:`.watch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rex_stream.engine.atomic_file import write_atomically
from rex_stream.errors import InputError
from rex_stream.labels import load_labels
from rex_stream.report.options import ReportOptions, parse_filters
from rex_stream.report.page import build_page, chosen_entries
from rex_stream.report.reading import Contents, read_contents
from rex_stream.report.watch import watch

__all__ = [
    "ReportOptions",
    "ReportSummary",
    "parse_filters",
    "read_contents",
    "watch",
    "write_report",
]


@dataclass(frozen=True)
class ReportSummary:
    """What a written report holds."""

    output: str
    inputs: int
    shown: int
    counts: dict[str, int]
    bytes: int


def write_report(
    stores: Sequence[str | Path],
    output: str | Path,
    options: ReportOptions | None = None,
    *,
    summaries: Sequence[str | Path] = (),
    labels: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReportSummary:
    """Read ``stores`` and write the report to ``output`` (atomically); raises
    :class:`InputError` for a path that is not a store or stores without any input."""
    options = options or ReportOptions()
    names = load_labels(labels) if labels is not None else None
    contents = read_contents(stores, summaries, names)
    try:
        if not contents.entries:
            raise InputError(f"{', '.join(contents.stores)}: the store holds no inputs yet")
        text = build_page(contents, options, progress)
        shown = len(chosen_entries(contents, options))
    finally:
        contents.close()  # the local copies of object stores
    write_atomically(output, text)
    size = len(text.encode("utf-8"))
    return ReportSummary(str(output), len(contents.entries), shown, contents.counts, size)


def all_finished(contents: Contents) -> bool:
    """Whether no entry is still being written."""
    return all(entry.status != "running" for entry in contents.entries)
