"""Reading numeric tables (CSV/TSV with an optional header, Parquet, .npy) for tabular mode."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.errors import InputError
from rex_stream.modes._npy import load_npy


@dataclass
class Table:
    """A numeric table: ``values`` is (rows, features), ``names`` its column names."""

    values: np.ndarray
    names: list[str]


def read_table(path: Path, drop: Sequence[str] = ()) -> Table:
    """Read a CSV/TSV (header optional), Parquet or .npy table of numbers."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = load_npy(path)
            if array.ndim == 1:
                array = array[None, :]
            if array.ndim != 2:
                raise InputError(f"{path}: a table must be 1-D or 2-D, got shape {array.shape}")
            table = Table(array, [f"f{i}" for i in range(array.shape[1])])
        elif suffix in (".parquet", ".pq"):
            table = _read_parquet(path)
        else:
            table = _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    except InputError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"{path}: cannot read table ({exc})") from exc
    if drop:
        missing = [d for d in drop if d not in table.names]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} to drop; columns: {table.names}")
        keep = [i for i, n in enumerate(table.names) if n not in drop]
        table = Table(table.values[:, keep], [table.names[i] for i in keep])
    return table


#: Rows converted at a time: a large CSV is never held as Python lists of strings.
CHUNK_ROWS = 4096


def _read_delimited(path: Path, delimiter: str) -> Table:
    """CSV without pandas: a header row is recognised by non-numeric cells. Rows are checked
    and converted ``CHUNK_ROWS`` at a time, so memory is the float table plus one chunk."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = (r for r in csv.reader(handle, delimiter=delimiter) if r)
        first = next(reader, None)
        if first is None:
            raise InputError(f"{path}: the table is empty")
        names = [f"f{i}" for i in range(len(first))]
        pending: list[list[str]] = []
        if all(_is_number(cell) for cell in first):
            pending.append(first)
        else:
            names = [c.strip() for c in first]
        chunks: list[np.ndarray] = []
        number = 0
        for row in reader:
            pending.append(row)
            if len(pending) >= CHUNK_ROWS:
                chunks.append(_convert(path, pending, names, number))
                number += len(pending)
                pending = []
        if pending:
            chunks.append(_convert(path, pending, names, number))
    if not chunks:
        raise InputError(f"{path}: the table has a header but no rows")
    values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return Table(values, names)


def _convert(path: Path, rows: list[list[str]], names: list[str], first: int) -> np.ndarray:
    """Check a chunk of rows (numbered from ``first``) and make it a float array."""
    width = len(names)
    for number, row in enumerate(rows, start=first):
        if len(row) != width:
            raise InputError(f"{path}: row {number} has {len(row)} cells, expected {width}")
        bad = [names[i] for i, cell in enumerate(row) if not _is_number(cell)]
        if bad:
            raise InputError(f"{path}: row {number} has non-numeric values in {bad[:3]}")
    return np.array([[float(c) if c.strip() else np.nan for c in r] for r in rows], np.float64)


def _is_number(cell: str) -> bool:
    text = cell.strip()
    if not text:
        return True  # an empty cell is a missing value, reported as NaN later
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow ({install_command('tabular')})"
        ) from exc
    try:
        frame = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(f"{path}: cannot read Parquet ({exc})") from exc
    names = list(frame.column_names)
    columns = []
    for name in names:
        column = frame.column(name).to_numpy(zero_copy_only=False)
        if not np.issubdtype(column.dtype, np.number) and column.dtype != bool:
            raise InputError(f"{path}: column {name!r} is not numeric (drop it with drop=NAME)")
        columns.append(column.astype(np.float64))
    return Table(np.stack(columns, axis=1) if columns else np.zeros((0, 0)), names)
