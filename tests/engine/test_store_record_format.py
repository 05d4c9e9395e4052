"""Records on a local store, written by hand as one-chunk Zarr arrays: plain zarr reads them,
and a store whose records (and pack) zarr itself wrote, as older versions did, still resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from rex_stream.engine.record_array import (
    read_record_array,
    write_record_array,
    write_small_array,
)
from rex_stream.engine.store import DIGEST, ExplanationStore, Record, table_digest
from rex_stream.engine.store_pack import read_pack

SETTINGS = {"method": "record format test"}


def _table(index: int) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.normal(size=(1 + index % 4, 6))


def test_a_record_written_by_hand_is_a_plain_zarr_array(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    opened = ExplanationStore.open(store, "input", SETTINGS, 2)
    try:
        opened.commit("ledger", Record(3, _table(3), {"passing": 2, "ratio": np.float32(0.5)}))
        opened.commit("ledger", Record(4, np.zeros((0, 6)), {"passing": 0}))
    finally:
        opened.close()
    ledger = zarr.open_group(str(store / "input" / "ledger"), mode="r")
    array = ledger["000003"]
    assert isinstance(array, zarr.Array)
    assert np.array_equal(array[...], _table(3))
    assert array.attrs["passing"] == 2 and array.attrs["ratio"] == 0.5
    assert array.attrs[DIGEST] == table_digest(_table(3)) and array.attrs["committed"] is True
    assert ledger["000004"].shape == (0, 6)


def test_hand_reader_equals_zarr_on_arrays_zarr_wrote(tmp_path: Path) -> None:
    """The short reader takes zarr's own files (older stores' records) and falls back to zarr
    for a layout it does not know (several chunks)."""
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    cases = {
        "one": (_table(1), (2, 6)),
        "empty": (np.zeros((0, 6)), (1, 6)),
        "chunks": (np.arange(60.0).reshape(10, 6), (3, 6)),  # zarr's reader
    }
    for name, (table, chunks) in cases.items():
        array = group.create_array(name, shape=table.shape, dtype="float64", chunks=chunks,
                                   attributes={"a": name})  # fmt: skip
        if table.size:
            array[:] = table
    for name, (table, _) in cases.items():
        read = read_record_array(tmp_path / "g.zarr" / name)
        assert read is not None
        assert np.array_equal(read[0], table) and read[1] == {"a": name}, name
    write_record_array(tmp_path / "g.zarr" / "hand", _table(2), {"b": 1})
    assert np.array_equal(zarr.open_array(str(tmp_path / "g.zarr" / "hand"))[...], _table(2))
    assert read_record_array(tmp_path / "g.zarr" / "missing") is None


def _write_old_style(store: Path) -> None:
    """An unfinished group as an older rex-stream left it: records 0–4 in a pack, 5–7 single,
    every array written through zarr (default codecs and chunk keys)."""
    opened = ExplanationStore.open(store, "input", SETTINGS, 2)
    opened.close()
    group = zarr.open_group(str(store / "input"), mode="r+")
    values = np.concatenate([_table(i).ravel() for i in range(5)])
    entries = [
        {"index": i, "shape": list(_table(i).shape), "attributes": {"i": i},
         DIGEST: table_digest(_table(i))}
        for i in range(5)
    ]  # fmt: skip
    pack = group.create_array("ledger/pack-0ld0ld00", shape=values.shape, dtype="float64",
                              chunks=values.shape, attributes={"committed": False})  # fmt: skip
    pack[:] = values
    pack.update_attributes({"records": entries, "committed": True})
    for index in range(5, 8):
        table = _table(index)
        array = group.create_array(f"ledger/{index:06d}", shape=table.shape, dtype="float64",
                                   chunks=table.shape, attributes={"committed": False})  # fmt: skip
        array[:] = table
        array.update_attributes({"i": index, DIGEST: table_digest(table), "committed": True})
    group.attrs["complete"] = False


def test_an_older_store_with_zarr_written_records_resumes(tmp_path: Path) -> None:
    store = tmp_path / "old.zarr"
    _write_old_style(store)
    assert (store / "input" / "ledger" / "000005" / "c" / "0" / "0").is_file()  # zarr's keys
    opened = ExplanationStore.open(store, "input", SETTINGS, 2, resume=True)
    try:
        done = opened.committed("ledger")
        assert sorted(done) == list(range(8))
        for index, record in done.items():
            assert np.array_equal(record.table, _table(index)), index
            assert dict(record.attributes) == {"i": index}
        for index in range(8, 12):
            opened.commit("ledger", Record(index, _table(index), {"i": index}))
        opened.finish()
    finally:
        opened.close()
    ledger = store / "input" / "ledger"
    (pack,) = (p for p in ledger.iterdir() if p.is_dir())
    assert pack.name.startswith("pack-") and pack.name != "pack-0ld0ld00"
    again = ExplanationStore.attach(store, "input", 2).committed("ledger")
    assert sorted(again) == list(range(12))
    assert all(np.array_equal(r.table, _table(i)) for i, r in again.items())
    # the new pack reads with plain zarr, as the report reads it
    array = zarr.open_group(str(ledger), mode="r")[pack.name]
    assert isinstance(array, zarr.Array)
    assert sorted(read_pack(array, "pack")) == list(range(12))


def test_a_small_result_array_is_written_as_zarr_writes_it(tmp_path: Path) -> None:
    """Maps and masks of one chunk, written by hand: the same metadata and chunk files as
    zarr's own (an all-zero mask has no chunk file, as with zarr)."""
    rng = np.random.default_rng(1)
    cases = {
        "map": (rng.random((32, 20)), "float32"),
        "mask": (rng.random((32, 20)) > 0.5, "uint8"),
        "zeros": (np.zeros((5, 7)), "uint8"),
        "volume": (rng.random((3, 4, 5)), "float64"),
    }
    group = zarr.open_group(str(tmp_path / "zarr"), mode="w")
    (tmp_path / "hand").mkdir()
    for name, (values, dtype) in cases.items():
        array = group.create_array(name, shape=values.shape, dtype=dtype, chunks=values.shape,
                                   fill_value=0)  # fmt: skip
        array[...] = values.astype(dtype)
        write_small_array(tmp_path / "hand" / name, values, dtype)
        write_small_array(tmp_path / "hand" / name, values, dtype)  # replaced, not mixed
    for name, (values, dtype) in cases.items():
        ours, theirs = tmp_path / "hand" / name, tmp_path / "zarr" / name
        files = sorted(str(p.relative_to(theirs)) for p in theirs.rglob("*") if p.is_file())
        assert files == sorted(str(p.relative_to(ours)) for p in ours.rglob("*") if p.is_file())
        for file in files:
            if file == "zarr.json":
                assert json.loads((ours / file).read_text()) == json.loads(
                    (theirs / file).read_text()
                )
            else:
                assert (ours / file).read_bytes() == (theirs / file).read_bytes(), name
        assert np.array_equal(zarr.open_array(str(ours))[...], values.astype(dtype))
