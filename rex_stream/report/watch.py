"""Writing a report atomically (a temporary file beside it, then ``os.replace``), once or again
every few seconds while a job runs: the file on disk is always a complete page."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rex_stream.errors import OutputError


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, whole."""
    target = Path(path)
    folder = target.resolve().parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {target}: {folder} is not a directory")
    try:
        handle, scratch = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(scratch, 0o644)
        os.replace(scratch, target)
    except OSError as exc:
        Path(scratch).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc


def watch(
    write: Callable[[], None],
    every_s: float,
    until: Callable[[], bool] = lambda: False,
    rounds: int | None = None,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Call ``write`` now and then every ``every_s`` seconds until ``until()`` holds after a
    write, or ``rounds`` writes were made (None: until interrupted); returns the writes made."""
    made = 0
    while True:
        started = time.monotonic()
        write()
        made += 1
        if until() or (rounds is not None and made >= rounds):
            return made
        (sleep or time.sleep)(max(0.0, every_s - (time.monotonic() - started)))
