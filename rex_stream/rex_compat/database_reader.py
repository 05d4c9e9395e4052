"""Reading ReX's sqlite database (``-db FILE``) back without ReX: rows as dicts with the
arrays decoded, or a pandas DataFrame like ReX's own ``db_to_pandas`` (pandas needed)."""

from __future__ import annotations

import ast
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.errors import ConfigError, InputError

#: blob column → (its shape column, its element type)
ARRAYS = {
    "responsibility": ("responsibility_shape", np.float32),
    "sufficiency_mask": ("mask_shape", np.bool_),
    "contrastive_mask": ("mask_shape", np.bool_),
    "complete_mask": ("mask_shape", np.bool_),
}


def read_database(path: str | Path) -> list[dict[str, Any]]:
    """Every row of the ``rex`` table, arrays decoded to numpy (None where empty)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such database file")
    try:
        connection = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot open it as sqlite ({exc})") from exc
    try:
        connection.row_factory = sqlite3.Row
        rows = [dict(row) for row in connection.execute("SELECT * FROM rex ORDER BY id")]
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a ReX database ({exc})") from exc
    finally:
        connection.close()
    for row in rows:
        for column, (shape_column, dtype) in ARRAYS.items():
            row[column] = _decode(row.get(column), row.get(shape_column), dtype, path)
    return rows


def database_to_pandas(path: str | Path) -> Any:
    """The ``rex`` table as a pandas DataFrame, one row per explanation, arrays decoded (the
    columns of ReX's ``db_to_pandas``); pandas must be installed (``pip install pandas``)."""
    try:
        import pandas
    except ImportError:
        raise ConfigError(
            "reading a database into a DataFrame needs pandas: pip install pandas "
            "(read_database gives the rows without it)"
        ) from None
    return pandas.DataFrame(read_database(path))


def _decode(blob: Any, shape_text: Any, dtype: Any, path: str | Path) -> np.ndarray | None:
    if blob is None:
        return None
    try:
        shape = tuple(ast.literal_eval(str(shape_text)))
        array = np.frombuffer(zlib.decompress(blob), dtype=np.uint8 if dtype is np.bool_ else dtype)
        return array.reshape(shape).astype(dtype, copy=False)
    except (ValueError, SyntaxError, TypeError, zlib.error) as exc:
        raise InputError(f"{path}: a damaged array in the database ({exc})") from exc
