"""Reading a store's small arrays and groups straight from their files gives what zarr gives,
and anything the direct reader does not know is read through zarr instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream.report.reading import read_contents
from rex_stream.report.store_files import members, read_array


@pytest.mark.parametrize(
    "values",
    [
        np.linspace(-1.0, 2.0, 35, dtype=np.float32).reshape(5, 7),
        (np.arange(3 * 4 * 5) % 3 == 0).reshape(3, 4, 5),
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.arange(-6, 6, dtype=np.int64),
        np.array([np.nan, np.inf, 0.5], dtype=np.float64),
    ],
)
def test_one_chunk_arrays_read_as_zarr_reads_them(tmp_path: Path, values: np.ndarray) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    group.create_array("a", data=values)
    direct = read_array(tmp_path / "s.zarr" / "a")
    assert direct is not None and direct.dtype == values.dtype
    stored = group["a"]
    assert isinstance(stored, zarr.Array)
    np.testing.assert_array_equal(direct, np.asarray(stored[...]))
    direct[...] = values.flat[0]  # a writable copy, not a view of the file's bytes


def test_what_the_reader_does_not_know_falls_back_to_zarr(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    group = root.create_group("photo.png")
    group.attrs.update({"rex_stream": "test", "complete": True})
    big = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    group.create_array("responsibility", data=big, chunks=(16, 16))  # several chunks
    group.create_array("explanation", shape=(4, 4), dtype="uint8", fill_value=1)  # unwritten
    assert read_array(tmp_path / "s.zarr" / "photo.png" / "responsibility") is None
    assert read_array(tmp_path / "s.zarr" / "photo.png" / "explanation") is None
    assert members(tmp_path / "s.zarr" / "photo.png") == ([], ["explanation", "responsibility"])
    (entry,) = read_contents([tmp_path / "s.zarr"]).entries
    section = entry.sections[0]
    np.testing.assert_array_equal(section.array("responsibility"), big)
    np.testing.assert_array_equal(section.array("explanation"), np.ones((4, 4), np.uint8))
    assert section.array("necessary") is None
