"""What a cluster run's inputs are: files, or rows of a table (``table.csv#row=7``).

A table of a million rows is a million tiny inputs: each row is its own store group
(``table.csv__row7``), explained with ``mode_options["row"]`` set to its row, and rows travel in
shards (``inputs_per_task``) so that each task lasts long enough to hide Dask's own cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath

from rex_stream.errors import ConfigError
from rex_stream.naming import input_name

ROW = "#row="


def split_row(source: str) -> tuple[str, int | None]:
    """``table.csv#row=7`` → (``table.csv``, 7); any other source → (source, None)."""
    path, marker, row = source.rpartition(ROW)
    if marker and row.isdigit():
        return path, int(row)
    return source, None


def default_name(source: str) -> str:
    """The store group of a source: its file name, or ``<file name>__row<N>`` for a row."""
    path, row = split_row(source)
    name = Path(path).name
    return input_name(name) if row is None else input_name(PurePath(name, f"row{row}"))


def row_sources(path: str | Path, rows: str, count: int) -> list[str]:
    """The sources of rows ``rows`` (``all``, ``A:B`` or ``N``) of a table of ``count`` rows."""
    text = rows.strip()
    if text == "all":
        first, stop = 0, count
    else:
        start, colon, end = text.partition(":")
        try:
            first = int(start) if start else 0
            stop = (int(end) if end else count) if colon else first + 1
        except ValueError:
            raise ConfigError(f"--rows {rows!r}: expected all, A:B or N") from None
    if not 0 <= first < stop <= count:
        raise ConfigError(f"--rows {rows!r}: the table has rows 0 to {count - 1}")
    return [f"{path}{ROW}{row}" for row in range(first, stop)]


def names_for(sources: Sequence[str]) -> list[str]:
    """Default store groups of ``sources``."""
    return [default_name(source) for source in sources]
