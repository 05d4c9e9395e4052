"""Names of the Triton system shared-memory regions a run creates, and which are stale.

Each region is named ``rex-stream-<pid>-<run tag>-<slot>-<in|out>`` (its POSIX key is the same
name under ``/dev/shm``). A run unregisters and unlinks its regions on every exit it gets to
handle (normal end, errors, SIGINT, SIGTERM); a run killed outright (``kill -9``) cannot, so the
next run on this host cleans up regions whose owner process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PREFIX = "rex-stream-"
SHM_ROOT = Path("/dev/shm")
_NAME = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)-(\d+)-(in|out)$")


def region_name(tag: str, slot: int, kind: str, pid: int | None = None) -> str:
    """The name (and key, with a leading slash) of one region of this process's run ``tag``."""
    return f"{PREFIX}{os.getpid() if pid is None else pid}-{tag}-{slot}-{kind}"


def owner_pid(name: str) -> int | None:
    """The pid a region name records, or None when rex-stream did not name it."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (someone else's counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(name: str) -> bool:
    """A rex-stream region whose owner process no longer exists on this host."""
    pid = owner_pid(name)
    return pid is not None and not process_alive(pid)


def registered_regions(status: Any) -> dict[str, str]:
    """``{name: key}`` from a system shared-memory status reply (gRPC JSON or HTTP list)."""
    if isinstance(status, Mapping):
        entries: Iterable[Any] = (status.get("regions") or {}).values()
    elif isinstance(status, list):
        entries = status
    else:
        entries = []
    regions: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name"):
            regions[str(entry["name"])] = str(entry.get("key", ""))
    return regions


def stale_local_keys() -> list[str]:
    """Names under ``/dev/shm`` left by rex-stream processes that are gone."""
    try:
        names = [p.name for p in SHM_ROOT.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return []
    return sorted(n for n in names if is_stale(n))


def unlink_key(name: str) -> None:
    """Remove ``/dev/shm/<name>`` if it is there (the memory goes once nobody maps it)."""
    with contextlib.suppress(OSError):
        (SHM_ROOT / name.lstrip("/")).unlink()
