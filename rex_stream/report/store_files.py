"""A local Zarr v3 store read straight from its files, for speed: a group's attributes and
members from its ``zarr.json`` and folder listing, and a small array whose one chunk is stored
with the ``bytes`` codec (optionally ``zstd`` or ``gzip``) decoded with numpy.

A report reads thousands of small groups; through zarr each array costs a few milliseconds of
metadata objects and event-loop hops, here a fraction of one. Anything else (several chunks, a
missing chunk, other codecs or formats) answers None, and the caller reads it through zarr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

METADATA = "zarr.json"


def node_metadata(folder: Path) -> dict[str, Any] | None:
    """The ``zarr.json`` of a Zarr v3 node, or None when there is none (or not v3)."""
    try:
        with open(folder / METADATA, "rb") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("zarr_format") == 3 else None


def members(folder: Path) -> tuple[list[str], list[str]]:
    """The (groups, arrays) directly in a group's folder, each sorted by name."""
    groups: list[str] = []
    arrays: list[str] = []
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    except OSError:
        return groups, arrays
    for name in names:
        kind = (node_metadata(folder / name) or {}).get("node_type")
        if kind == "group":
            groups.append(name)
        elif kind == "array":
            arrays.append(name)
    return groups, arrays


def read_array(folder: Path) -> np.ndarray | None:
    """The array stored in ``folder`` when it is one chunk of plain or zstd/gzip-compressed
    bytes; None for anything this reader does not know (read it through zarr instead)."""
    meta = node_metadata(folder)
    if meta is None or meta.get("node_type") != "array":
        return None
    shape = tuple(int(n) for n in meta.get("shape", ()))
    grid = meta.get("chunk_grid") or {}
    chunks = tuple((grid.get("configuration") or {}).get("chunk_shape") or ())
    if grid.get("name") != "regular" or chunks != shape or meta.get("storage_transformers"):
        return None
    dtype = _dtype(meta.get("data_type"), meta.get("codecs") or [])
    chunk = _chunk_path(folder, meta.get("chunk_key_encoding") or {}, len(shape))
    if dtype is None or chunk is None:
        return None
    try:
        raw = chunk.read_bytes()
    except OSError:
        return None  # not written (fill value) or unreadable: zarr knows what to do
    for codec in (meta.get("codecs") or [])[1:]:
        decoded = _decode(codec, raw)
        if decoded is None:
            return None
        raw = decoded
    if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        return None
    return np.frombuffer(raw, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _dtype(name: Any, codecs: list[Any]) -> np.dtype | None:
    """The numpy type of a plain numeric ``data_type`` stored by a leading ``bytes`` codec."""
    if not codecs or not isinstance(codecs[0], dict) or codecs[0].get("name") != "bytes":
        return None
    if not isinstance(name, str) or not (
        name == "bool" or name.startswith(("int", "uint", "float"))
    ):
        return None
    try:
        dtype = np.dtype(name)
    except TypeError:
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    return dtype.newbyteorder("<" if endian == "little" else ">")


def _chunk_path(folder: Path, encoding: dict[str, Any], ndim: int) -> Path | None:
    """The file of chunk (0, …, 0)."""
    separator = (encoding.get("configuration") or {}).get("separator", "/")
    if encoding.get("name") == "default":
        parts = ["c", *(["0"] * ndim)] if ndim else ["c"]
    elif encoding.get("name") == "v2":
        parts = [*(["0"] * ndim)] if ndim else ["0"]
    else:
        return None
    return folder / separator.join(parts) if separator in ("/", ".") else None


def _decode(codec: Any, raw: bytes) -> bytes | None:
    """One bytes-to-bytes codec undone, or None for one this reader does not know."""
    name = codec.get("name") if isinstance(codec, dict) else None
    if name == "zstd":
        from numcodecs import Zstd

        return bytes(Zstd().decode(raw))
    if name == "gzip":
        import gzip

        return gzip.decompress(raw)
    return None
