"""The driver's side of the shared store: it creates the root, checks that every worker sees
it (and writes it atomically), and leaves nothing behind when a run wrote nothing."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr

from rex_stream.engine.lock import GroupLock
from rex_stream.engine.object_store import ObjectGroup, open_zarr_root
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.store_folder import check_store_root
from rex_stream.engine.store_location import parse_store, remember_storage_options
from rex_stream.errors import ConfigError, RexStreamError, StoreError

if TYPE_CHECKING:
    from distributed import Client


def create_root(store: str | Path, names: Sequence[str], overwrite: bool) -> str:
    """The driver creates the root (an absolute path or an object-store URL: workers may run
    elsewhere); with ``overwrite`` the named groups are removed first, each under its lock."""
    where = parse_store(store)
    if not where.is_local:
        open_zarr_root(where)
        if overwrite:
            for name in names:
                lease = ObjectGroup.lease_for(where, name)
                lease.acquire()  # StoreLocked at once while another writer holds it
                try:
                    ObjectGroup(where, name, "", lease).remove_group()
                finally:
                    lease.release()
        return where.url
    root = where.local_path().expanduser().resolve()
    check_store_root(root)
    try:
        zarr.open_group(str(root), mode="a")
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"cannot open or create the Zarr store {store}: {exc}") from exc
    if overwrite:
        for name in names:
            group = root / name
            if group.exists():
                lock = GroupLock.for_group(root, name)
                lock.acquire()  # StoreLocked at once while another writer holds it
                try:
                    shutil.rmtree(group)
                except OSError as exc:
                    raise StoreError(f"cannot remove {group}: {exc}") from exc
                finally:
                    lock.release()
    return str(root)


def remove_if_empty(root: str) -> None:
    """Remove a store root the driver created when no input group was written into it."""
    where = parse_store(root)
    if not where.is_local:
        fs = where.filesystem()
        fs.invalidate_cache()
        found = fs.find(where.path)
        if all(str(name).endswith("/zarr.json") for name in found) and len(found) <= 1:
            for name in found:
                fs.rm_file(name)
        return
    folder = Path(root)
    if folder.is_dir() and all(entry.name == "zarr.json" for entry in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def check_workers_see(client: Client, root: str) -> None:
    """Every worker must see the store the driver created (a shared filesystem) and write it
    with a zarr whose writes are atomic."""
    where = parse_store(root)
    options = dict(where.options)  # the --storage-option values, for the workers' own parses
    seen = client.run(_worker_store_check, root, options)
    blind = sorted(address for address, (visible, _) in seen.items() if not visible)
    if blind:
        raise StoreError(
            f"Dask worker(s) {', '.join(blind)} cannot see the store {root}: "
            "put it on a filesystem every worker mounts at the same path"
        )
    old = sorted(
        f"{address} ({version})"
        for address, (_, version) in seen.items()
        if not atomic_zarr(version)
    )
    if old:
        raise ConfigError(
            f"Dask worker(s) {', '.join(old)} have a zarr older than {ATOMIC_ZARR}, whose "
            "writes are not atomic: pip install 'zarr>=3.1.3' there"
        )


def _worker_store_check(root: str, options: dict[str, Any]) -> tuple[bool, str]:
    """On a worker: whether it sees the store's root, and its zarr version (an object
    store's storage options are remembered for the tasks that follow)."""
    if "://" not in root:
        return (Path(root) / "zarr.json").is_file(), zarr.__version__
    try:
        where = remember_storage_options(root, options) if options else parse_store(root)
        return ExplanationStore.exists(where), zarr.__version__
    except RexStreamError:
        return False, zarr.__version__


#: The first zarr release that writes local files atomically (zarr-python PR #3412).
ATOMIC_ZARR = "3.1.3"


def atomic_zarr(version: str) -> bool:
    """Whether zarr ``version`` writes atomically (``3.1.3`` or later)."""
    numbers = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        numbers.append(int(digits or 0))
    return tuple(numbers) >= (3, 1, 3)
