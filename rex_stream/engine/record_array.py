"""A local store's record (or pack) as a one-chunk Zarr v3 array, written and read by hand.

Going through zarr for a record costs a chain of checks and metadata writes per array (about
a dozen file operations, ~10 ms of CPU); a record is small and always one chunk, so it is
written here directly, in the format zarr itself reads (plain ``zarr``, xarray and older
rex-stream versions open it unchanged):

- ``<name>/0.0``: the chunk (little-endian float64, zstd level 0, as zarr's default codecs),
  under the ``v2`` chunk key encoding so that it needs no sub-folders;
- ``<name>/zarr.json``: the metadata with the attributes.

Both are written in a hidden folder ``.<name>.<hex>`` renamed to ``<name>`` when whole: a
reader sees the whole record or none (a killed writer leaves a hidden folder, removed when
the input is compacted).

A result array (map, mask) small enough for one chunk is written the same way
(:func:`write_small_array`), in exactly the layout zarr gives it.

Reading takes the same short path for any one-chunk float64 array with these codecs (the
records zarr wrote in older stores included) and falls back to zarr for anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Zstd

_ZSTD = Zstd(level=0)
_CODECS = [
    {"name": "bytes", "configuration": {"endian": "little"}},
    {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
]


def chunk_name(ndim: int) -> str:
    """The one chunk's file name under the ``v2`` key encoding (``0.0`` for a table)."""
    return ".".join("0" * max(1, ndim))


def write_record_array(folder: Path, table: np.ndarray, attributes: dict[str, Any]) -> None:
    """Write ``table`` (float64) as a one-chunk Zarr array at ``folder``, whole or not at all.

    The array is built in a hidden sibling folder (``.<name>.<hex>``, see :func:`is_scratch`)
    and renamed into place, so ``folder`` never exists half written — not even for a reader
    that resumes while other writers of the same group (a split input's tasks) are writing.
    An array already there (a record run again) is replaced.
    """
    data = np.ascontiguousarray(table, dtype="<f8")
    scratch = folder.with_name(f"{SCRATCH}{folder.name}.{secrets.token_hex(6)}")
    scratch.mkdir()
    try:
        if data.size:
            (scratch / chunk_name(data.ndim)).write_bytes(_ZSTD.encode(data))
        metadata = {
            "shape": list(data.shape),
            "data_type": "float64",
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [max(1, n) for n in data.shape]},
            },
            "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}},
            "fill_value": 0.0,
            "codecs": _CODECS,
            "attributes": attributes,
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }
        (scratch / "zarr.json").write_text(json.dumps(metadata))
        _move_into_place(scratch, folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _move_into_place(scratch: Path, folder: Path) -> None:
    """Rename ``scratch`` to ``folder``, replacing what is there (moved aside, then removed)."""
    try:
        os.rename(scratch, folder)
        return
    except OSError:
        if not folder.exists():
            raise
    aside = scratch.with_name(scratch.name + ".old")
    with contextlib.suppress(FileNotFoundError):
        os.rename(folder, aside)
    try:
        os.rename(scratch, folder)
    except OSError:
        if not folder.is_dir():
            raise
        # another writer put the same record in place meanwhile: theirs is whole, keep it
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)


#: How the hidden folders of arrays being written begin.
SCRATCH = "."


def is_scratch(name: str) -> bool:
    """Whether ``name`` is an array's folder being written (or left by a killed writer)."""
    return name.startswith(SCRATCH)


def write_small_array(folder: Path, values: np.ndarray, dtype: str) -> None:
    """Write ``values`` as a one-chunk Zarr array of ``dtype`` at ``folder``, exactly as zarr
    would (default chunk keys ``c/0/…``, fill value 0, no chunk when all values are 0), in a
    few file operations; an array already there is replaced (its folder removed first)."""
    data = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    if data.size and data.any():
        chunk = folder.joinpath("c", *("0" * data.ndim))
        chunk.parent.mkdir(parents=True, exist_ok=True)
        chunk.write_bytes(_ZSTD.encode(data))
    zero: float | int = 0.0 if data.dtype.kind == "f" else 0
    metadata = {
        "shape": list(data.shape),
        "data_type": np.dtype(dtype).name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(data.shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": zero,
        "codecs": _CODECS if data.dtype.itemsize > 1 else [{"name": "bytes"}, _CODECS[1]],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }
    _write_metadata(folder, metadata)


def ensure_group(folder: Path) -> None:
    """Make ``folder`` a Zarr group (its ``zarr.json``) unless it is one already."""
    if not (folder / "zarr.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        _write_metadata(folder, {"attributes": {}, "zarr_format": 3, "node_type": "group"})


def _write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    """``zarr.json`` written whole: a ``zarr.<hex>.partial`` file renamed into place."""
    scratch = folder / f"zarr.{secrets.token_hex(6)}.partial"
    try:
        scratch.write_text(json.dumps(metadata))
        os.replace(scratch, folder / "zarr.json")
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def read_record_array(folder: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The table and attributes of the array at ``folder``; None when it has no metadata
    (a torn write). Raises (OSError, ValueError …) when it is damaged."""
    try:
        text = (folder / "zarr.json").read_text()
    except FileNotFoundError:
        return None
    metadata = json.loads(text)
    attributes = metadata.get("attributes") or {}
    shape = tuple(int(n) for n in metadata["shape"])
    encoding = metadata.get("chunk_key_encoding", {})
    chunk_shape = metadata.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
    plain = (
        metadata.get("data_type") == "float64"
        and metadata.get("codecs") == _CODECS
        and chunk_shape == [max(1, n) for n in shape]
        and metadata.get("fill_value") == 0.0
    )
    if plain and encoding.get("name") == "v2":
        chunk = folder / chunk_name(len(shape))
    elif plain and encoding.get("name") == "default":
        separator = encoding.get("configuration", {}).get("separator", "/")
        chunk = folder / separator.join(["c", *("0" * len(shape))])
    else:
        array = zarr.open_array(str(folder), mode="r")  # anything else: zarr's own reader
        return np.asarray(array[...], dtype=np.float64), dict(array.attrs)
    size = int(np.prod(shape)) if shape else 1
    try:
        raw = chunk.read_bytes()
    except FileNotFoundError:
        return np.zeros(shape, dtype=np.float64), attributes  # no chunk: the fill value
    values = np.frombuffer(_ZSTD.decode(raw), dtype="<f8")
    if values.size != int(np.prod(chunk_shape)) or size > values.size:
        raise ValueError(f"{chunk.name} holds {values.size} values, not {size}")
    table = values.reshape(chunk_shape)[tuple(slice(0, n) for n in shape)]
    return np.array(table, dtype=np.float64), attributes
