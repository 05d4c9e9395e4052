"""A store group on object storage (S3 and the other fsspec protocols): no rename needed.

Layout of ``<store>`` (``s3://bucket/runs.zarr``), readable with plain zarr::

    <store>/<key>/zarr.json          head group: the result's attributes and ``generation``
    <store>/<key>/<generation>/      the result: attributes, responsibility, explanation …
    <store>.records/<key>/<generation>/<kind>/batch-<first>-<token>   records that ended
                                     close together, one object (a writer under a lease)
    <store>.records/<key>/<generation>/<kind>/<index>   one record (an attached writer)
    <store>.records/<key>/<generation>/<kind>.pack      a finished input's records, compacted
    <store>.locks/<key>/lease-<epoch>, beat-<epoch>     the writer's lease

- **Records**: a JSON header (index, shape, attributes, SHA-256) then the table. A writer
  under a lease holds its records back for up to a second and writes those that ended close
  together as one create-only *batch* (:mod:`~rex_stream.engine.object_batches`); an object
  appears whole or not at all, so every record in it was written whole, and a damaged one
  fails its checksum and runs again. A ``kill -9`` loses the records held back: the resumed
  run searches them again, with the same seeds, and ends with the same result.
- **Compaction**: when an input finishes, its records of each kind go into one pack, written
  from memory (no read back), and the batches it holds are deleted: a finished input keeps a
  constant number of objects whatever ``--iters``; resume reads the pack in one request. An
  input that finishes within the hold-back time writes no batch at all.
- **The result**: the generation's zarr group is built in memory and sent at the finish, all
  its objects at once (:mod:`~rex_stream.engine.object_staging`), then the head.
- **Overwrite**: the new result is written as a new generation beside the old one; the head
  (one PUT, atomic) points to it only once it is complete; old generations are then deleted.
  A killed overwrite leaves the old result readable; the next writer removes the orphan.
- **One writer**: :class:`~rex_stream.engine.object_lease.ObjectLease`, checked on the store
  before each destructive step (head switch, deletions, the generation's upload).

Resume never lists in an order it relies on: records are keyed by their index, and the head
carries the generation's settings (a resume checks them there, in the GET it needs anyway).
"""

from __future__ import annotations

import logging
import secrets
import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any

import zarr

from rex_stream.engine.object_batches import RecordBatcher
from rex_stream.engine.object_head import (
    GENERATION,
    cat_many,
    describe,
    head_attributes,
    object_errors,
    open_zarr_root,
    read_head,
    read_head_and_root,
    write_head,
)
from rex_stream.engine.object_lease import RECHECK_S, ObjectLease, list_names
from rex_stream.engine.object_staging import SPILL_BYTES, StagedGeneration
from rex_stream.engine.store_location import StoreLocation
from rex_stream.engine.store_record import (
    Record,
    check_resumable,
    decode_record,
    encode_record,
    new_group_attributes,
    pack_records,
    unpack_records,
)
from rex_stream.errors import StoreError

__all__ = [
    "GENERATION",
    "ObjectGroup",
    "decode_record",
    "encode_record",
    "head_attributes",
    "object_errors",
    "open_zarr_root",
    "read_head",
    "unpack_records",
]

logger = logging.getLogger(__name__)

PACK = ".pack"
BATCH = "batch-"


def _is_batch(path: str) -> bool:
    return path.rstrip("/").rsplit("/", 1)[-1].startswith(BATCH)


