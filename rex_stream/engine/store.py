"""The Zarr store: one group per explained input, durable record by record.

The seam between the engine and the methods: the store knows nothing of any method. A method
hands it :class:`Record` s — a numeric table plus a few scalar attributes, filed under a *kind*
(``"ledger"`` for the causal method's iterations; the evaluation, CEM and L2X wings file their
own kinds) and an index — and reads back the ones that were completely written. Turning a
method's own results into records and back is the method's business (e.g.
``rex_stream.causal.records``).

Layout of ``<store>/<input key>/`` (readable with plain ``zarr`` or xarray):

- attributes: ``rex_stream`` (format and package version), ``settings`` (everything that
  shapes the map, seed included), ``target`` (class, confidence), and when finished ``stats``,
  ``explanation`` (confidence, area), ``evaluation`` (insertion/deletion AUC);
- ``ledger/<iteration>``: float64 table, one row per contribution:
  ``start[0..d), stop[0..d), class, amount``; attribute ``committed`` is set only after the
  rows are written, so a half-written iteration is never taken for a finished one, together
  with ``sha256``, the table's checksum: a record whose chunk or metadata was damaged later
  is left out on resume (with a warning) and run again;
- ``ledger/pack-<token>``: when the input finishes, its records of each kind packed into one
  array (see :mod:`rex_stream.engine.store_pack`) and the single ones removed, so a finished
  input keeps a constant number of files whatever ``--iters``;
- ``responsibility``: float32 map of the target class over the spatial axes (chunked);
- ``explanation``: uint8 mask of the sufficient explanation over the spatial axes;
- attribute ``complete``: set last, when the result is whole.

One writer per group: :meth:`ExplanationStore.open` takes the group's
:class:`~rex_stream.engine.lock.GroupLock` (``<store>.locks/<key>``, next to the store) and
refuses at once when another process holds it. An overwrite builds ``<key>~new`` beside the old
group and swaps it in only when complete.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rex_stream.engine.lock import GroupLock
from rex_stream.engine.object_lease import RECHECK_S, ObjectLease
from rex_stream.engine.object_store import (
    GENERATION,
    ObjectGroup,
    head_attributes,
    object_errors,
    open_zarr_root,
    read_head,
)
from rex_stream.engine.settings_diff import plain
from rex_stream.engine.store_folder import (
    NEW,
    existing_group,
    first_line,
    member_names,
    open_root,
    recover,
    remove_folder,
    swap,
)
from rex_stream.engine.store_leftovers import (
    clear_stale_partials,
    clear_stray_file,
    clear_torn_record,
    is_record_name,
)
from rex_stream.engine.store_location import StoreLocation, parse_store
from rex_stream.engine.store_pack import compact_records, is_pack_name, read_pack
from rex_stream.engine.store_record import (
    DIGEST,
    FORMAT_VERSION,
    Record,
    Settings,
    check_resumable,
    new_group_attributes,
    table_digest,
)
from rex_stream.errors import StoreError

__all__ = ["DIGEST", "FORMAT_VERSION", "ExplanationStore", "Record", "Settings", "table_digest"]

logger = logging.getLogger(__name__)


class ExplanationStore:
    """One input's group in a Zarr store, held under its :class:`GroupLock` until closed.

    With ``overwrite``, an existing group stays untouched while the new result is built in the
    sibling group ``<key>~new``; :meth:`finish` swaps it in, so a run that fails part way
    leaves the old result whole.
    """

    def __init__(
        self,
        group: zarr.Group,
        ndim: int,
        location: str,
        lock: GroupLock | ObjectLease | None = None,
        replaces: Path | None = None,
        objects: ObjectGroup | None = None,
    ) -> None:
        self.group = group
        self.ndim = ndim
        self.location = location
        self._lock = lock
        self._replaces = replaces  # the group a finished overwrite replaces
        self._finished = False
        self._objects = objects  # the object-store side (None for a local folder)
        self._warned: set[str] = set()  # damaged packs and packed records, warned about once

    @classmethod
    def open(
        cls,
        path: str | Path | StoreLocation,
        key: str,
        settings: Settings,
        ndim: int,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> ExplanationStore:
        """Lock the group for ``key`` and open (or create) it, checking a resumed group.

        ``settings`` may be a function of the settings stored in the group being resumed (None
        when there is none), e.g. to reuse its seed. Raises :class:`StoreLocked` at once when
        another writer holds the group.
        """
        where = parse_store(path)
        settle = settings if callable(settings) else lambda _: settings
        lock: GroupLock | ObjectLease
        if where.is_local:
            lock = GroupLock.for_group(where.local_path(), key)
        else:
            lock = ObjectGroup.lease_for(where, key)
        with _errors(where, "cannot open"):
            holder = lock.try_acquire()
        if holder is not None:
            raise lock.locked_error(holder)
        try:
            if where.is_local:
                store = cls._open_locked(where.local_path(), key, settle, ndim, resume, overwrite)
            else:
                with _errors(where, "cannot open"):
                    store = cls._open_object(where, key, settle, ndim, resume, overwrite, lock)
        except BaseException:
            with contextlib.suppress(Exception):
                lock.release()
            raise
        store._lock = lock
        return store

    @classmethod
    def _open_object(
        cls,
        where: StoreLocation,
        key: str,
        settings: Callable[[Mapping[str, Any] | None], Mapping[str, Any]],
        ndim: int,
        resume: bool,
        overwrite: bool,
        lease: GroupLock | ObjectLease,
    ) -> ExplanationStore:
        assert isinstance(lease, ObjectLease)
        objects, group = ObjectGroup.open(
            where, key, settings, resume=resume, overwrite=overwrite, lease=lease
        )
        store = cls(group, ndim, f"{where.url}/{key}", objects=objects)
        if resume and objects.replaces is None:
            store.update_attributes({"complete": False})  # whole again only at finish()
        return store

    @classmethod
    def attach(cls, path: str | Path | StoreLocation, key: str, ndim: int) -> ExplanationStore:
        """The existing group ``key`` without its lock: for the tasks of one split input,
        which write its group at once, each its own records."""
        where = parse_store(path)
        if where.is_local:
            group = zarr.open_group(f"{where.local_path()}/{key}", mode="r+")
            return cls(group, ndim, f"{where.url}/{key}")
        with _errors(where, "cannot open"):
            objects, node = ObjectGroup.attached(where, key)
        return cls(node, ndim, f"{where.url}/{key}", objects=objects)

    @staticmethod
    def exists(path: str | Path | StoreLocation) -> bool:
        """Whether a store exists at ``path`` (a folder, or an object store's root group)."""
        where = parse_store(path)
        if where.is_local:
            return where.local_path().exists()
        with _errors(where, "cannot read"):
            return bool(where.filesystem().exists(f"{where.path}/zarr.json"))

    @staticmethod
    def group_attributes(path: str | Path | StoreLocation, key: str) -> dict[str, Any] | None:
        """The attributes of group ``key`` as a reader sees them (the head on an object
        store), or None when there is no such group or it cannot be read."""
        where = parse_store(path)
        try:
            if where.is_local:
                if not (where.local_path() / key).exists():
                    return None
                return dict(zarr.open_group(f"{where.local_path()}/{key}", mode="r").attrs)
            with _errors(where, "cannot read"):
                return read_head(where.filesystem(), where, key)
        except (FileNotFoundError, KeyError, OSError, ValueError, StoreError):
            return None

    @classmethod
    def _open_locked(
        cls,
        path: Path,
        key: str,
        settings: Callable[[Mapping[str, Any] | None], Mapping[str, Any]],
        ndim: int,
        resume: bool,
        overwrite: bool,
    ) -> ExplanationStore:
        location = f"{path}/{key}"
        root = open_root(path)
        recover(path, key)
        clear_stale_partials(path, path / key)
        exists = (path / key).exists()
        if exists and not overwrite:
            if not resume:
                raise StoreError(
                    f"{location} already exists: pass --resume to continue it "
                    "or --overwrite to start again"
                )
            group = existing_group(root, key, location)
            check_resumable(dict(group.attrs), settings, location)
            store = cls(group, ndim, location)
            store.update_attributes({"complete": False})  # whole again only at finish()
            return store
        name = f"{key}{NEW}" if exists else key
        try:
            group = root.create_group(name, overwrite=True)
            group.update_attributes(new_group_attributes(settings))  # one write
        except OSError as exc:
            raise StoreError(f"cannot write to the Zarr store {path}: {exc}") from exc
        return cls(group, ndim, location, replaces=path / key if exists else None)

    def finish(self) -> None:
        """Compact the records, mark the group complete; a new result built for ``overwrite``
        replaces the old."""
        if self._objects is None:
            self.compact()
        self.update_attributes({"complete": True})
        if self._objects is not None:
            with _errors(self._objects.location, "cannot finish"):
                self._objects.finish(self.attributes())
        if self._replaces is not None:
            self._check_lock()  # a writer taken over never swaps its successor's work in
            swap(self._replaces)
        self._finished = True

    def close(self) -> None:
        """Release the lock; an unfinished overwrite is dropped and the old result kept.

        A writer whose lock was taken over removes nothing: ``<key>~new`` is its successor's.
        """
        try:
            if self._objects is not None:
                with _errors(self._objects.location, "cannot close"):
                    self._objects.close()
            if self._replaces is not None and not self._finished and self._holds_lock():
                remove_folder(self._replaces.with_name(self._replaces.name + NEW))
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    @staticmethod
    def update_group(
        path: str | Path | StoreLocation, key: str, values: Mapping[str, Any], wait_s: float
    ) -> None:
        """Merge ``values`` into the attributes of the existing group ``key`` under its lock
        (waiting up to ``wait_s`` for another writer): a mark set after the result is whole."""
        where = parse_store(path)
        if where.is_local:
            lock = GroupLock.for_group(where.local_path(), key)
            lock.acquire(wait_s=wait_s, poll_s=1.0)
            try:
                zarr.open_group(f"{where.local_path()}/{key}", mode="r+").update_attributes(
                    plain(values)
                )
            except OSError as exc:
                raise StoreError(f"cannot write to {where.url}/{key}: {exc}") from exc
            finally:
                lock.release()
            return
        lease = ObjectGroup.lease_for(where, key)
        with _errors(where, "cannot write to"):
            lease.acquire(wait_s=wait_s)
        try:
            root = open_zarr_root(where)
            head = head_attributes(root, key) or {}
            generation = head.get(GENERATION)
            if isinstance(generation, str):
                group = root[f"{key}/{generation}"]
                group.update_attributes(plain(values))
                ObjectGroup(where, key, generation, lease).write_head({**head, **plain(values)})
        finally:
            lease.release()

    @staticmethod
    def stored_settings(path: str | Path | StoreLocation, key: str) -> dict[str, Any] | None:
        """The settings a store holds for ``key``, or None if there is no such group."""
        attributes = ExplanationStore.group_attributes(path, key)
        if attributes is None:
            return None
        settings = attributes.get("settings")
        return dict(settings) if isinstance(settings, Mapping) else {}

    def committed(self, kind: str) -> dict[int, Record]:
        """Records of ``kind`` that were completely written and pass their checksum, by index.

        A record that is unreadable or fails its checksum (a damaged chunk or metadata file)
        is left out with a warning naming it, so the method runs it again.
        """
        if self._objects is not None:
            with _errors(self._objects.location, "cannot read"):
                return self._objects.committed(kind)
        records = self._records(kind)
        if records is None:
            return {}
        done: dict[int, Record] = {}
        names = sorted(member_names(records))
        for name in (n for n in names if is_pack_name(n)):  # a finished input's, compacted
            try:
                array = records[name]
                if isinstance(array, zarr.Array):
                    done.update(read_pack(array, f"{self.location}: {kind}", self._warned))
            except Exception as exc:  # damaged metadata or chunk: the codec's own error
                if f"{kind}/{name}" in self._warned:
                    continue
                self._warned.add(f"{kind}/{name}")
                logger.warning("%s: %s %s is unreadable (%s); running its records again",
                               self.location, kind, name, first_line(exc))  # fmt: skip
        for name in names:
            if is_pack_name(name) or int(name if name.isdigit() else -1) in done:
                continue
            if not is_record_name(name):
                logger.warning("%s/%s/%s is no record of rex-stream; left alone",
                               self.location, kind, name)  # fmt: skip
                continue
            what = f"{self.location}: {kind} {int(name)}"
            if clear_torn_record(records, name):
                continue  # a killed run's torn write: redo that record
            try:
                array = records[name]
                if not isinstance(array, zarr.Array):
                    continue
                attrs: dict[str, Any] = dict(array.attrs)
                if not attrs.pop("committed", False):
                    continue  # a torn write from a killed run: redo that record
                digest = attrs.pop(DIGEST, None)
                table = np.asarray(array[:], dtype=np.float64)
            except Exception as exc:  # damaged metadata or chunk: the codec's own error
                logger.warning("%s is unreadable (%s); running it again", what, first_line(exc))
                continue
            if digest != table_digest(table):
                logger.warning("%s failed its checksum (damaged); running it again", what)
                continue
            done[int(name)] = Record(int(name), table, attrs)
        return done

    def compact(self) -> None:
        """Pack each kind's records into one array, then remove the single ones (a local
        store; an object store compacts its own way when it finishes)."""
        for kind in sorted(member_names(self.group)):
            records = self._records(kind)
            if records is None or kind in ("responsibility", "explanation"):
                continue
            names = member_names(records)
            if not any(is_record_name(n) or is_pack_name(n) for n in names):
                continue
            try:
                compact_records(records, names, self.committed(kind), self._check_lock)
            except OSError as exc:
                raise StoreError(f"cannot compact {kind} in {self.location}: {exc}") from exc

    def _records(self, kind: str) -> zarr.Group | None:
        """The group holding ``kind`` records, or None; damaged metadata is one clear error."""
        try:
            records = self.group[kind]
        except KeyError:
            return None
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"{self.location}/{kind} has damaged metadata ({first_line(exc)}); pass "
                "--overwrite to explain this input again"
            ) from None
        return records if isinstance(records, zarr.Group) else None

    def commit(self, kind: str, record: Record) -> None:
        """Write one record's table, then mark it committed with its checksum (written last)."""
        if self._objects is not None:
            with _errors(self._objects.location, "cannot write to"):
                self._objects.commit(kind, record)
            return
        self._check_lock()
        table = np.ascontiguousarray(record.table, dtype=np.float64)
        name = f"{kind}/{record.index:06d}"
        rows = max(1, table.shape[0])
        clear_stray_file(self.group, name, f"{kind} {record.index}")
        try:
            array = self.group.create_array(
                name,
                shape=table.shape,
                dtype="float64",
                chunks=(rows, *table.shape[1:]),
                attributes={"committed": False},
                overwrite=True,
            )
            if table.size:
                array[:] = table
            array.update_attributes(
                {**plain(record.attributes), DIGEST: table_digest(table), "committed": True}
            )
        except OSError as exc:
            raise StoreError(
                f"cannot write {kind} {record.index} to {self.location}: {exc}"
            ) from exc

    def update_attributes(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the group's attributes."""
        where = self._objects.location if self._objects is not None else None
        with _errors(where, "cannot write to"):
            self._check_lock()
            try:
                # one write of the metadata (attrs.update would write it once per key)
                self.group.update_attributes(plain(values))
            except OSError as exc:
                raise StoreError(f"cannot write to {self.location}: {exc}") from exc

    def attributes(self) -> dict[str, Any]:
        """The group's attributes."""
        return dict(self.group.attrs)

    def write_array(self, name: str, values: np.ndarray, dtype: str, chunk_edge: int = 256) -> None:
        """Write a dense spatial array (map or mask), chunked."""
        if self._objects is not None:
            with _errors(self._objects.location, f"cannot write {name} to"):
                self._write_array(name, values, dtype, chunk_edge)
        else:
            self._write_array(name, values, dtype, chunk_edge)

    def _write_array(self, name: str, values: np.ndarray, dtype: str, chunk_edge: int) -> None:
        self._check_lock()
        chunks = tuple(min(extent, chunk_edge) for extent in values.shape)
        try:
            # (on an object store, into the generation staged in memory: no request)
            array = self.group.create_array(
                name, shape=values.shape, dtype=dtype, chunks=chunks, fill_value=0, overwrite=True
            )
            # slab by slab: a whole-array astype would copy a large volume's map at once
            step = max(1, chunks[0]) if values.ndim else 1
            if values.ndim == 0:
                array[...] = values.astype(dtype)
            for first in range(0, values.shape[0] if values.ndim else 0, step):
                array[first : first + step] = values[first : first + step].astype(dtype)
                if self._objects is not None:
                    self._objects.spill()  # a large map is sent as it is written
        except OSError as exc:
            raise StoreError(f"cannot write {name} to {self.location}: {exc}") from exc

    def _check_lock(self) -> None:
        if isinstance(self._lock, ObjectLease):
            self._lock.check(within_s=RECHECK_S)
        elif self._lock is not None:
            self._lock.check()

    def _holds_lock(self) -> bool:
        """Whether this writer may still change the store (no lock: an attached writer)."""
        try:
            self._check_lock()
        except StoreError:
            logger.warning(
                "%s: lost the lock to another writer; leaving its work alone", self.location
            )
            return False
        return True


def _errors(where: StoreLocation | None, doing: str) -> contextlib.AbstractContextManager[None]:
    """Object-store errors as one StoreError line (a local store's errors are its own)."""
    if where is None or where.is_local:
        return contextlib.nullcontext()
    return object_errors(where, doing)
