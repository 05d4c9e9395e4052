"""Records that end close together, written to an object store as one object.

On a local disk a record is two small files; on an object store every object is a request
(tens of milliseconds, and client CPU). A writer under a lease hands its records to a
:class:`RecordBatcher`, which holds them back for up to :data:`COALESCE_S` after the first of
them and then writes them all as one create-only *batch* object (a freshly named pack). An
input that finishes within that time writes no record object at all: its records go straight
into its pack (:meth:`~rex_stream.engine.object_store.ObjectGroup.finish`).

What a ``kill -9`` costs: the records held back (at most :data:`COALESCE_S` of work), which
the resumed run searches again — with the same seeds, so it ends with the same result. Every
batch that exists is whole (one PUT) and each of its records carries its checksum, so a
resume takes exactly the records that were written. A clean stop (:meth:`flush`, from the
store's ``close``) writes what is held.

The thread that writes the batches belongs to its batcher: started with the first record,
stopped and joined by :meth:`stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from rex_stream.errors import StoreError

logger = logging.getLogger(__name__)

#: How long a record may be held back before it is written (with the others held).
COALESCE_S = 1.0

#: Writes one batch: the kind and the encoded records by index.
WriteBatch = Callable[[str, Mapping[int, bytes]], None]


class RecordBatcher:
    """Holds records back for up to :data:`COALESCE_S`, then writes them as one batch per kind."""

    def __init__(self, write: WriteBatch, coalesce_s: float | None = None) -> None:
        self._write = write
        self.coalesce_s = COALESCE_S if coalesce_s is None else coalesce_s
        self._pending: dict[str, dict[int, bytes]] = {}
        self._since = 0.0  # when the oldest record held back arrived (monotonic)
        self._changed = threading.Condition()
        self._writing = threading.Lock()  # one batch write at a time
        self._stopping = False
        self._thread: threading.Thread | None = None

    def add(self, kind: str, index: int, blob: bytes) -> None:
        """Hold one encoded record back (written within :data:`COALESCE_S`)."""
        with self._changed:
            if self._stopping:
                raise StoreError("records arrive after the store was closed")
            if not self._pending:
                self._since = time.monotonic()
            self._pending.setdefault(kind, {})[index] = blob
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rex-stream record batches", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def held(self) -> int:
        """How many records are held back now."""
        with self._changed:
            return sum(len(r) for r in self._pending.values())

    def stop(self) -> None:
        """Stop writing in the background (a batch being written is finished first); what is
        still held stays for :meth:`flush` or is dropped (a finished input packs it)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def flush(self) -> None:
        """Write every record held back now (StoreError when it cannot: they are held again)."""
        with self._writing:
            taken = self._take()
            try:
                for kind in sorted(taken):
                    self._write(kind, taken[kind])
                    del taken[kind]
            except (OSError, StoreError) as exc:
                self._hold_again(taken)
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"cannot write {sum(map(len, taken.values()))} records: "
                                 f"{type(exc).__name__}: {exc}") from None  # fmt: skip

    def _hold_again(self, taken: Mapping[str, Mapping[int, bytes]]) -> None:
        with self._changed:
            for kind, blobs in taken.items():
                for index, blob in blobs.items():
                    self._pending.setdefault(kind, {}).setdefault(index, blob)
            self._since = time.monotonic()

    def discard(self) -> None:
        """Forget the records held back (they were written another way: in a pack)."""
        self._take()

    def _take(self) -> dict[str, dict[int, bytes]]:
        with self._changed:
            taken, self._pending = self._pending, {}
            return taken

    def _run(self) -> None:
        warned = False
        while True:
            with self._changed:
                while not self._pending and not self._stopping:
                    self._changed.wait()
                while not self._stopping:
                    left = self._since + self.coalesce_s - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                if self._stopping:
                    return
            try:
                self.flush()
            except StoreError as exc:  # held again: the next round (or the close) tries again
                if not warned:
                    logger.warning("%s; trying again", exc)
                warned = True