class ObjectGroup:
    """The object-store side of one input's group: generation, records, head, lease.

    Records of a writer under a lease are coalesced (:class:`~rex_stream.engine.object_batches.
    RecordBatcher`); the generation's zarr group is staged in memory
    (:class:`~rex_stream.engine.object_staging.StagedGeneration`) and sent when it finishes.
    """

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
        self.staged: StagedGeneration | None = None
        #: the head to write before anything of the generation lands (None: written)
        self.pending_head: dict[str, Any] | None = None
        self._head_lock = threading.Lock()
        self._lock = threading.Lock()  # _known and _objects: commits come from many threads
        self._known: dict[tuple[str, int], bytes] = {}  # records written or read, encoded
        self._objects: dict[str, tuple[str, set[int]]] = {}  # record objects: kind, indices
        self._packs_read: set[str] = set()  # kinds whose pack was read (it is in _known)
        self._unreadable_packs: set[str] = set()  # kinds whose pack could not be read
        self._sent_arrays: set[str] = set()  # arrays sent (an old copy removed first)
        self.batcher = RecordBatcher(self._write_batch) if lease is not None else None

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
        or a new one (beside the old for ``overwrite``); orphaned generations are removed.
        The zarr group returned is staged in memory: it reaches the store at :meth:`finish`."""
        where = f"{location.url}/{key}"
        fs = location.filesystem()
        head = read_head_and_root(fs, location, key)
        current = head.get(GENERATION) if head is not None else None
        if head is not None and not isinstance(current, str) and not overwrite:
            raise StoreError(f"{where} is not a rex-stream group; pass --overwrite to replace it")
        current = current if isinstance(current, str) else None
        tidy = cls(location, key, current or "", None)
        tidy.lease = lease
        # a head is written before anything of its generation (or, for an input that
        # finishes at once, after it): without one, only a writer that died (its lease was
        # taken over as stale) can have left objects behind
        took_over = lease is not None and lease.took_over
        for orphan in tidy.orphans(current) if head is not None or took_over else []:
            tidy.remove_generation(orphan)
        if current is not None and not overwrite:
            if not resume:
                raise StoreError(
                    f"{where} already exists: pass --resume to continue it "
                    "or --overwrite to start again"
                )
            # the head carries the generation's attributes (settings and format included)
            attributes = {k: v for k, v in (head or {}).items() if k != GENERATION}
            check_resumable(attributes, settings, where)
            opened = cls(location, key, current, lease)
            # marked incomplete before its generation changes; whole again at finish
            opened.pending_head = {**(head or {}), "complete": False}
            opened.staged = StagedGeneration(key, current, attributes)
            return opened, opened.staged.group
        generation = cls.new_generation()
        attributes = new_group_attributes(settings)
        opened = cls(location, key, generation, lease, replaces=current)
        opened.fresh = True
        if head is None or current is None:  # written before the first object of it lands
            opened.pending_head = {**attributes, GENERATION: generation, "complete": False}
        opened.staged = StagedGeneration(key, generation, attributes)
        return opened, opened.staged.group

    @classmethod
    def attached(cls, location: StoreLocation, key: str) -> tuple[ObjectGroup, zarr.Group]:
        """The current generation of group ``key``, without a lease (the tasks of one split
        input): records are written one object each, at once."""
        head = read_head(location.filesystem(), location, key) or {}
        generation = head.get(GENERATION)
        if not isinstance(generation, str):
            raise StoreError(f"{location.url}/{key} has not been prepared")
        attached = cls(location, key, generation, None)
        attributes = {k: v for k, v in head.items() if k != GENERATION}
        attached.staged = StagedGeneration(key, generation, attributes)
        return attached, attached.staged.group

    def finish(self, attributes: Mapping[str, Any]) -> None:
        """Send the generation and its records' packs (concurrently), then point the head to
        it (one PUT), then drop the old generation."""
        if self.batcher is not None:
            self.batcher.stop()  # what it still holds goes into the packs
        if not self.fresh:  # a resumed generation is marked incomplete before it changes
            # (a new one needs no head first: nothing points to it before the switch, and a
            # writer killed while sending it leaves a stale lease, whose taker tidies up)
            self.ensure_head()
        self._check()
        packs, packed = self._packs()
        self._send({**self._staged_objects(chunks_only=False), **packs})
        if self.batcher is not None:
            self.batcher.discard()  # what it held is in the packs now
        self._check()
        # only the record objects now in a pack: one written meanwhile is never lost
        self._remove_all(packed)
        with self._head_lock:
            self.write_head({**attributes, GENERATION: self.generation})
            self.pending_head = None
        self.finished = True
        if self.replaces is not None:
            self.remove_generation(self.replaces)

    def close(self) -> None:
        """Write the records still held back; an unfinished overwrite's generation is removed,
        unless the lease was lost (then it is another writer's to settle)."""
        if self.batcher is not None:
            self.batcher.stop()
        if not self.finished and self.replaces is None:  # (an overwrite's goes below)
            try:
                if self.batcher is not None:
                    self.batcher.flush()
                if self.lease is not None:
                    self.ensure_head()  # the group as opened is kept (to resume, to attach to)
            except StoreError as exc:
                logger.warning("%s/%s: %s", self.location.url, self.key, exc)
        if self.replaces is None or self.finished or self.lease is None:
            return
        try:
            self.remove_generation(self.generation)
        except StoreError:
            logger.warning("%s/%s: lost the lease; leaving the store to its new writer",
                           self.location.url, self.key)  # fmt: skip

    def ensure_head(self) -> None:
        """Write the head this writer holds back (:attr:`pending_head`), once: before the
        first object of its generation lands."""
        with self._head_lock:
            if self.pending_head is not None:
                self.write_head(self.pending_head)
                self.pending_head = None

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

    # ------------------------------------------------------------------ the staged group

    def spill(self) -> None:
        """Send the chunks staged so far once they outgrow :data:`SPILL_BYTES`."""
        if self.staged is not None and self.staged.staged_bytes() >= SPILL_BYTES:
            self.ensure_head()
            self._check()
            self._send(self._staged_objects(chunks_only=True))

    def _staged_objects(self, chunks_only: bool) -> dict[str, bytes]:
        if self.staged is None:
            return {}
        base = self.location.path
        taken = self.staged.take(chunks_only)
        # an array of a resumed generation may be there from an earlier try: remove it
        # before the first of its new objects lands (a chunk now empty is not written)
        names = {p[len(self.staged.prefix) + 1 :].split("/", 1)[0] for p in taken}
        stale = sorted(n for n in names if n != "zarr.json" and n not in self._sent_arrays)
        if not self.fresh:
            for name in stale:
                self._remove(f"{base}/{self.staged.prefix}/{name}", recursive=True)
        self._sent_arrays.update(stale)
        return {f"{base}/{path}": data for path, data in taken.items()}

    def _send(self, objects: Mapping[str, bytes]) -> None:
        """PUT these objects concurrently (one round trip of latency)."""
        if not objects:
            return
        try:
            self.fs.pipe(dict(objects))
        except OSError as exc:
            raise StoreError(
                f"cannot write to {self.location.url}/{self.key}: {describe(exc)}"
            ) from None

    # ------------------------------------------------------------------ records

    def commit(self, kind: str, record: Record) -> None:
        """Keep one record: held back to be written with the records that end near it (a
        writer under a lease), or written at once, create-only (an attached writer; a record
        already there is the same result)."""
        if self.lease is not None:
            self.lease.check_quick()
        blob = encode_record(record)
        if self.batcher is not None:
            with self._lock:
                self._known[(kind, record.index)] = blob
            self.batcher.add(kind, record.index, blob)
            return
        path = f"{self.records_folder}/{kind}/{record.index:06d}"
        try:
            self.fs.pipe_file(path, blob, mode="create")
        except FileExistsError:
            pass  # the first writer of this record won; a deterministic run wrote the same
        except OSError as exc:
            raise StoreError(
                f"cannot write {kind} {record.index} to {self.location.url}/{self.key}: "
                f"{describe(exc)}"
            ) from None
        with self._lock:
            self._known[(kind, record.index)] = blob
            self._objects[path] = (kind, {record.index})

    def _write_batch(self, kind: str, blobs: Mapping[int, bytes]) -> None:
        """One object holding records that ended close together (create-only, fresh name)."""
        if self.lease is not None:
            self.lease.check_quick()
        self.ensure_head()
        first = min(blobs)
        path = f"{self.records_folder}/{kind}/{BATCH}{first:06d}-{secrets.token_hex(4)}"
        self.fs.pipe_file(path, pack_records([blobs[i] for i in sorted(blobs)]), mode="create")
        with self._lock:
            self._objects[path] = (kind, set(blobs))

    def committed(self, kind: str) -> dict[int, Record]:
        """Every whole record of ``kind`` whose checksum holds: the pack, batches, single ones
        (what this writer holds back included)."""
        if self.fresh:  # a new generation holds what this writer wrote: no request
            with self._lock:
                known = [b for (k, _), b in self._known.items() if k == kind]
            return {r.index: r for r in (decode_record(b)[0] for b in known)}
        where = f"{self.location.url}/{self.key}"
        blobs: list[tuple[str, bytes]] = []
        pack = f"{self.records_folder}/{kind}{PACK}"
        if kind not in self._packs_read:
            try:
                blobs += [(pack, b) for b in unpack_records(self.fs.cat_file(pack))]
                self._packs_read.add(kind)
            except FileNotFoundError:
                self._packs_read.add(kind)
            except (OSError, ValueError, struct.error) as exc:
                self._unreadable_packs.add(kind)
                logger.warning(
                    "%s: %s pack is unreadable (%s); running it again", where, kind, describe(exc)
                )
        try:  # one listing (a cached one would hide records)
            listed = sorted(list_names(self.fs, self.records_folder, f"{kind}/"))
        except FileNotFoundError:
            listed = []
        with self._lock:
            unknown = [p for p in listed if p not in self._objects]
            # what this writer wrote or read, listed or not (a listing may lag behind)
            blobs += [(f"known {i}", b) for (k, i), b in self._known.items() if k == kind]
        fetched = cat_many(self.fs, unknown) if unknown else {}
        for path in unknown:
            data = fetched.get(path)
            if not isinstance(data, bytes):
                continue  # gone meanwhile (packed by another), or unreadable: run again
            try:
                parts = unpack_records(data) if _is_batch(path) else [data]
            except (ValueError, struct.error):
                parts = []  # damaged: its records run again
            blobs += [(path, b) for b in parts]
        done: dict[int, Record] = {}
        indices: dict[str, set[int]] = {}
        for path, blob in blobs:
            try:
                record, whole = decode_record(blob)
            except (ValueError, KeyError, TypeError):
                logger.warning(
                    "%s: %s is unreadable; running it again", where, path.rsplit("/", 1)[-1]
                )
                continue
            indices.setdefault(path, set()).add(record.index)
            if not whole:
                logger.warning("%s: %s %d failed its checksum (damaged); running it again",
                               where, kind, record.index)  # fmt: skip
                if path != pack and not _is_batch(path) and not path.startswith("known"):
                    self._remove(path)  # so that the rerun's create-only write can land
                continue
            with self._lock:
                self._known.setdefault((kind, record.index), blob)
            done.setdefault(record.index, record)
        with self._lock:
            for path in unknown:
                if path in fetched and isinstance(fetched[path], bytes):
                    self._objects[path] = (kind, indices.get(path, set()))
        return done

    def _packs(self) -> tuple[dict[str, bytes], list[str]]:
        """Each kind's records as one pack object, and the record objects the packs hold."""
        with self._lock:
            kinds = {k for k, _ in self._known} | {k for k, _ in self._objects.values()}
        if not self.fresh:  # a resumed generation may hold kinds this writer never read
            try:
                listed = self.fs.ls(self.records_folder, detail=False, refresh=True)
            except FileNotFoundError:
                listed = []
            kinds |= {str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed}
            kinds = {k for k in kinds if not k.endswith(PACK)}
        packs: dict[str, bytes] = {}
        for kind in sorted(kinds):
            records = self.committed(kind)  # no request for a fresh generation
            if not records or kind in self._unreadable_packs:
                # nothing read (a pack may exist that this reader could not see): never
                # replace it with less than it holds
                continue
            with self._lock:
                blobs = [self._known[(kind, i)] for i in sorted(records)]
            packs[f"{self.records_folder}/{kind}{PACK}"] = pack_records(blobs)
        with self._lock:
            packed = [
                path
                for path, (kind, indices) in self._objects.items()
                if f"{self.records_folder}/{kind}{PACK}" in packs
                and indices <= {i for k, i in self._known if k == kind}
            ]
        return packs, packed

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
        with self._lock:
            for path in paths:
                self._objects.pop(path, None)

    def _remove(self, path: str, recursive: bool = False) -> None:
        try:
            self.fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove %s: %s", path, describe(exc))
