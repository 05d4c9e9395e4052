"""One writer per store group: a lock that holds on shared filesystems (NFS, Lustre, SMB).

The lock on group ``<key>`` of store ``runs.zarr`` is the directory ``runs.zarr.locks/<key>``
(next to the store, so Zarr readers never see it). ``mkdir`` either creates it or fails, on
every filesystem and from every host, which ``fcntl`` locks do not promise. Inside, ``owner.json``
names the holder (host, pid, a random token, when it started); the holder touches its own
``beat-<token>`` file every ``heartbeat_s`` seconds (a file of its own, so a holder that was
taken over can never refresh or overwrite its successor's lock).

A lock is *stale* — and the next writer takes it over — when its holder is a dead process on
this host, or when its heartbeat is older than ``stale_after_s`` (another host that died or
lost the filesystem; clocks are assumed to agree within that margin). A holder that finds its
lock taken over (its heartbeat finds its beat file gone) is told so by :meth:`GroupLock.check`
and must stop writing.

Usage (the Dask wing does the same around each input task)::

    lock = GroupLock.for_group("runs.zarr", "photo.jpg")
    lock.acquire(wait_s=0)  # StoreLocked at once if another writer holds it
    try:
        ...  # write the group; call lock.check() before each commit
    finally:
        lock.release()
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from rex_stream.errors import StoreError, StoreLocked

LOCKS_SUFFIX = ".locks"
OWNER = "owner.json"
BEAT = "beat-"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in its ``owner.json``."""

    host: str
    pid: int
    token: str
    started: float
    heartbeat: float

    def describe(self) -> str:
        """``host pid N since HH:MM:SS``, for messages."""
        if not self.token:
            return self.host
        since = time.strftime("%H:%M:%S", time.localtime(self.started))
        return f"{self.host} pid {self.pid} since {since}"


#: Stands for a holder that has made the lock but not yet written its owner file.
STARTING = Holder("a writer that is starting", 0, "", 0.0, 0.0)


