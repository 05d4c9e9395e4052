"""A store's folder on the local disk: its root made or checked, its groups found on disk, and an
overwrite's new generation swapped in (``<key>~new`` → ``<key>``, each rename recoverable).

Nothing here knows records or settings: :mod:`rex_stream.engine.store` builds on it.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import zarr
from zarr.errors import ContainsGroupError

from rex_stream.errors import StoreError

#: Suffixes of the sibling groups of an overwrite: the new result, and the old one mid-swap.
NEW = "~new"
OLD = "~old"


#: zarr creating one new store's root from two threads at once can fail ("a group exists")
_ROOT_CREATION = threading.Lock()


def open_root(path: Path) -> zarr.Group:
    """The store's root group, created if need be; damaged metadata is one clear error.

    Serialised within the process (two inputs' groups opened at once in a new store), and
    retried once when another process created the root between zarr's check and its write.
    """
    check_store_root(path)
    try:
        with _ROOT_CREATION:
            try:
                return zarr.open_group(str(path), mode="a")
            except ContainsGroupError:
                return zarr.open_group(str(path), mode="a")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise StoreError(
            f"the Zarr store {path} has damaged metadata ({path / 'zarr.json'}: "
            f"{first_line(exc)}); delete that file to let rex-stream write it again"
        ) from None
    except (OSError, TypeError) as exc:
        raise StoreError(f"cannot open or create the Zarr store {path}: {exc}") from exc


#: How many members of an existing store are looked at to tell another tool's store.
_MEMBERS_CHECKED = 8


def check_store_root(path: Path) -> None:
    """Refuse a path that is not, and cannot become, a rex-stream store: a file, a folder of
    other files, a Zarr v2 store, a Zarr array, or a Zarr store of another tool (an array at
    its root, or a group with attributes but none of rex-stream's). Nothing is written."""
    if not path.exists():
        return
    if not path.is_dir():
        raise StoreError(f"the Zarr store {path} is a file; a store is a folder")
    if (path / ".zgroup").exists() or (path / ".zarray").exists():
        raise StoreError(
            f"{path} is a Zarr v2 store, not one rex-stream wrote; give another --store"
        )
    if not (path / "zarr.json").exists():
        # no root metadata: fine for an empty folder, or our groups whose root file was
        # deleted to repair it (as the damaged-metadata error advises)
        with os.scandir(path) as entries:
            # zarr writes zarr.json as zarr.<hex>.partial, then renames it: another opener
            # creating this root at this moment is not "other files"
            others = (e for e in entries if not _root_metadata(e.name))
            first = [e for _, e in zip(range(_MEMBERS_CHECKED), others, strict=False)]
        if not all(e.is_dir() and "rex_stream" in _attributes(Path(e.path)) for e in first):
            raise StoreError(
                f"{path} is a folder of other files, not a Zarr store; give a new or empty "
                "folder as --store"
            )
        return
    if _node(path).get("node_type") == "array":
        raise StoreError(f"{path} is a Zarr array, not a store of groups; give another --store")
    with os.scandir(path) as entries:
        members = [e for e in entries if e.is_dir() and not e.name.endswith((NEW, OLD))]
    for entry in members[:_MEMBERS_CHECKED]:
        node = _node(Path(entry.path))
        attributes = _attributes(Path(entry.path))
        if node.get("node_type") == "array" or (attributes and "rex_stream" not in attributes):
            raise StoreError(
                f"{path} is a Zarr store of another tool ({entry.name} was not written by "
                "rex-stream); give another --store"
            )


def _root_metadata(name: str) -> bool:
    """``zarr.json``, or zarr's temporary file while it writes it."""
    return name == "zarr.json" or (name.startswith("zarr.") and name.endswith(".partial"))


def _node(folder: Path) -> dict[str, Any]:
    """A Zarr v3 node's metadata (empty when missing or unreadable: not ours to judge)."""
    try:
        node = json.loads((folder / "zarr.json").read_text())
    except (OSError, ValueError):
        return {}
    return node if isinstance(node, dict) else {}


def _attributes(folder: Path) -> dict[str, Any]:
    """A Zarr v3 node's attributes (empty when it has none or cannot be read)."""
    attributes = _node(folder).get("attributes")
    return attributes if isinstance(attributes, dict) else {}


def existing_group(root: zarr.Group, key: str, location: str) -> zarr.Group:
    """The group ``key``; damaged or foreign metadata is one clear error."""
    try:
        group = root[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{location} has damaged metadata ({location}/zarr.json: {first_line(exc)}); "
            "pass --overwrite to explain this input again"
        ) from None
    if not isinstance(group, zarr.Group):
        raise StoreError(f"{location} is not a rex-stream group; pass --overwrite to replace it")
    return group


def swap(target: Path) -> None:
    """Put ``<target>~new`` in the place of ``target`` (each step recoverable by recover)."""
    new, old = target.with_name(target.name + NEW), target.with_name(target.name + OLD)
    try:
        os.replace(target, old)
        os.replace(new, target)
    except OSError as exc:
        raise StoreError(f"cannot replace {target} with the new result: {exc}") from exc
    remove_folder(old)


def recover(path: Path, key: str) -> None:
    """Finish or undo an overwrite that a killed run left half swapped; drop a dead one."""
    target = path / key
    new, old = path / f"{key}{NEW}", path / f"{key}{OLD}"
    try:
        if old.exists() and not target.exists():
            # killed between the two renames of swap: the new result is complete by then
            os.replace(new if is_complete(new) else old, target)
    except OSError as exc:
        raise StoreError(f"cannot settle the interrupted overwrite of {target}: {exc}") from exc
    for leftover in (old, new):
        if leftover.exists():
            remove_folder(leftover)


def is_complete(group: Path) -> bool:
    try:
        return bool(json.loads((group / "zarr.json").read_text())["attributes"].get("complete"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def member_names(group: zarr.Group) -> list[str]:
    """The names under ``group`` as listed on disk, so that one member's damaged metadata
    cannot hide the others (zarr's own listing reads every member's metadata)."""
    root = getattr(group.store, "root", None)
    if root is None:
        return list(group.array_keys())
    try:
        return [p.name for p in (Path(root) / group.path).iterdir() if p.is_dir()]
    except OSError:
        return []


def remove_folder(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc}") from exc
