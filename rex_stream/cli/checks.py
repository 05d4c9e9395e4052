"""Checks every command makes of its arguments before a run: flags that do nothing or
contradict each other, seeds and counts out of range, a store path that cannot be one."""

from __future__ import annotations

import argparse
from pathlib import Path

from rex_stream.engine.store_folder import check_store_root
from rex_stream.engine.store_location import parse_storage_options, remember_storage_options
from rex_stream.errors import ConfigError, StoreError


def check_store_flags(args: argparse.Namespace) -> None:
    """``--resume``/``--overwrite`` need ``--store`` and exclude each other; the store's
    folder must exist (a typo is not silently created) and the store must not be a file."""
    resume, overwrite = getattr(args, "resume", False), getattr(args, "overwrite", False)
    store = getattr(args, "store", None)
    if resume and not store:
        raise ConfigError(
            "--resume needs --store (the store of the run to continue)", key="--resume"
        )
    if overwrite and not store:
        raise ConfigError(
            "--overwrite needs --store (the store whose results to replace)", key="--overwrite"
        )
    if resume and overwrite:
        raise ConfigError("give --resume or --overwrite, not both", key="--overwrite")
    pairs = getattr(args, "storage_option", None) or []
    if pairs and not store:
        raise ConfigError("--storage-option needs --store", key="--storage-option")
    if not store:
        return
    if "://" in str(store):  # an object store (or file://): refused in one line if unknown
        location = remember_storage_options(str(store), parse_storage_options(pairs))
        if not location.is_local:
            return
        store = str(location.local_path())
    elif pairs:
        raise ConfigError(
            "--storage-option is for object stores (--store s3://…), not a local folder",
            key="--storage-option",
        )
    path = Path(store)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StoreError(f"--store {store}: directory {parent} does not exist")
    if path.exists() and not path.is_dir():
        raise StoreError(f"--store {store}: is a file, not a Zarr store (a directory)")
    check_store_root(path)  # once, before any input is run


def check_at_least(value: int | None, flag: str, least: int = 1) -> None:
    """A count the user gave must be at least ``least``."""
    if value is not None and value < least:
        raise ConfigError(f"{flag} {value}: must be >= {least}", key=flag)
