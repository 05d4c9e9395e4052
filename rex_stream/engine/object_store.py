"""A store group on object storage (S3 and the other fsspec protocols): no rename needed.

Layout of ``<store>`` (``s3://bucket/runs.zarr``), readable with plain zarr::

    <store>/<key>/zarr.json          head group: the result's attributes and ``generation``
    <store>/<key>/<generation>/      the result: attributes, responsibility, explanation …
    <store>.records/<key>/<generation>/<kind>/<index>   one object per committed record
    <store>.records/<key>/<generation>/<kind>.pack      a finished input's records, compacted
    <store>.locks/<key>/lease-<epoch>, beat-<epoch>     the writer's lease

- **Records**: one object each — a JSON header (shape, attributes, SHA-256) then the table —
  written with a create-only PUT: the object appears whole or not at all, so its existence is
  the done marker and the data came first. A damaged one fails its checksum and runs again.
- **Compaction**: when an input finishes, its records of each kind are packed into one object
  and the single ones deleted: a finished input keeps a constant number of objects whatever
  ``--iters``; resume reads the pack in one request.
- **Overwrite**: the new result is written as a new generation beside the old one; the head
  (one PUT, atomic) points to it only once it is complete; old generations are then deleted.
  A killed overwrite leaves the old result readable; the next writer removes the orphan.
- **One writer**: :class:`~rex_stream.engine.object_lease.ObjectLease`, checked on the store
  before each destructive step (head switch, deletions, attribute writes).

Resume never lists in an order it relies on: records are keyed by their index.
"""

from __future__ import annotations

import json
import logging
import secrets
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import zarr

from rex_stream.engine.object_lease import RECHECK_S, ObjectLease
from rex_stream.engine.store_location import StoreLocation
from rex_stream.engine.store_record import (
    DIGEST,
    Record,
    check_resumable,
    new_group_attributes,
    table_digest,
)
from rex_stream.errors import RexStreamError, StoreError

logger = logging.getLogger(__name__)

GENERATION = "generation"
PACK = ".pack"


