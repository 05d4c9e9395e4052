"""A finished input's records on a local store, compacted into one pack per kind.

Every record is a zarr array of its own (two files); an input with many iterations would leave
many small files. When it finishes, the records of each kind go into one array
``<kind>/pack-<token>``: a float64 vector of every table's values one after the other, whose
attributes list each record (index, shape, attributes, SHA-256 of its table) and, written last,
``committed``. The pack is written like a record — data first, then its metadata replaced in one
atomic rename (zarr ≥ 3.1.3) — and only then are the records it holds removed, so a
``kill -9`` at any moment leaves a store that resumes exactly:

- killed while the pack is written: an uncommitted pack, ignored; the records are all there;
- killed while the records are removed: the pack and some records, the same results twice;
  a record is read from either (the pack first), and the next compaction tidies up.

A finished input then keeps a constant number of files per kind (the kind's group and the
pack's metadata and chunk) whatever ``--iters``; a resumed run with more iterations reads the
pack, adds single records, and packs again when it finishes.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rex_stream.engine.settings_diff import plain
from rex_stream.engine.store_leftovers import is_record_name, member_path
from rex_stream.engine.store_record import DIGEST, Record, table_digest

logger = logging.getLogger("rex_stream.engine.store")

PACK_PREFIX = "pack-"


def is_pack_name(name: str) -> bool:
    """Whether ``name`` is a pack's (``pack-<token>``)."""
    return name.startswith(PACK_PREFIX)


def write_pack(records_group: zarr.Group, records: Mapping[int, Record]) -> str:
    """Write ``records`` as one pack in ``records_group``, committed last; its name."""
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
    array = records_group.create_array(
        name,
        shape=values.shape,
        dtype="float64",
        chunks=(max(1, values.size),),
        attributes={"committed": False},
    )
    if values.size:
        array[:] = values
    array.update_attributes({"records": entries, "committed": True})
    return name


def read_pack(array: zarr.Array, what: str, warned: set[str] | None = None) -> dict[int, Record]:
    """The records of a committed pack whose checksums hold (none from an uncommitted one);
    a damaged record is left out with a warning (once per ``warned`` set), so the method runs
    it again."""
    attributes: dict[str, Any] = dict(array.attrs)
    if not attributes.get("committed", False):
        return {}
    values = np.asarray(array[:], dtype=np.float64)
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


def compact_records(
    records_group: zarr.Group,
    names: list[str],
    records: Mapping[int, Record],
    check: Callable[[], None],
) -> None:
    """Pack ``records`` (every good record of the kind, read from ``names``), then remove the
    members they came from: the single records and the older packs (``check`` raises when
    this writer may no longer change the store)."""
    singles = [n for n in names if is_record_name(n)]
    packs = [n for n in names if is_pack_name(n)]
    if not records or (not singles and len(packs) == 1):
        return  # nothing to pack, or packed already
    check()
    kept = write_pack(records_group, records)
    check()  # a writer taken over never removes its successor's records
    for name in singles + packs:
        if name == kept or (is_record_name(name) and int(name) not in records):
            continue  # a record not in the pack (unreadable, or written meanwhile) stays
        folder = member_path(records_group, name)
        if folder is not None:
            _remove(folder)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
