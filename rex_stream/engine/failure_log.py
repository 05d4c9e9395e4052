"""The inputs of a store that failed: one small JSON file per input beside the store
(``RUNS.zarr.failures/<name>.json``, as its locks are in ``RUNS.zarr.locks``), so a report
lists every input that could not be read or explained, with its one-line reason, without the
run's ``--json`` summary. An input explained later has its record removed.

Local stores only (an object store keeps no failure records); writing a record never fails a
run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rex_stream.engine.atomic_file import write_atomically
from rex_stream.engine.store_location import StoreLocation, parse_store
from rex_stream.errors import OutputError, RexStreamError

logger = logging.getLogger(__name__)

FAILURES_SUFFIX = ".failures"


def failures_folder(store: str | Path | StoreLocation) -> Path | None:
    """The folder of ``store``'s failure records (None for an object store or a store
    address that cannot be read)."""
    try:
        where = parse_store(store)
    except (RexStreamError, ValueError):
        return None  # the run reports its store's problem itself
    if not where.is_local:
        return None
    path = where.local_path().resolve()
    return path.parent / f"{path.name}{FAILURES_SUFFIX}"


def record_failure(store: str | Path | StoreLocation, name: str, source: str, error: str) -> None:
    """Remember that input ``name`` (read from ``source``) failed with ``error``."""
    folder = failures_folder(store)
    if folder is None:
        return
    reason = str(error).splitlines()[0] if str(error).strip() else "failed"
    text = json.dumps({"name": name, "input": source, "error": reason, "time": time.time()})
    target = folder / f"{_file_name(name)}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, text)
    except (OSError, OutputError) as exc:
        logger.info("could not record the failure of %s in %s: %s", name, folder, exc)


def clear_failure(store: str | Path | StoreLocation, name: str) -> None:
    """Forget an earlier failure of input ``name`` (it was explained since)."""
    folder = failures_folder(store)
    if folder is None:
        return
    try:
        (folder / f"{_file_name(name)}.json").unlink(missing_ok=True)
    except OSError as exc:
        logger.info("could not clear the failure of %s in %s: %s", name, folder, exc)


def read_failures(store: str | Path | StoreLocation) -> list[dict[str, Any]]:
    """Every failure record of ``store`` (``name``, ``input``, ``error``, ``time``), by name."""
    folder = failures_folder(store)
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # half a record from a killed run: nothing to show
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            found.append(data)
    return sorted(found, key=lambda record: record["name"])


def _file_name(name: str) -> str:
    """A file name for a store name (a nested name's ``/`` kept out of the path)."""
    return name.replace("%", "%25").replace("/", "%2F")
