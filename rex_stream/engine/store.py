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
- ``responsibility``: float32 map of the target class over the spatial axes (chunked);
- ``explanation``: uint8 mask of the sufficient explanation over the spatial axes;
- attribute ``complete``: set last, when the result is whole.

One writer per group: :meth:`ExplanationStore.open` takes the group's
:class:`~rex_stream.engine.lock.GroupLock` (``<store>.locks/<key>``, next to the store) and
refuses at once when another process holds it. An overwrite builds ``<key>~new`` beside the old
group and swaps it in only when complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rex_stream.engine.lock import GroupLock
from rex_stream.engine.settings_diff import differences, plain
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
from rex_stream.errors import StoreError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: records carry a checksum, settings the model's identity


#: Settings to store, or a function of the stored ones (None for a new group) giving them.
Settings = Mapping[str, Any] | Callable[[Mapping[str, Any] | None], Mapping[str, Any]]


@dataclass(frozen=True)
class Record:
    """One durable unit of a method's work: a float64 table and its scalar attributes."""

    index: int
    table: np.ndarray
    attributes: Mapping[str, Any] = field(default_factory=dict)


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
        lock: GroupLock | None = None,
        replaces: Path | None = None,
    ) -> None:
        self.group = group
        self.ndim = ndim
        self.location = location
        self._lock = lock
        self._replaces = replaces  # the group a finished overwrite replaces
        self._finished = False

    @classmethod
    def open(
        cls,
        path: str | Path,
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
        lock = GroupLock.for_group(path, key)
        holder = lock.try_acquire()
        if holder is not None:
            raise lock.locked_error(holder)
        try:
            settle = settings if callable(settings) else lambda _: settings
            store = cls._open_locked(Path(path), key, settle, ndim, resume, overwrite)
        except BaseException:
            lock.release()
            raise
        store._lock = lock
        return store

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
        exists = (path / key).exists()
        if exists and not overwrite:
            if not resume:
                raise StoreError(
                    f"{location} already exists: pass --resume to continue it "
                    "or --overwrite to start again"
                )
            group = existing_group(root, key, location)
            written = group.attrs.get("rex_stream")
            made = written.get("format") if isinstance(written, Mapping) else None
            if made != FORMAT_VERSION:
                raise StoreError(
                    f"{location} was written in store format {made} (this rex-stream writes "
                    f"format {FORMAT_VERSION}, with checksums and the model's identity); pass "
                    "--overwrite to explain this input again"
                )
            stored = group.attrs.get("settings")
            wanted = plain(settings(stored if isinstance(stored, Mapping) else None))
            if stored != wanted:
                raise StoreError(
                    f"{location} was created with different settings "
                    f"({differences(stored, wanted)}); use another --store, "
                    "the same settings, or --overwrite"
                )
            store = cls(group, ndim, location)
            store.update_attributes({"complete": False})  # whole again only at finish()
            return store
        name = f"{key}{NEW}" if exists else key
        fresh = plain(settings(None))
        try:
            group = root.create_group(name, overwrite=True)
            group.attrs.update(
                {
                    "rex_stream": {"format": FORMAT_VERSION, "version": _version()},
                    "settings": fresh,
                }
            )
        except OSError as exc:
            raise StoreError(f"cannot write to the Zarr store {path}: {exc}") from exc
        return cls(group, ndim, location, replaces=path / key if exists else None)

    def finish(self) -> None:
        """Mark the group complete; a new result built for ``overwrite`` replaces the old."""
        self.update_attributes({"complete": True})
        if self._replaces is not None:
            swap(self._replaces)
        self._finished = True

    def close(self) -> None:
        """Release the lock; an unfinished overwrite is dropped and the old result kept."""
        try:
            if self._replaces is not None and not self._finished:
                remove_folder(self._replaces.with_name(self._replaces.name + NEW))
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    @staticmethod
    def stored_settings(path: str | Path, key: str) -> dict[str, Any] | None:
        """The settings a store holds for ``key``, or None if there is no such group."""
        try:
            root = zarr.open_group(str(path), mode="r")
            return dict(root[key].attrs.get("settings", {}))  # type: ignore[arg-type]
        except (FileNotFoundError, KeyError, OSError, ValueError):
            return None

    def committed(self, kind: str) -> dict[int, Record]:
        """Records of ``kind`` that were completely written and pass their checksum, by index.

        A record that is unreadable or fails its checksum (a damaged chunk or metadata file)
        is left out with a warning naming it, so the method runs it again.
        """
        records = self._records(kind)
        if records is None:
            return {}
        done: dict[int, Record] = {}
        for name in sorted(member_names(records)):
            what = f"{self.location}: {kind} {int(name)}" if name.isdigit() else name
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
        self._check_lock()
        table = np.ascontiguousarray(record.table, dtype=np.float64)
        name = f"{kind}/{record.index:06d}"
        rows = max(1, table.shape[0])
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
        self._check_lock()
        try:
            self.group.attrs.update(plain(values))
        except OSError as exc:
            raise StoreError(f"cannot write to {self.location}: {exc}") from exc

    def attributes(self) -> dict[str, Any]:
        """The group's attributes."""
        return dict(self.group.attrs)

    def write_array(self, name: str, values: np.ndarray, dtype: str, chunk_edge: int = 256) -> None:
        """Write a dense spatial array (map or mask), chunked."""
        self._check_lock()
        chunks = tuple(min(extent, chunk_edge) for extent in values.shape)
        try:
            array = self.group.create_array(
                name, shape=values.shape, dtype=dtype, chunks=chunks, fill_value=0, overwrite=True
            )
            # slab by slab: a whole-array astype would copy a large volume's map at once
            step = max(1, chunks[0]) if values.ndim else 1
            if values.ndim == 0:
                array[...] = values.astype(dtype)
            for first in range(0, values.shape[0] if values.ndim else 0, step):
                array[first : first + step] = values[first : first + step].astype(dtype)
        except OSError as exc:
            raise StoreError(f"cannot write {name} to {self.location}: {exc}") from exc

    def _check_lock(self) -> None:
        if self._lock is not None:
            self._lock.check()


#: The attribute holding a committed record's checksum.
DIGEST = "sha256"


def table_digest(table: np.ndarray) -> str:
    """SHA-256 of a float64 table's shape and little-endian bytes: what a record must read back."""
    data = np.ascontiguousarray(table, dtype="<f8")
    digest = hashlib.sha256(repr(data.shape).encode())
    digest.update(data.data)
    return digest.hexdigest()


def _version() -> str:
    """The installed rex-stream's version (recorded in every store it makes)."""
    try:
        return importlib.metadata.version("rex-stream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
