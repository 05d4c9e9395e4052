"""The head of a group on an object store, and what every object-store module shares: the
store's root through zarr, errors as one line without secrets.

The head ``<store>/<key>/zarr.json`` is a zarr group whose attributes are the result's, plus
``generation``: the pointer to the generation that holds the result. It is read in one GET and
replaced in one PUT (the switch of an overwrite, the ``complete`` mark of a finished input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import zarr

from rex_stream.engine.store_location import StoreLocation
from rex_stream.errors import RexStreamError, StoreError

GENERATION = "generation"


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


def read_head_and_root(fs: Any, location: StoreLocation, key: str) -> dict[str, Any] | None:
    """The head attributes of group ``key`` (as :func:`read_head`), read concurrently with
    the store's root metadata, which is created when missing (one round trip)."""
    root, head = f"{location.path}/zarr.json", f"{location.path}/{key}/zarr.json"
    found = cat_many(fs, [root, head])
    if not isinstance(found.get(root), bytes):
        if not isinstance(found.get(root), FileNotFoundError):
            raise StoreError(f"cannot read {location.url}: {describe(found.get(root))}")
        open_zarr_root(location)  # creates it (or fails in one line: no such bucket …)
    data = found.get(head)
    if isinstance(data, FileNotFoundError):
        return None
    if not isinstance(data, bytes):
        raise StoreError(f"cannot read {location.url}/{key}: {describe(data)}")
    return _head_of(data, location, key)


def cat_many(fs: Any, paths: list[str]) -> dict[str, Any]:
    """The bytes of each object, read concurrently (an async filesystem sends the requests at
    once), keyed by ``paths``; an error (FileNotFoundError …) in place of one that failed."""
    try:
        found = fs.cat(paths, on_error="return")
    except OSError:
        found = {}
    by_path = {fs._strip_protocol(str(k)): v for k, v in found.items()}
    out: dict[str, Any] = {}
    for path in paths:
        value = by_path.get(fs._strip_protocol(path), _MISSING)
        if value is _MISSING:
            try:
                value = fs.cat_file(path)
            except Exception as exc:  # handed back in its place
                value = exc
        out[path] = value
    return out


_MISSING = object()


def read_head(fs: Any, location: StoreLocation, key: str) -> dict[str, Any] | None:
    """The head attributes of group ``key`` in one GET of its ``zarr.json`` (None if absent):
    how a resume learns that a finished input is done without opening zarr or any record."""
    try:
        data = fs.cat_file(f"{location.path}/{key}/zarr.json")
    except FileNotFoundError:
        return None
    return _head_of(data, location, key)


def _head_of(data: bytes, location: StoreLocation, key: str) -> dict[str, Any]:
    try:
        node = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{location.url}/{key} has damaged metadata ({describe(exc)})") from None
    attributes = node.get("attributes") if isinstance(node, dict) else None
    return dict(attributes) if isinstance(attributes, dict) else {}
