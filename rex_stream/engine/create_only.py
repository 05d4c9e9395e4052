"""Whether an object store honours create-only writes, which every guarantee of an object
store rests on (a lease's first writer wins, a record batch is written once).

fsspec passes ``pipe_file(..., mode="create")`` to each filesystem, and not every one honours
it: some overwrite silently (an S3-compatible service without ``If-None-Match``, a filesystem
library that drops the mode). Two writers could then both hold one lease. So before the first
lease under a folder, this process writes a probe object twice, create-only: the second write
must be refused. A filesystem that lets it through is refused in one line, instead of running
with guarantees it does not have. Probed once per process and filesystem root.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from rex_stream.errors import StoreError

_honoured: set[tuple[str, str]] = set()
_probing = threading.Lock()


def require_create_only(fs: Any, folder: str) -> None:
    """Raise :class:`StoreError` unless ``fs`` refuses a second create-only write of one
    object (checked with a probe under ``folder``, once per process and bucket)."""
    root = (type(fs).__name__, folder.strip("/").split("/")[0])
    if root in _honoured:
        return
    with _probing:
        if root in _honoured:
            return
        probe = f"{folder.rstrip('/')}/.create-only-{secrets.token_hex(6)}"
        try:
            fs.pipe_file(probe, b"first", mode="create")
            try:
                fs.pipe_file(probe, b"second", mode="create")
            except FileExistsError:
                _honoured.add(root)
                return
            finally:
                _remove(fs, probe)
        except OSError:
            return  # not writable at all: the caller's own write says why, in its words
        raise StoreError(
            f"{type(fs).__name__} overwrote an object written create-only under {folder}: the "
            "store's guarantees (one writer per input, each record written once) need "
            "create-only writes (S3's If-None-Match); use a service that honours them, or a "
            "local --store"
        )


def _remove(fs: Any, path: str) -> None:
    try:
        fs.rm_file(path)
    except OSError:
        pass  # a probe left behind is harmless
