"""A finished input's records on a local store, compacted into one pack per kind.

Every record is a zarr array of its own (two files, written by hand:
:mod:`rex_stream.engine.record_array`); an input with many iterations would leave many small
files. When it finishes, the records of each kind go into one array ``<kind>/pack-<token>``: a
float64 vector of every table's values one after the other, whose attributes list each record
(index, shape, attributes, SHA-256 of its table) and ``committed``. The pack is written from
the records the writer holds in memory (those it committed, or read when it resumed: nothing is
read back), like a record — its chunk first, then its metadata in one atomic rename — and only
then are the records it holds removed, so a ``kill -9`` at any moment leaves a store that
resumes exactly:

- killed while the pack is written: a pack without metadata (or, written by zarr in older
  versions, an uncommitted one), ignored; the records are all there;
- killed while the records are removed: the pack and some records, the same results twice;
  a record is read from either (the pack first), and the next compaction tidies up.

A finished input then keeps a constant number of files per kind (the kind's group and the
pack's metadata and chunk) whatever ``--iters``; a resumed run with more iterations reads the
pack, adds single records, and packs again when it finishes.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rex_stream.engine.record_array import is_scratch, read_record_array, write_record_array
from rex_stream.engine.settings_diff import plain
from rex_stream.engine.store_leftovers import clear_torn_record, is_record_name, member_path
from rex_stream.engine.store_record import DIGEST, Record, table_digest

logger = logging.getLogger("rex_stream.engine.store")

PACK_PREFIX = "pack-"


def is_pack_name(name: str) -> bool:
    """Whether ``name`` is a pack's (``pack-<token>``)."""
    return name.startswith(PACK_PREFIX)


def write_pack(records_group: zarr.Group, records: Mapping[int, Record]) -> str:
    """Write ``records`` as one pack in ``records_group`` (from memory: nothing is read back),
    its metadata last; its name."""
    name = f"{PACK_PREFIX}{secrets.token_hex(4)}"
    tables = [np.ascontiguousarray(records[i].table, dtype=np.float64) for i in sorted(records)]
    values = np.concatenate([t.ravel() for t in tables]) if tables else np.zeros(0)
    entries = [
        {
            "index": i,
            "shape": list(table.shape),
            "attributes": plain(records[i].attributes),
            DIGEST: table_digest(table),
        }
        for i, table in zip(sorted(records), tables, strict=True)
    ]
    folder = member_path(records_group, name)
    if folder is None:  # not a local folder: zarr's own way
        array = records_group.create_array(
            name, shape=values.shape, dtype="float64", chunks=(max(1, values.size),),
            attributes={"committed": False},
        )  # fmt: skip
        if values.size:
            array[:] = values
        array.update_attributes({"records": entries, "committed": True})
        return name
    write_record_array(folder, values, {"records": entries, "committed": True})
    return name


def read_pack(array: zarr.Array, what: str, warned: set[str] | None = None) -> dict[int, Record]:
    """The records of a committed pack whose checksums hold (none from an uncommitted one);
    a damaged record is left out with a warning (once per ``warned`` set), so the method runs
    it again."""
    attributes: dict[str, Any] = dict(array.attrs)
    if not attributes.get("committed", False):
        return {}
    return unpack(np.asarray(array[:], dtype=np.float64), attributes, what, warned)


def unpack(
    values: np.ndarray, attributes: Mapping[str, Any], what: str, warned: set[str] | None = None
) -> dict[int, Record]:
    """The records of a committed pack's ``values`` and ``attributes`` (see :func:`read_pack`)."""
    if not attributes.get("committed", False):
        return {}
    done: dict[int, Record] = {}
    at = 0
    for entry in attributes.get("records", []):
        shape = tuple(int(n) for n in entry["shape"])
        size = int(np.prod(shape)) if shape else 1
        table = values[at : at + size].reshape(shape)
        at += size
        index = int(entry["index"])
        if entry.get(DIGEST) != table_digest(table):
            if warned is not None and f"{what} {index}" in warned:
                continue
            if warned is not None:
                warned.add(f"{what} {index}")
            logger.warning("%s %d (packed) failed its checksum (damaged); running it again",
                           what, index)  # fmt: skip
            continue
        done[index] = Record(index, table.copy(), dict(entry.get("attributes", {})))
    return done


def read_packs(
    records_group: zarr.Group, names: list[str], what: str, read: set[str], warned: set[str]
) -> dict[int, Record]:
    """The good records of the packs among ``names`` not in ``read`` (each committed pack read
    is added to it); a damaged pack is named in a warning once (per ``warned`` set)."""
    done: dict[int, Record] = {}
    for name in (n for n in names if is_pack_name(n) and n not in read):
        folder = member_path(records_group, name)
        try:
            found = read_record_array(folder) if folder is not None else None
            if found is not None:
                unpacked = unpack(found[0], found[1], what, warned)
                done.update({i: r for i, r in unpacked.items() if i not in done})
                if found[1].get("committed"):
                    read.add(name)
        except Exception as exc:  # damaged metadata or chunk: the codec's own error
            if f"{what}/{name}" in warned:
                continue
            warned.add(f"{what}/{name}")
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("%s %s is unreadable (%s); running its records again",
                           what, name, text)  # fmt: skip
    return done


def read_single(records_group: zarr.Group, name: str, what: str) -> Record | None:
    """The single record ``name`` when it is whole and passes its checksum; None otherwise (a
    torn write from a killed run is removed; a damaged record is named in a warning)."""
    if clear_torn_record(records_group, name):
        return None  # a killed run's torn write: redo that record
    folder = member_path(records_group, name)
    try:
        read = read_record_array(folder) if folder is not None else None
        if read is None:
            return None
        table, attributes = read
        if not attributes.pop("committed", False):
            return None  # a torn write from a killed run (zarr-written): redo that record
        digest = attributes.pop(DIGEST, None)
    except Exception as exc:  # damaged metadata or chunk: the codec's own error
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        logger.warning("%s is unreadable (%s); running it again", what, text)
        return None
    if digest != table_digest(table):
        logger.warning("%s failed its checksum (damaged); running it again", what)
        return None
    return Record(int(name), table, attributes)


def holds_records(folder: Path) -> bool:
    """Whether ``folder`` holds records or packs (an array's folder holds none)."""
    try:
        with os.scandir(folder) as entries:
            return any(is_record_name(e.name) or is_pack_name(e.name) for e in entries)
    except OSError:
        return False


def compact_records(
    records_group: zarr.Group,
    names: list[str],
    records: Mapping[int, Record],
    check: Callable[[], None],
) -> str | None:
    """Pack ``records`` (every good record of the kind, held in memory or read from
    ``names``), then remove the members they came from: the single records and the older
    packs (``check`` raises when this writer may no longer change the store); the pack's
    name, None when there was nothing to pack."""
    singles = [n for n in names if is_record_name(n)]
    packs = [n for n in names if is_pack_name(n)]
    if not records or (not singles and len(packs) == 1):
        return None  # nothing to pack, or packed already
    check()
    kept = write_pack(records_group, records)
    check()  # a writer taken over never removes its successor's records
    # hidden folders of records or packs whose writer was killed (one writer at finish)
    scratch = [n for n in names if is_scratch(n)]
    for name in singles + packs + scratch:
        if name == kept or (is_record_name(name) and int(name) not in records):
            continue  # a record not in the pack (unreadable, or written meanwhile) stays
        folder = member_path(records_group, name)
        if folder is not None:
            _remove(folder)
    return kept


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
