"""A store on object storage, for a report: the objects the page needs, fetched once into a
temporary folder in the local layout, so that the local reader (:mod:`.store_files`, zarr, the
drawing processes) reads it unchanged and as fast as a local store.

What is fetched (see :mod:`rex_stream.engine.object_store` for the layout): one listing of
``<store>/``, every input's head ``<store>/<key>/zarr.json`` (a nested ``<input>/<target>`` key
too), and every object of the generation each head points to, written to ``<copy>/<key>/`` with
the head's attributes as the group's. Old generations, records and leases are not fetched; an
evaluation's records (its ``metric`` pack) and a running input's progress and lease are read on
demand by :class:`ObjectStoreCopy`. An overwrite that finishes while the report reads is seen
whole: the old generation, or the new one (a key whose objects vanish is read again from its
new head).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rex_stream.engine.failure_log import read_failures
from rex_stream.engine.object_head import GENERATION, cat_many, describe, object_errors
from rex_stream.engine.object_lease import STALE_AFTER_S
from rex_stream.engine.store_location import BUCKETED, StoreLocation, parse_store
from rex_stream.engine.store_record import Record, decode_record, unpack_records
from rex_stream.errors import InputError, StoreError

METADATA = "zarr.json"
#: A generation's folder name (``ObjectGroup.new_generation``): never an input's key.
_GENERATION_NAME = re.compile(r"^g[0-9a-f]{12}$")
_LEASE = re.compile(r"lease-(\d{10})$")
#: Objects fetched per request batch (bounds the bytes held in memory at once).
FETCH_BATCH = 256
#: How often a key is read again when its generation is replaced while it is fetched.
REREADS = 3


def is_object_store(path: str | Path) -> bool:
    """Whether ``path`` names an object store (``s3://…``) rather than a local folder."""
    return "://" in str(path) and not str(path).lower().startswith("file://")


@dataclass
class ObjectStoreCopy:
    """A local copy of an object store's current results, and its on-demand readers."""

    location: StoreLocation
    folder: Path
    #: each input's key → its head's attributes (``generation`` included)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    fs: Any = field(default=None, repr=False)
    scratch: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The store's URL (no credentials)."""
        return self.location.url

    def close(self) -> None:
        """Remove the local copy."""
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None

    def failures(self) -> list[dict[str, Any]]:
        """The store's failure records (``<store>.failures/<name>.json``)."""
        return read_failures(self.location)

    def records(self, key: str, kind: str) -> dict[int, Record]:
        """The whole records of ``kind`` of input ``key``'s current generation, by index: its
        pack, and for an unfinished input the batches and single records beside it too."""
        generation = self.heads.get(key, {}).get(GENERATION)
        if not isinstance(generation, str):
            return {}
        folder = f"{self.location.path}.records/{key}/{generation}"
        paths = [f"{folder}/{kind}.pack"]
        if self.heads[key].get("complete") is not True:
            with object_errors(self.location, "cannot read"):
                try:
                    paths += [str(p) for p in self.fs.find(f"{folder}/{kind}/")]
                except FileNotFoundError:
                    pass
        with object_errors(self.location, "cannot read"):
            found = cat_many(self.fs, paths)
        done: dict[int, Record] = {}
        for path, data in found.items():
            if not isinstance(data, bytes):
                continue  # absent (no pack yet), or packed and removed meanwhile
            name = path.rsplit("/", 1)[-1]
            try:
                many = name.endswith(".pack") or name.startswith("batch-")
                blobs = unpack_records(data) if many else [data]
            except (ValueError, struct.error):
                continue  # damaged: the writer runs it again
            for blob in blobs:
                try:
                    record, whole = decode_record(blob)
                except (ValueError, KeyError, TypeError):
                    continue
                if whole:
                    done.setdefault(record.index, record)
        return dict(sorted(done.items()))

    def writer_alive(self, key: str) -> bool:
        """Whether a writer holds input ``key``'s lease and its beat is fresh."""
        folder = f"{self.location.path}.locks/{key}"
        with object_errors(self.location, "cannot read"):
            try:
                names = [str(p) for p in self.fs.find(f"{folder}/")]
            except FileNotFoundError:
                return False
            epochs = [int(m.group(1)) for m in map(_LEASE.search, names) if m]
            if not epochs:
                return False
            top = f"{max(epochs):010d}"
            found = cat_many(self.fs, [f"{folder}/lease-{top}", f"{folder}/beat-{top}"])
        try:
            holder = json.loads(found[f"{folder}/lease-{top}"])
            beat_data = found[f"{folder}/beat-{top}"]
            beat = float(json.loads(beat_data)) if isinstance(beat_data, bytes) else None
            beat = float(holder["started"]) if beat is None else beat
        except (TypeError, ValueError, KeyError):
            return False  # released while it was read, or unreadable
        if time.time() - beat > STALE_AFTER_S:
            return False
        if holder.get("host") != socket.gethostname():
            return True
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
        return True


def copy_object_store(store: str | Path) -> ObjectStoreCopy:
    """Fetch ``store``'s current results into a temporary local folder (removed by
    :meth:`ObjectStoreCopy.close`, or when the copy is collected); one-line
    :class:`InputError`/:class:`StoreError` for a bucket or store that is not there."""
    location = parse_store(str(store))
    fs = location.filesystem()
    # as the filesystem spells its paths (memory:// lists "/runs.zarr/…")
    base = str(fs._strip_protocol(location.path)).rstrip("/")
    with object_errors(location, "cannot read"):
        _check_store(fs, location, base)
        listed = sorted(str(p) for p in fs.find(f"{base}/"))
    scratch = tempfile.TemporaryDirectory(prefix="rex-stream-report-")
    copy = ObjectStoreCopy(location, Path(scratch.name), fs=fs, scratch=scratch)
    try:
        with object_errors(location, "cannot read"):
            _fill(copy, base, listed)
    except BaseException:
        copy.close()
        raise
    return copy


def _check_store(fs: Any, location: StoreLocation, base: str) -> None:
    """The store's root group must be there; else say whether the bucket or the store is
    missing, or the prefix holds something else."""
    try:
        root = json.loads(fs.cat_file(f"{base}/{METADATA}"))
    except FileNotFoundError:
        root = None
    except ValueError as exc:
        raise InputError(f"{location.url} is not a rex-stream store ({describe(exc)})") from None
    if isinstance(root, dict) and root.get("node_type") == "group":
        return
    if root is not None:
        raise InputError(f"{location.url} is not a rex-stream store (its zarr.json is no group)")
    bucket = base.split("/", 1)[0]
    if location.protocol in BUCKETED and not fs.exists(bucket):
        raise StoreError(f"{location.url}: the bucket {bucket} does not exist")
    try:
        holds = bool(fs.find(f"{base}/", maxdepth=1, withdirs=True))
    except FileNotFoundError:
        holds = False
    if holds:
        raise InputError(f"{location.url} is not a rex-stream store (no Zarr group: zarr.json)")
    raise InputError(f"{location.url}: no such store")


def _fill(copy: ObjectStoreCopy, base: str, listed: list[str]) -> None:
    """Write the root, every head and its generation's objects into the copy."""
    fs = copy.fs
    relative = [p[len(base) + 1 :] for p in listed if p.startswith(f"{base}/")]
    candidates = sorted(
        name[: -len(METADATA) - 1]
        for name in relative
        if name.endswith(f"/{METADATA}") and _may_be_key(name[: -len(METADATA) - 1])
    )
    found = cat_many(fs, [f"{base}/{key}/{METADATA}" for key in candidates])
    nodes = {key: _node(found[f"{base}/{key}/{METADATA}"]) for key in candidates}
    for key, node in nodes.items():
        attributes = node.get("attributes") if node else None
        parent = key.rpartition("/")[0]
        if parent and parent in copy.heads:
            continue  # a group inside an input's group, not an input of its own
        if isinstance(attributes, dict) and isinstance(attributes.get(GENERATION), str):
            copy.heads[key] = dict(attributes)
    _write(copy.folder / METADATA, _group_json({}))
    by_key: dict[str, list[str]] = {}
    for name in relative:
        holder = _key_of(name, copy.heads)
        if holder is not None:
            by_key.setdefault(holder, []).append(name)
    # every listed object of every current generation, fetched in large concurrent batches;
    # a key whose generation was replaced meanwhile (or not listed yet) is read on its own
    again = {key for key in copy.heads if key not in by_key}
    wanted = [name for key in sorted(by_key) for name in by_key[key]]
    for start in range(0, len(wanted), FETCH_BATCH):
        chunk = wanted[start : start + FETCH_BATCH]
        fetched = cat_many(fs, [f"{base}/{name}" for name in chunk])
        for name in chunk:
            key = _key_of(name, copy.heads) or ""
            data = fetched[f"{base}/{name}"]
            if isinstance(data, FileNotFoundError):
                again.add(key)  # an overwrite finished and removed this generation
            elif not isinstance(data, bytes):
                raise StoreError(f"cannot read {copy.url}/{name}: {describe(data)}")
            elif key not in again:
                generation = copy.heads[key][GENERATION]
                _write(copy.folder / key / name[len(key) + len(generation) + 2 :], data)
    for key in sorted(copy.heads):
        parent = key.rpartition("/")[0]
        if parent:  # a nested target's input: a plain group in the local layout
            _write(copy.folder / parent / METADATA, _group_json({}))
        if key in again:
            _copy_generation(copy, base, key)
        else:
            _write_head(copy, key)


def _copy_generation(copy: ObjectStoreCopy, base: str, key: str) -> None:
    """The objects of ``key``'s current generation, into ``<copy>/<key>/``, for a key the
    batched fetch missed: its head read again, its generation listed and fetched, and the
    head read once more (a generation replaced meanwhile is read again from the new head)."""
    fs = copy.fs
    head = _read_head(copy, base, key)
    for _ in range(REREADS):
        target = copy.folder / key
        shutil.rmtree(target, ignore_errors=True)
        if head is None:
            copy.heads.pop(key, None)  # the group was removed meanwhile
            return
        copy.heads[key] = head
        prefix = f"{key}/{head[GENERATION]}/"
        try:  # empty for a running input: its generation is sent when it finishes
            wanted = [str(p)[len(base) + 1 :] for p in fs.find(f"{base}/{prefix}")]
        except FileNotFoundError:
            wanted = []
        for start in range(0, len(wanted), FETCH_BATCH):
            chunk = wanted[start : start + FETCH_BATCH]
            fetched = cat_many(fs, [f"{base}/{n}" for n in chunk])
            for name in chunk:
                data = fetched[f"{base}/{name}"]
                if isinstance(data, bytes):
                    _write(target / name[len(prefix) :], data)
                elif not isinstance(data, FileNotFoundError):
                    raise StoreError(f"cannot read {copy.url}/{name}: {describe(data)}")
        now = _read_head(copy, base, key)
        if now is not None and now.get(GENERATION) == head[GENERATION]:
            _write_head(copy, key)
            return
        head = now
    raise StoreError(f"{copy.url}/{key} kept changing while it was read; run the report again")


def _read_head(copy: ObjectStoreCopy, base: str, key: str) -> dict[str, Any] | None:
    """Input ``key``'s head attributes as they are now (None when it has none)."""
    path = f"{base}/{key}/{METADATA}"
    attributes = (_node(cat_many(copy.fs, [path])[path]) or {}).get("attributes")
    if isinstance(attributes, dict) and isinstance(attributes.get(GENERATION), str):
        return dict(attributes)
    return None


def _write_head(copy: ObjectStoreCopy, key: str) -> None:
    """The group's ``zarr.json`` in the copy: the head's attributes, without the pointer."""
    attributes = {k: v for k, v in copy.heads[key].items() if k != GENERATION}
    _write(copy.folder / key / METADATA, _group_json(attributes))


def _may_be_key(name: str) -> bool:
    """Whether ``<name>/zarr.json`` may be an input's head: one or two levels deep (an input,
    or a target inside one), not a generation, not hidden."""
    parts = name.split("/")
    return (
        len(parts) <= 2
        and not any(p.startswith(".") or not p for p in parts)
        and not _GENERATION_NAME.match(parts[-1])
    )


def _key_of(name: str, heads: dict[str, dict[str, Any]]) -> str | None:
    """The input key whose current generation holds object ``name`` (None for others)."""
    parts = name.split("/")
    for depth in (1, 2):
        key = "/".join(parts[:depth])
        if key in heads:
            rest = parts[depth:]
            generation = heads[key][GENERATION]
            return key if len(rest) > 1 and rest[0] == generation else None
    return None


def _node(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, bytes):
        return None
    try:
        node = json.loads(data)
    except ValueError:
        return None
    return node if isinstance(node, dict) else None


def _group_json(attributes: dict[str, Any]) -> bytes:
    node = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    return json.dumps(node).encode()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
