"""Tables are read in chunks of rows: the same values and errors as reading them at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rex_stream.errors import InputError
from rex_stream.modes import _table_io
from rex_stream.modes._table_io import read_table


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_table_io, "CHUNK_ROWS", 3)


@pytest.mark.parametrize("header", [True, False])
def test_chunked_csv_has_every_row(tmp_path: Path, small_chunks: None, header: bool) -> None:
    values = np.random.default_rng(0).random((11, 4)).round(5)
    values[7, 2] = np.nan
    path = tmp_path / "t.csv"
    lines = ["a,b,c,d"] if header else []
    lines += [",".join("" if np.isnan(v) else f"{v:.5f}" for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n")
    table = read_table(path)
    assert table.names == (["a", "b", "c", "d"] if header else ["f0", "f1", "f2", "f3"])
    assert table.values.shape == (11, 4)
    assert np.array_equal(table.values, values, equal_nan=True)


def test_error_in_a_later_chunk_names_its_row(tmp_path: Path, small_chunks: None) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i},{i + 1}" for i in range(8)]
    rows[6] = "6,seven"
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"row 6 has non-numeric values in \['y'\]"):
        read_table(path)
    rows[6] = "6,7,8"
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match="row 6 has 3 cells, expected 2"):
        read_table(path)


def test_header_only_and_empty_tables_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y\n")
    with pytest.raises(InputError, match="header but no rows"):
        read_table(path)
    path.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        read_table(path)
