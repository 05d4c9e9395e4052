"""ReX's database read back without ReX: the rows' arrays equal the run's own, and a
DataFrame when pandas is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rex_stream import explain_sync
from rex_stream.errors import InputError
from rex_stream.rex_compat.database import append_explanation
from rex_stream.rex_compat.database_reader import database_to_pandas, read_database


def test_rows_decode_to_the_runs_arrays(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    result = explain_sync(tiny_image, str(tiny_cnn), iters=2, seed=2, min_box_size=4)
    database = tmp_path / "rex.db"
    append_explanation(database, result)
    append_explanation(database, result)
    rows = read_database(database)
    assert len(rows) == 2
    row = rows[0]
    assert row["target"] == result.target.classification
    np.testing.assert_array_equal(row["responsibility"], np.asarray(result.responsibility, "f4"))
    assert result.sufficiency is not None
    mask = row["sufficiency_mask"]
    assert mask.dtype == bool and mask.shape == result.subject.tensor.shape
    np.testing.assert_array_equal(mask[0], result.sufficiency.mask)
    assert row["complete_mask"] is None


def test_not_a_database_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("not sqlite")
    with pytest.raises(InputError, match=r"not a ReX database|cannot open"):
        read_database(bogus)
    with pytest.raises(InputError, match="no such database"):
        read_database(tmp_path / "missing.db")


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas not installed")
def test_dataframe(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    result = explain_sync(tiny_image, str(tiny_cnn), iters=2, seed=2, min_box_size=4)
    append_explanation(tmp_path / "rex.db", result)
    frame = database_to_pandas(tmp_path / "rex.db")
    assert len(frame) == 1 and frame["target"][0] == result.target.classification
