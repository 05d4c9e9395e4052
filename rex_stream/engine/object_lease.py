"""One writer per group on an object store: a create-only lease with a heartbeat and expiry.

Object stores have no ``mkdir`` and no rename, but they have a create-only PUT
(``If-None-Match: *``: the first writer wins, the others get 412). The lease of group ``<key>``
is a numbered object ``<store>.locks/<key>/lease-<epoch>`` naming its holder (host, pid, a
random token); the holder rewrites its own ``beat-<epoch>`` object every ``heartbeat_s``
(until the first beat, a reader takes the lease's ``started`` time as its beat: a short hold
costs one listing, one PUT and one DELETE).

A lease is stale when its beat is older than ``stale_after_s`` (or its holder is a dead
process on this host); the next writer then creates ``lease-<epoch + 1>`` — create-only, so of
two writers racing for a stale lease exactly one wins — and deletes the older ones. A holder
still holds its lease while ``lease-<epoch>`` carries its token and ``lease-<epoch + 1>`` does
not exist: :meth:`ObjectLease.check` looks (two small requests) before every destructive step,
so a writer that was stopped past its lease never removes or replaces its successor's work —
unless its own beat is younger than half the expiry (nobody may take a lease over before it
expires, the other half allows for clock skew): then the check costs no request.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from typing import Any

from rex_stream.engine.create_only import require_create_only
from rex_stream.engine.lock import Heartbeat, Holder
from rex_stream.errors import StoreError, StoreLocked

_LEASE = re.compile(r"lease-(\d{10})$")
#: How long a lease seen held is trusted before the next look (two requests). Far below the
#: 60 s expiry: a writer stopped for longer than this always looks again before its next step.
RECHECK_S = 1.0
#: A lease whose beat is older than this is stale: the next writer takes it over. Every writer
#: of a store must judge with the same expiry (a holder trusts its own beat for half of it).
STALE_AFTER_S = 60.0


class ObjectLease(Heartbeat):
    """An exclusive lease on one group of an object store (``fs`` is an fsspec filesystem)."""

    def __init__(
        self,
        fs: Any,
        folder: str,
        what: str,
        *,
        heartbeat_s: float = 5.0,
        stale_after_s: float | None = None,
    ) -> None:
        expiry = STALE_AFTER_S if stale_after_s is None else stale_after_s
        super().__init__(what, heartbeat_s, expiry)
        self.fs = fs
        self.folder = folder.rstrip("/")
        self._epoch = 0
        self._verified = float("-inf")  # when the lease was last seen held (monotonic)
        self._beat_at = float("-inf")  # when this holder last wrote its beat (monotonic)
        self._beat_written = False  # whether a beat object exists (none until the first beat)
        self.took_over = False  # whether this lease was taken over from a stale holder

    def try_acquire(self) -> Holder | None:
        """Take the lease if it is free or stale; otherwise return who holds it."""
        if self._token is not None:
            raise StoreError(f"{self.what} is already leased by this process")
        require_create_only(self.fs, self.folder)
        for _ in range(5):
            epochs = self._epochs()
            top = max(epochs, default=0)
            if top:
                holder = self._holder(top)
                if holder is None:
                    continue  # released between the listing and the read
                if not self._is_stale(holder):
                    return holder
            token = secrets.token_hex(8)
            mine = {"host": socket.gethostname(), "pid": os.getpid(), "token": token}
            mine["started"] = time.time()
            try:
                self.fs.pipe_file(self._lease(top + 1), json.dumps(mine).encode(), mode="create")
            except FileExistsError:
                continue  # another writer took this epoch first: look again
            except OSError as exc:
                raise StoreError(f"cannot create the lease of {self.what}: {_safe(exc)}") from None
            self._epoch, self._token = top + 1, token
            self.took_over = top > 0  # a stale holder's: it may have left work half done
            # just created: no successor can exist yet. No beat is written now: until the
            # first one, a reader takes the lease's own "started" as its beat
            self._beat_at = time.monotonic()
            self._beat_written = False
            older = [e for e in epochs if e < self._epoch]
            self._delete(*(p for e in older for p in (self._lease(e), self._beat_file(e))))
            self._start_beating(token, f"lease {self.what}")
            return None
        raise StoreError(f"cannot take the lease of {self.what}: it keeps changing hands")

    def acquire(self, wait_s: float = 0.0, poll_s: float = 1.0) -> None:
        """Take the lease, waiting up to ``wait_s`` seconds; StoreLocked if it stays held."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise self.locked_error(holder)
            time.sleep(poll_s)

    def locked_error(self, holder: Holder) -> StoreLocked:
        """The one-line refusal for a lease that ``holder`` holds."""
        return StoreLocked(
            f"{self.what} is being written by {holder.describe()}; run again when it ends "
            f"(the lease of a writer that died expires after {self.stale_after_s:g} s)"
        )

    def check(self, within_s: float = 0.0) -> None:
        """StoreError unless this writer still holds its lease, looked up on the store unless
        it was seen held less than ``within_s`` ago (far below the 60 s expiry: a writer that
        was stopped for longer always looks again)."""
        now = time.monotonic()
        # no successor can take a lease whose beat is younger than its expiry: trust a beat
        # written less than half of it ago (the other half allows for clock skew between hosts)
        fresh = now - self._verified < within_s or now - self._beat_at < self.stale_after_s / 2
        if self._token is not None and not self._lost.is_set() and not fresh:
            if self._still_mine():
                self._verified = time.monotonic()
            else:
                self._lost.set()
        self.check_quick()

    def check_quick(self) -> None:
        """StoreError if the heartbeat already found the lease lost (no request)."""
        if self._token is None or self._lost.is_set():
            raise StoreError(
                f"lost the lease of {self.what} (another writer took it over as stale); "
                "this run stops so that two writers never mix results"
            )

    def release(self) -> None:
        """Give the lease up (never another holder's). A holder whose beat is younger than
        half the expiry still holds it (nobody may take it over before it expires): it
        deletes it without looking first, in one request."""
        if self._token is None:
            return
        self._stop_beating()
        young = time.monotonic() - self._beat_at < self.stale_after_s / 2
        if not self._lost.is_set() and (young or self._still_mine()):
            beat = [self._beat_file(self._epoch)] if self._beat_written else []
            self._delete(self._lease(self._epoch), *beat)
        self._token = None
        self._beat_at = float("-inf")

    # ------------------------------------------------------------------ internals

    def _lease(self, epoch: int) -> str:
        return f"{self.folder}/lease-{epoch:010d}"

    def _beat_file(self, epoch: int) -> str:
        return f"{self.folder}/beat-{epoch:010d}"

    def _epochs(self) -> list[int]:
        try:
            names = list_names(self.fs, self.folder, "lease-")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read the leases of {self.what}: {_safe(exc)}") from None
        found = (_LEASE.search(str(name)) for name in names)
        return [int(m.group(1)) for m in found if m]

    def _holder(self, epoch: int) -> Holder | None:
        try:
            data = json.loads(self.fs.cat_file(self._lease(epoch)))
            try:
                beat = float(json.loads(self.fs.cat_file(self._beat_file(epoch))))
            except (FileNotFoundError, ValueError):
                beat = float(data["started"])
            return Holder(str(data["host"]), int(data["pid"]), str(data["token"]),
                          float(data["started"]), beat)  # fmt: skip
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def _is_stale(self, holder: Holder) -> bool:
        return self._holder_is_stale(holder)

    def _still_mine(self) -> bool:
        try:
            data = json.loads(self.fs.cat_file(self._lease(self._epoch)))
        except (FileNotFoundError, ValueError):
            return False
        except OSError:
            return not self._lost.is_set()  # the store is unreachable: the heartbeat decides
        try:
            self.fs.cat_file(self._lease(self._epoch + 1))  # one GET (exists() may list too)
            successor = True
        except FileNotFoundError:
            successor = False
        except OSError:
            return not self._lost.is_set()  # the store is unreachable: the heartbeat decides
        return data.get("token") == self._token and not successor

    def _beat_once(self) -> None:
        """Write this holder's beat; it is trusted (no look before each step) only when the
        one before was still young when this one began: after a long gap (a pause), another
        writer may have taken over in between, and only a look can tell."""
        started = time.monotonic()  # the beat's age counts from before it was written
        self.fs.pipe_file(self._beat_file(self._epoch), json.dumps(time.time()).encode())
        self._beat_written = True
        if started - self._beat_at < self.stale_after_s / 2:
            self._beat_at = started

    def _beat(self) -> bool:
        # a holder whose last beat is younger than half the expiry still holds the lease (as
        # in check()): only after a longer gap (a pause) does it look before beating again
        young = time.monotonic() - self._beat_at < self.stale_after_s / 2
        if not young and not self._still_mine():
            return False
        try:
            self._beat_once()
        except OSError:
            pass  # a blip: the next beat tries again, staleness allows for it
        return True

    def _delete(self, *paths: str) -> None:
        """Delete these objects in one request (each may be gone already)."""
        if not paths:
            return
        try:
            self.fs.rm(list(paths))
        except (FileNotFoundError, OSError):
            pass


def list_names(fs: Any, folder: str, prefix: str = "") -> list[str]:
    """The objects below ``folder`` whose names start with ``prefix``, in one listing request
    where the filesystem can (s3fs's ``ls`` of a folder that holds nothing lists its parent
    too, and ``find`` asks for the folder itself)."""
    folder = folder.rstrip("/")
    try:
        found = fs.find(folder, prefix=prefix)
    except TypeError:  # a filesystem without find(prefix=…)
        found = fs.find(f"{folder}/")
    start = f"{fs._strip_protocol(folder)}/{prefix}"
    return [str(name) for name in found if str(name).startswith(start)]


def _safe(exc: BaseException) -> str:
    """An error's type and first line, for messages (fsspec errors never carry secrets, but
    keep it short)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
