"""Writing a small file atomically: a temporary file beside it, then ``os.replace``, so a
reader sees the old file or the new one, whole (report pages, failure records)."""

from __future__ import annotations

import os
import tempfile
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
