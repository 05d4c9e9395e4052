"""The inputs of a store that failed: one small JSON file per input beside the store
(``RUNS.zarr.failures/<name>.json``, as its locks are in ``RUNS.zarr.locks``), so a report
lists every input that could not be read or explained, with its one-line reason, without the
run's ``--json`` summary. An input explained later has its record removed.

On an object store the records are objects under the same name (``s3://b/RUNS.zarr.failures/
<name>.json``), each written whole by one PUT, so no rename is needed. Writing or clearing a
record never fails a run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rex_stream.engine.atomic_file import write_atomically
from rex_stream.engine.store_location import StoreLocation, parse_store
from rex_stream.errors import RexStreamError

logger = logging.getLogger(__name__)

FAILURES_SUFFIX = ".failures"


def failures_folder(store: str | Path | StoreLocation) -> Path | None:
    """The local folder of ``store``'s failure records (None for an object store or a store
    address that cannot be read)."""
    where = _location(store)
    if where is None or not where.is_local:
        return None
    path = where.local_path().resolve()
    return path.parent / f"{path.name}{FAILURES_SUFFIX}"


def record_failure(store: str | Path | StoreLocation, name: str, source: str, error: str) -> None:
    """Remember that input ``name`` (read from ``source``) failed with ``error``."""
    reason = str(error).splitlines()[0] if str(error).strip() else "failed"
    text = json.dumps({"name": name, "input": source, "error": reason, "time": time.time()})
    folder = failures_folder(store)
    try:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / _file_name(name), text)
        elif (objects := _objects(store)) is not None:
            fs, prefix = objects
            fs.pipe_file(f"{prefix}/{_file_name(name)}", text.encode())
    except Exception as exc:  # a record is a courtesy: it never fails the run
        logger.info("could not record the failure of %s: %s", name, type(exc).__name__)


def clear_failure(store: str | Path | StoreLocation, name: str) -> None:
    """Forget an earlier failure of input ``name`` (it was explained since)."""
    folder = failures_folder(store)
    try:
        if folder is not None:
            (folder / _file_name(name)).unlink(missing_ok=True)
        elif (objects := _objects(store)) is not None:
            fs, prefix = objects
            try:  # one DELETE: most inputs never failed, and asking first costs two requests
                fs.rm_file(f"{prefix}/{_file_name(name)}")
            except FileNotFoundError:
                pass
    except Exception as exc:  # as above
        logger.info("could not clear the failure of %s: %s", name, type(exc).__name__)


def read_failures(store: str | Path | StoreLocation) -> list[dict[str, Any]]:
    """Every failure record of ``store`` (``name``, ``input``, ``error``, ``time``), by name."""
    texts: list[bytes] = []
    folder = failures_folder(store)
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                texts.append(path.read_bytes())
            except OSError:
                continue
    elif folder is None and (objects := _objects(store)) is not None:
        fs, prefix = objects
        try:
            names = [n for n in fs.find(prefix) if n.endswith(".json")]
            texts.extend(fs.cat(names, on_error="omit").values() if names else ())
        except Exception as exc:  # the report goes on without them
            logger.info("could not read the failure records under %s: %s", prefix, exc)
    found = []
    for text in texts:
        try:
            data = json.loads(text)
        except ValueError:
            continue  # half a record from a killed run: nothing to show
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            found.append(data)
    return sorted(found, key=lambda record: record["name"])


def _location(store: str | Path | StoreLocation) -> StoreLocation | None:
    try:
        return parse_store(store)
    except (RexStreamError, ValueError):
        return None  # the run reports its store's problem itself


def _objects(store: str | Path | StoreLocation) -> tuple[Any, str] | None:
    """(filesystem, prefix) of an object store's failure records; None for a local one."""
    where = _location(store)
    if where is None or where.is_local:
        return None
    return where.filesystem(), where.child(FAILURES_SUFFIX).path


def _file_name(name: str) -> str:
    """The record's file name for a store name (a nested name's ``/`` kept out of the path)."""
    return name.replace("%", "%25").replace("/", "%2F") + ".json"
