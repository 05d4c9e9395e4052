"""What a killed or meddled-with run can leave among a group's records on a local store, and
how a resumed run deals with it (object stores write each record in one request, so this is
about local folders only):

- a torn record: its folder without ``zarr.json`` (zarr writes metadata to
  ``zarr.<hex>.partial`` and renames it; ``kill -9`` in between leaves only the partial file),
  removed without a warning and run again, as a record not yet marked committed is;
- a file where a record's folder goes: removed with a warning when that record is written;
- a name that is no record index (``ledger/abc``): left alone, with a warning;
- a stale ``zarr.<hex>.partial`` in the store's or the group's folder: removed.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import zarr

logger = logging.getLogger("rex_stream.engine.store")


def member_path(group: zarr.Group, name: str) -> Path | None:
    """Where member ``name`` of ``group`` lives on a local store, or None (other stores)."""
    root = getattr(group.store, "root", None)
    return None if root is None else Path(root) / group.path / name


def clear_torn_record(group: zarr.Group, name: str) -> bool:
    """Remove the record ``name`` if a killed write left it torn (a folder without
    ``zarr.json``); True when it was."""
    folder = member_path(group, name)
    if folder is None or not folder.is_dir() or (folder / "zarr.json").exists():
        return False
    logger.debug("%s: a torn write (a killed run); running that record again", folder)
    shutil.rmtree(folder, ignore_errors=True)
    return True


def clear_stray_file(group: zarr.Group, name: str, what: str) -> None:
    """Remove a plain file standing where the record ``name`` is about to be written."""
    path = member_path(group, name)
    if path is not None and path.is_file():
        logger.warning("%s: a file stood where %s goes; replaced by the record", path, what)
        path.unlink()


def is_record_name(name: str) -> bool:
    """Whether ``name`` is a record's (its zero-padded index)."""
    return name.isdigit()


#: A ``zarr.<hex>.partial`` older than this is a killed writer's, not one being renamed.
STALE_PARTIAL_S = 60.0


def clear_stale_partials(*folders: Path) -> None:
    """Remove the ``zarr.<hex>.partial`` files killed writers left in ``folders`` (plain zarr
    readers warn about each); a fresh one may be another writer's, about to be renamed."""
    now = time.time()
    for folder in folders:
        try:
            partials = list(folder.glob("zarr.*.partial"))
        except OSError:
            continue
        for partial in partials:
            try:
                if now - partial.stat().st_mtime > STALE_PARTIAL_S:
                    partial.unlink()
                    logger.debug("%s: removed a killed write's leftover", partial)
            except OSError:
                continue  # gone meanwhile, or not ours to remove