def open_zarr_root(location: StoreLocation, mode: str = "a") -> zarr.Group:
    """The store's root group through zarr's FsspecStore; failures are one StoreError line."""
    from zarr.storage import FsspecStore

    try:
        store = FsspecStore.from_url(location.url, storage_options=location.filesystem_options())
        # zarr_format=3: no probing for a v2 store's .zgroup, .zattrs and .zmetadata
        return zarr.open_group(store=store, mode=mode, zarr_format=3)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise StoreError(f"{location.url}: no such store (or bucket)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"cannot open the store {location.url}: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """An error's type and first line, never more (no request dumps, no headers)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


@contextmanager
def object_errors(location: StoreLocation, doing: str) -> Iterator[None]:
    """Any error of the object store's libraries (botocore, aiohttp, fsspec) as one StoreError
    line, with every storage-option value blanked out of it."""
    try:
        yield
    except RexStreamError:
        raise
    except Exception as exc:
        message = describe(exc)
        for value in _option_values(location.options):
            message = message.replace(value, "***")
        raise StoreError(f"{doing} {location.url}: {message}") from None


def _option_values(options: Mapping[str, Any]) -> list[str]:
    values: list[str] = []
    for value in options.values():
        if isinstance(value, Mapping):
            values += _option_values(value)
        elif isinstance(value, str) and len(value) >= 4:
            values.append(value)
    return values


def encode_record(record: Record) -> bytes:
    """One record as bytes: a JSON header line then the float64 table."""
    table = np.ascontiguousarray(record.table, dtype="<f8")
    header = {
        "index": record.index,
        "shape": list(table.shape),
        "attributes": dict(record.attributes),
        DIGEST: table_digest(table),
    }
    return json.dumps(header).encode() + b"\n" + table.tobytes()


def decode_record(data: bytes) -> tuple[Record, bool]:
    """The record in ``data`` and whether its checksum holds (ValueError if unreadable)."""
    line, _, body = data.partition(b"\n")
    header = json.loads(line)
    table = np.frombuffer(body, dtype="<f8").reshape(header["shape"]).astype(np.float64)
    record = Record(int(header["index"]), table, header["attributes"])
    return record, header[DIGEST] == table_digest(table)


def _index(path: str) -> int:
    """A single record's index, from its object's name (-1 for a stray name)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return int(name) if name.isdigit() else -1


def pack_records(blobs: list[bytes]) -> bytes:
    """Several encoded records as one object (each prefixed by its length)."""
    return b"".join(struct.pack("<Q", len(b)) + b for b in blobs)


def unpack_records(data: bytes) -> list[bytes]:
    """The encoded records of a pack."""
    blobs, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from("<Q", data, at)
        blobs.append(data[at + 8 : at + 8 + size])
        at += 8 + size
    return blobs


class ObjectGroup:
    """The object-store side of one input's group: generation, records, head, lease."""

    def __init__(
        self,
        location: StoreLocation,
        key: str,
        generation: str,
        lease: ObjectLease | None,
        replaces: str | None = None,
    ) -> None:
        self.location = location
        self.key = key
        self.generation = generation
        self.lease = lease
        self.replaces = replaces  # the generation a finished overwrite replaces
        self.fs = location.filesystem()
        self.records_folder = f"{location.path}.records/{key}/{generation}"
        self.finished = False
        self.fresh = False  # a generation this writer created: nothing in it to overwrite
        self._known: dict[tuple[str, int], bytes] = {}  # records written or read, encoded
        self._unreadable_packs: set[str] = set()  # kinds whose pack could not be read

    @classmethod
    def open(
        cls,
        location: StoreLocation,
        key: str,
        settings: Callable[[Mapping[str, Any] | None], Mapping[str, Any]],
        *,
        resume: bool,
        overwrite: bool,
        lease: ObjectLease | None,
    ) -> tuple[ObjectGroup, zarr.Group]:
        """Open (or create) group ``key`` under ``lease``: the current generation to resume,
        or a new one (beside the old for ``overwrite``); orphaned generations are removed."""
        where = f"{location.url}/{key}"
        root = open_zarr_root(location)
        head = read_head(location.filesystem(), location, key)
        current = head.get(GENERATION) if head is not None else None
        if head is not None and not isinstance(current, str) and not overwrite:
            raise StoreError(f"{where} is not a rex-stream group; pass --overwrite to replace it")
        current = current if isinstance(current, str) else None
        tidy = cls(location, key, current or "", lease)
        # the head is written before any generation: without one there is nothing to tidy
        for orphan in tidy.orphans(current) if head is not None else []:
            tidy.remove_generation(orphan)
        if current is not None and not overwrite:
            if not resume:
                raise StoreError(
                    f"{where} already exists: pass --resume to continue it "
                    "or --overwrite to start again"
                )
            try:
                group = root[f"{key}/{current}"]
            except (KeyError, ValueError, TypeError) as exc:
                raise StoreError(
                    f"{where} has a damaged generation ({describe(exc)}); pass --overwrite"
                ) from None
            assert isinstance(group, zarr.Group)
            check_resumable(dict(group.attrs), settings, where)
            opened = cls(location, key, current, lease)
            opened.write_head({**(head or {}), "complete": False})  # whole again at finish
            return opened, group
        generation = cls.new_generation()
        attributes = new_group_attributes(settings)
        opened = cls(location, key, generation, lease, replaces=current)
        opened.fresh = True
        if head is None or current is None:
            opened.write_head({**attributes, GENERATION: generation, "complete": False})
        try:
            parent = root[key]
            assert isinstance(parent, zarr.Group)
            group = parent.create_group(generation, attributes=attributes)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"cannot write to the store {where}: {describe(exc)}") from None
        return opened, group

    def finish(self, attributes: Mapping[str, Any]) -> None:
        """Compact the records, point the head to this generation (one PUT), drop the old."""
        self.compact()
        self.write_head({**attributes, GENERATION: self.generation})
        self.finished = True
        if self.replaces is not None:
            self.remove_generation(self.replaces)

    def close(self) -> None:
        """An unfinished overwrite's generation is removed, unless the lease was lost (then it
        is another writer's to settle)."""
        if self.replaces is None or self.finished or self.lease is None:
            return
        try:
            self.remove_generation(self.generation)
        except StoreError:
            logger.warning("%s/%s: lost the lease; leaving the store to its new writer",
                           self.location.url, self.key)  # fmt: skip

    def write_head(self, attributes: Mapping[str, Any]) -> None:
        """Replace the head's attributes (checked under the lease first)."""
        self._check()
        write_head(self.fs, self.location, self.key, attributes)

    @staticmethod
    def lease_for(location: StoreLocation, key: str) -> ObjectLease:
        """The lease of group ``key``."""
        return ObjectLease(
            location.filesystem(), f"{location.path}.locks/{key}", f"{location.url}/{key}"
        )

    @staticmethod
    def new_generation() -> str:
        """A fresh generation's name (random: two writers never share one)."""
        return f"g{secrets.token_hex(6)}"

    # ------------------------------------------------------------------ records

    def commit(self, kind: str, record: Record) -> None:
        """Write one record, create-only (a record already there is the same result)."""
        if self.lease is not None:
            self.lease.check_quick()
        path = f"{self.records_folder}/{kind}/{record.index:06d}"
        blob = encode_record(record)
        try:
            self.fs.pipe_file(path, blob, mode="create")
        except FileExistsError:
            if self.fresh:  # only this writer writes its new generation: a retried PUT's
                self._known[(kind, record.index)] = blob  # first try landed
            return  # the first writer of this record won; a deterministic run wrote the same
        except OSError as exc:
            raise StoreError(
                f"cannot write {kind} {record.index} to {self.location.url}/{self.key}: "
                f"{describe(exc)}"
            ) from None
        self._known[(kind, record.index)] = blob

    def committed(self, kind: str) -> dict[int, Record]:
        """Every whole record of ``kind`` whose checksum holds: the pack, then single ones."""
        where = f"{self.location.url}/{self.key}"
        if self.fresh:  # a new generation holds what this writer wrote: no request
            known = (decode_record(b)[0] for (k, _), b in self._known.items() if k == kind)
            return {record.index: record for record in known}
        blobs: list[tuple[str, bytes]] = []
        pack = f"{self.records_folder}/{kind}{PACK}"
        try:
            blobs += [(pack, b) for b in unpack_records(self.fs.cat_file(pack))]
        except FileNotFoundError:
            pass
        except (OSError, struct.error) as exc:
            self._unreadable_packs.add(kind)
            logger.warning(
                "%s: %s pack is unreadable (%s); running it again", where, kind, describe(exc)
            )
        folder = f"{self.records_folder}/{kind}"
        self.fs.invalidate_cache(folder)  # a cached listing would hide records
        try:
            singles = sorted(str(p) for p in self.fs.find(f"{folder}/"))
        except FileNotFoundError:
            singles = []
        unknown = [p for p in singles if (kind, _index(p)) not in self._known]
        # what this writer wrote or read, listed or not (a listing may lag behind)
        blobs += [(f"{folder}/{i:06d}", b) for (k, i), b in self._known.items() if k == kind]
        if unknown:
            fetched = self.fs.cat(unknown, on_error="return")
            blobs += [(p, b) for p, b in fetched.items() if isinstance(b, bytes)]
        done: dict[int, Record] = {}
        for path, blob in blobs:
            try:
                record, whole = decode_record(blob)
            except (ValueError, KeyError, TypeError):
                logger.warning(
                    "%s: %s is unreadable; running it again", where, path.rsplit("/", 1)[-1]
                )
                continue
            if not whole:
                logger.warning("%s: %s %d failed its checksum (damaged); running it again",
                               where, kind, record.index)  # fmt: skip
                if path != pack:
                    self._remove(path)  # so that the rerun's create-only write can land
                continue
            if path != pack:
                self._known[(kind, record.index)] = blob
            done.setdefault(record.index, record)
        return done

    def compact(self) -> None:
        """Pack each kind's single records into one object, then delete the single ones."""
        try:
            kinds = (
                sorted({f"{self.records_folder}/{k}" for k, _ in self._known})
                if self.fresh  # what this writer wrote is all there is
                else [p for p in self.fs.ls(self.records_folder, detail=False, refresh=True)
                      if not str(p).endswith(PACK)]
            )  # fmt: skip
        except FileNotFoundError:
            return
        for folder in kinds:
            kind = str(folder).rstrip("/").rsplit("/", 1)[-1]
            records = self.committed(kind)
            if not records or kind in self._unreadable_packs:
                # nothing read (a pack may exist that this reader could not see): never
                # replace it with less than it holds
                continue
            blobs = [encode_record(records[i]) for i in sorted(records)]
            self._check()
            self.fs.pipe_file(f"{self.records_folder}/{kind}{PACK}", pack_records(blobs))
            self._check()
            # only the singles now in the pack: one written meanwhile is never lost
            packed = [f"{self.records_folder}/{kind}/{i:06d}" for i in sorted(records)]
            self._remove_all(packed)  # bulk deletes: one request per 1000 records

    # ------------------------------------------------------------------ generations

    def remove_generation(self, generation: str) -> None:
        """Delete one generation: its zarr group and its records (under the lease)."""
        self._check()
        for path in (f"{self.location.path}/{self.key}/{generation}",
                     f"{self.location.path}.records/{self.key}/{generation}"):  # fmt: skip
            self._remove(path, recursive=True)

    def orphans(self, current: str | None) -> list[str]:
        """Generations of this group other than ``current`` (killed overwrites, old results)."""
        found: set[str] = set()
        for folder in (
            f"{self.location.path}/{self.key}",
            f"{self.location.path}.records/{self.key}",
        ):
            try:
                names = self.fs.ls(folder, detail=False, refresh=True)
            except FileNotFoundError:
                continue
            found.update(str(n).rstrip("/").rsplit("/", 1)[-1] for n in names)
        return sorted(n for n in found if n.startswith("g") and n != current and n != "zarr.json")

    def remove_group(self) -> None:
        """Delete the whole group ``key`` (head, generations, records), under the lease."""
        self._check()
        # records first: a removal killed half-way leaves the head, which leads to the rest
        self._remove(f"{self.location.path}.records/{self.key}", recursive=True)
        self._remove(f"{self.location.path}/{self.key}", recursive=True)

    def _check(self) -> None:
        if self.lease is not None:
            self.lease.check(within_s=RECHECK_S)

    def _remove_all(self, paths: list[str]) -> None:
        """Delete these objects (each may be gone already) in bulk requests."""
        if not paths:
            return
        try:
            self.fs.rm(paths)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove %d records under %s: %s",
                           len(paths), self.records_folder, describe(exc))  # fmt: skip

    def _remove(self, path: str, recursive: bool = False) -> None:
        try:
            self.fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove %s: %s", path, describe(exc))