class Heartbeat:
    """What every exclusive hold of a group shares — :class:`GroupLock` on a folder,
    :class:`~rex_stream.engine.object_lease.ObjectLease` on an object store: a heartbeat thread
    that writes one beat every ``heartbeat_s`` (:meth:`_beat`, False once the hold is found
    lost), the lost flag it sets, and when a holder counts as stale."""

    def __init__(self, what: str, heartbeat_s: float, stale_after_s: float) -> None:
        self.what = what
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._token: str | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the group (and has not lost it)."""
        return self._token is not None and not self._lost.is_set()

    def _start_beating(self, token: str, name: str) -> None:
        """Hold with ``token`` from now on and start the heartbeat thread."""
        self._token = token
        self._lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_loop, name=name, daemon=True)
        self._thread.start()

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self._beat():
                self._lost.set()
                return

    def _beat(self) -> bool:
        """Write one beat; False when the hold turns out lost."""
        raise NotImplementedError

    def _holder_is_stale(self, holder: Holder) -> bool:
        """A dead process on this host, or a heartbeat older than ``stale_after_s``."""
        if holder.host == socket.gethostname() and not _alive(holder.pid):
            return True
        return time.time() - holder.heartbeat > self.stale_after_s


class GroupLock(Heartbeat):
    """An exclusive lock on one group of a store, safe across processes and hosts."""

    def __init__(
        self,
        path: str | Path,
        *,
        what: str | None = None,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 60.0,
    ) -> None:
        super().__init__(what or str(path), heartbeat_s, stale_after_s)
        self.path = Path(path)

    @classmethod
    def for_group(cls, store: str | Path, key: str, **timing: float) -> GroupLock:
        """The lock of group ``key`` in the store at ``store``."""
        store = Path(store).resolve()  # one lock whatever the spelling ("." or a symlink)
        path = store.parent / f"{store.name}{LOCKS_SUFFIX}" / key
        return cls(path, what=f"{store}/{key}", **timing)

    def try_acquire(self) -> Holder | None:
        """Take the lock if it is free or stale; otherwise return who holds it."""
        if self._token is not None:
            raise StoreError(f"{self.path} is already held by this process")
        for _ in range(5):  # the parent may vanish under us (another holder tidying up)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.mkdir()
            except FileExistsError:
                holder = self.holder()
                if holder is None and not self.path.exists():
                    continue  # released between our mkdir and our look: try again
                if not self._is_stale(holder):
                    return holder or STARTING
                self._break(holder)
                continue
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot create the lock {self.path}: {exc}") from exc
            token = secrets.token_hex(8)
            now = time.time()
            mine = Holder(socket.gethostname(), os.getpid(), token, now, now)
            try:
                self._write(mine)
            except OSError as exc:
                _remove_tree(self.path)
                raise StoreError(f"cannot write the lock {self.path}: {exc}") from exc
            self._start_beating(token, f"lock {self.path.name}")
            return None
        return self.holder() or STARTING

    def acquire(self, wait_s: float = 0.0, poll_s: float = 0.25) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds; StoreLocked if it stays held."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise self.locked_error(holder, wait_s)
            time.sleep(poll_s)

    def locked_error(self, holder: Holder, wait_s: float = 0.0) -> StoreLocked:
        """The one-line refusal for a lock that ``holder`` holds."""
        waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
        return StoreLocked(
            f"{self.what} is being written by {holder.describe()}{waited}; run again when "
            "it ends (the lock of a writer that died is taken over by the next run)"
        )

    def check(self) -> None:
        """StoreError if the lock was lost (taken over as stale); a holder must then stop.

        Looks at the lock itself (its owner's token and this holder's beat file), not only at
        what the heartbeat thread last saw: a holder that was stopped (SIGSTOP, a long pause)
        wakes with a thread that has not looked yet, and must not take one more step.
        """
        if self._token is not None and not self._lost.is_set() and not self._still_mine():
            self._lost.set()
        if self._token is None or self._lost.is_set():
            raise StoreError(
                f"lost the lock {self.path} (another writer took it over as stale); "
                "this run stops so that two writers never mix results"
            )

    def release(self) -> None:
        """Give the lock up (a no-op when not held; never removes another holder's lock)."""
        if self._token is None:
            return
        self._stop_beating()
        holder = self.holder()
        if holder is not None and holder.token == self._token:
            _remove_tree(self.path)
        self._token = None
        with contextlib.suppress(OSError):  # tidy: the locks folder goes when it is empty
            self.path.parent.rmdir()

    def _still_mine(self) -> bool:
        """Whether the lock on disk is still this holder's (its owner token and beat file)."""
        holder = self.holder()
        return holder is not None and holder.token == self._token

    def holder(self) -> Holder | None:
        """The holder written in the lock, or None if it is absent or unreadable."""
        return _read_holder(self.path)

    def __enter__(self) -> GroupLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()

    # ------------------------------------------------------------------ internals

    def _write(self, holder: Holder) -> None:
        """Create the beat file, then ``owner.json`` atomically (never seen half written)."""
        (self.path / f"{BEAT}{holder.token}").touch()
        scratch = self.path / f".{OWNER}.{holder.token}"
        scratch.write_text(json.dumps(asdict(holder)))
        os.replace(scratch, self.path / OWNER)

    def _beat(self) -> bool:
        """Touch the beat file; its absence means the lock was taken over."""
        try:
            os.utime(self.path / f"{BEAT}{self._token}")
        except OSError:
            return False
        return True

    def _is_stale(self, holder: Holder | None) -> bool:
        if holder is None:  # mkdir done, owner not written yet — or a holder died between
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return False
            return age > self.stale_after_s
        return self._holder_is_stale(holder)

    def _break(self, stale: Holder | None) -> None:
        """Move a stale lock aside (one breaker wins the rename), then delete it."""
        aside = self.path.with_name(f"{self.path.name}.stale-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except OSError:
            return  # another breaker (or the holder's release) got there first
        moved = _read_holder(aside)
        if stale is not None and (moved is None or moved.token != stale.token):
            # the lock changed hands between our look and the rename: put it back
            with contextlib.suppress(OSError):
                os.rename(aside, self.path)
                return
        _remove_tree(aside)


def _read_holder(path: Path) -> Holder | None:
    """The holder in ``path/owner.json``, its heartbeat the mtime of its beat file."""
    try:
        data = json.loads((path / OWNER).read_text())
        data["heartbeat"] = (path / f"{BEAT}{data['token']}").stat().st_mtime
        return Holder(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
