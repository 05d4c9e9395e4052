"""Reading texts: a ``.txt`` file is one text; a ``.jsonl``, ``.csv`` or ``.tsv`` file holds
one text per row, in the column the mode option ``column=NAME`` names (default ``text``),
of which ``row=N`` picks one (default 0)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rex_stream.errors import InputError

ROW_SUFFIXES = (".jsonl", ".csv", ".tsv")

#: Bytes read at most from one text file (a text classifier takes far less).
MAX_TEXT_BYTES = 16 << 20


def read_text_file(path: Path) -> str:
    """The UTF-8 content of ``path``; a binary or non-UTF-8 file is one error line."""
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise InputError(f"{path}: over {MAX_TEXT_BYTES >> 20} MiB, not a text to explain")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if b"\x00" in data:
        raise InputError(f"{path}: a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"
        ) from exc


def read_rows(path: Path, column: str) -> list[str]:
    """Every row's text in ``column`` of a .jsonl, .csv or .tsv file."""
    content = read_text_file(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(content, column, path)
    reader = csv.DictReader(io.StringIO(content), delimiter="\t" if suffix == ".tsv" else ",")
    if reader.fieldnames is None or column not in reader.fieldnames:
        found = ", ".join(reader.fieldnames or []) or "none"
        raise InputError(f"{path}: no column {column!r} (columns: {found}); use column=NAME")
    return [row[column] or "" for row in reader]


def _jsonl_rows(content: str, column: str, path: Path) -> list[str]:
    rows = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or column not in record:
            keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
            raise InputError(
                f"{path}:{number}: no field {column!r} (found: {keys}); use column=NAME"
            )
        if not isinstance(record[column], str):
            raise InputError(f"{path}:{number}: field {column!r} is not a string")
        rows.append(record[column])
    return rows


def read_text(path: Path, column: str, row: int) -> tuple[str, str, str]:
    """(text, name, source) of ``path``: the file's text, or one row of a row file (its
    source ``path#row=N``, as a table row's)."""
    if path.suffix.lower() not in ROW_SUFFIXES:
        return read_text_file(path), path.stem, str(path)
    rows = read_rows(path, column)
    if not -len(rows) <= row < len(rows):
        raise InputError(f"{path}: row {row} does not exist ({len(rows)} rows)")
    row %= len(rows)
    return rows[row], f"{path.stem}-row{row}", f"{path}#row={row}"


def count_texts(path: Path, column: str) -> int:
    """How many texts ``path`` holds (1 for a .txt file)."""
    return len(read_rows(path, column)) if path.suffix.lower() in ROW_SUFFIXES else 1