def head_attributes(root: zarr.Group, key: str) -> dict[str, Any] | None:
    """The head attributes of group ``key`` (None when there is no such group)."""
    try:
        node = root[key]
    except KeyError:
        return None
    except (ValueError, TypeError) as exc:
        raise StoreError(
            f"{key} has damaged metadata ({describe(exc)}); pass --overwrite"
        ) from None
    return dict(node.attrs) if isinstance(node, zarr.Group) else None


def write_head(fs: Any, location: StoreLocation, key: str, attributes: Mapping[str, Any]) -> None:
    """Replace the head of group ``key`` in one PUT of its ``zarr.json``: the pointer switch
    (zarr's own ``create_group(overwrite=True)`` would delete the generations below it)."""
    node = {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}
    try:
        fs.pipe_file(f"{location.path}/{key}/zarr.json", json.dumps(node).encode())
    except OSError as exc:
        raise StoreError(f"cannot write to {location.url}/{key}: {describe(exc)}") from None


def read_head(fs: Any, location: StoreLocation, key: str) -> dict[str, Any] | None:
    """The head attributes of group ``key`` in one GET of its ``zarr.json`` (None if absent):
    how a resume learns that a finished input is done without opening zarr or any record."""
    try:
        node = json.loads(fs.cat_file(f"{location.path}/{key}/zarr.json"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StoreError(f"{location.url}/{key} has damaged metadata ({describe(exc)})") from None
    attributes = node.get("attributes") if isinstance(node, dict) else None
    return dict(attributes) if isinstance(attributes, dict) else {}
