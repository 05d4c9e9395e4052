"""What the scheduler's batches are made of: a request's rows (a :class:`Ticket` awaiting its
scores), the :class:`Segment` of those rows waiting for (or placed in) a batch, and the
:class:`Batch` one backend call scores. Rows are described by fill functions or block writers
and only written into a batch buffer when the batch is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import numpy as np

from rex_stream.errors import BackendError

Fill = Callable[[np.ndarray], None]

#: ``write(out, start, stop)`` writes rows ``start … stop − 1`` of a block into ``out``
#: (``stop − start`` rows of one batch buffer); it must write the same rows whatever the split.
BlockWrite = Callable[[np.ndarray, int, int], None]


class Ticket:
    """The score rows of one ``evaluate`` call (or block), filled in as batches complete."""

    __slots__ = ("cancelled", "count", "done", "error", "remaining", "scores")

    def __init__(self, count: int) -> None:
        self.count = count
        self.scores: np.ndarray | None = None
        self.remaining = count
        self.error: BaseException | None = None
        self.cancelled = False
        self.done = anyio.Event()

    @property
    def dropped(self) -> bool:
        """Nobody waits for the rest of these rows (failed or cancelled)."""
        return self.error is not None or self.cancelled

    def deliver(self, start: int, rows: np.ndarray) -> None:
        if self.scores is None:
            self.scores = np.empty((self.count, *rows.shape[1:]), dtype=rows.dtype)
        if rows.shape[1:] != self.scores.shape[1:]:
            self.fail(
                BackendError(
                    f"the backend returned score rows of shape {rows.shape[1:]} after "
                    f"{self.scores.shape[1:]} for the same request"
                )
            )
            return
        self.scores[start : start + len(rows)] = rows
        self.remaining -= len(rows)
        if self.remaining == 0:
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.done.set()


class Segment:
    """Rows ``start … stop − 1`` of one request, waiting for (or placed in) a batch."""

    __slots__ = ("start", "stop", "ticket", "write")

    def __init__(self, write: BlockWrite, ticket: Ticket, start: int, stop: int) -> None:
        self.write = write
        self.ticket = ticket
        self.start = start
        self.stop = stop

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def split(self, rows: int) -> tuple[Segment, Segment]:
        """The first ``rows`` rows, and the rest."""
        middle = self.start + rows
        return (
            Segment(self.write, self.ticket, self.start, middle),
            Segment(self.write, self.ticket, middle, self.stop),
        )


class Batch:
    """The segments one backend call scores, ``rows`` rows in all."""

    __slots__ = ("rows", "segments")

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.rows = 0


def write_fills(fills: Sequence[Fill], out: np.ndarray, start: int, stop: int) -> None:
    """A list of per-row fills as a block."""
    for row, fill in zip(out, fills[start:stop]):
        fill(row)


def fill_all(batch: Batch, view: np.ndarray) -> None:
    """Write every segment's rows into its slice of the batch buffer."""
    offset = 0
    for segment in batch.segments:
        segment.write(view[offset : offset + segment.rows], segment.start, segment.stop)
        offset += segment.rows
