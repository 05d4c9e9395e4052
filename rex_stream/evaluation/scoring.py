"""Scoring rows through the shared scheduler, each distinct row once.

Every metric of every (input, attribution) sends its rows here. A row's key names its content,
so f(x) is predicted once per input however many metrics ask, Infidelity's repeats and
identical rankings cost nothing, and a row another task is already scoring is awaited, not
sent again. Per row only the target class's logit and probability and whether it is the top
class are kept (24 bytes).
Plans hand their rows over in chunks, so no metric ever holds all of its rows at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

import anyio
import numpy as np

from rex_stream.config import ScoringConfig
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.verdicts import judge, to_probabilities
from rex_stream.errors import InputError
from rex_stream.evaluation.case import Row

#: Columns kept per row: the target's logit and probability, and 1.0 if it is the top class.
LOGIT, PROBABILITY, TOP = 0, 1, 2
COLUMNS = 3

#: Answer rows and the target → the kept ``(n, COLUMNS)`` values (a detector's rows, say).
Columns = Callable[[np.ndarray, int], np.ndarray]

#: Chunks of one plan being scored at once (the next is built meanwhile).
CHUNKS_AHEAD = 2


class _Pending:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None


class RowScorer:
    """Score rows through an evaluator with a content cache; counts what it sends."""

    def __init__(
        self, evaluator: Evaluator, scoring: ScoringConfig, columns: Columns | None = None
    ) -> None:
        self._evaluator = evaluator
        self._scoring = scoring
        #: how answer rows become the kept columns (default: a classifier's target scores)
        self._columns_of = columns
        self._scores: dict[tuple[object, ...], np.ndarray] = {}
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self.sent = 0
        self.requested = 0
        self.answered = 0
        #: called after every scored chunk (progress displays)
        self.on_scored: Callable[[], None] | None = None

    @property
    def chunk(self) -> int:
        """Rows a plan hands over at once: enough to fill several batches."""
        return max(64, 8 * self._evaluator.max_batch)

    async def score(self, rows: Sequence[Row], target: int) -> np.ndarray:
        """``(len(rows), 3)``: the target's logit, probability and top-class flag per row."""
        self.requested += len(rows)
        out = np.empty((len(rows), COLUMNS), dtype=np.float64)
        fresh: list[tuple[int, Row]] = []
        waiting: list[tuple[int, tuple[object, ...]]] = []
        for index, row in enumerate(rows):
            key = (target, *row.key)  # the stored columns are the target's
            known = self._scores.get(key)
            if known is not None:
                out[index] = known
            elif key in self._pending:
                waiting.append((index, key))
            else:
                self._pending[key] = _Pending()
                fresh.append((index, row))
        if fresh:
            await self._send(fresh, target, out)
        for index, key in waiting:
            pending = self._pending.get(key)
            if pending is not None:
                await pending.done.wait()
                if pending.error is not None:
                    raise pending.error
            out[index] = self._scores[key]
        self.answered += len(rows)
        if self.on_scored is not None:
            self.on_scored()
        return out

    async def classify(self, row: Row, wanted: int | None) -> int:
        """Predict the class of ``row`` (or check ``wanted`` exists), caching its scores."""
        raw = np.asarray(await self._evaluator.evaluate([row.fill]), np.float64)
        self.sent += 1
        self.requested += 1
        classes = raw.shape[1] if raw.shape[1] > 1 else 2
        if wanted is not None and not 0 <= wanted < classes:
            raise InputError(
                f"class index {wanted} is out of range: the model has {classes} classes"
            )
        target = wanted if wanted is not None else int(judge(raw, self._scoring, None).classes[0])
        key = (target, *row.key)
        self._scores[key] = self._columns(raw, target)[0]
        return target

    def _columns(self, raw: np.ndarray, target: int) -> np.ndarray:
        if self._columns_of is not None:
            return self._columns_of(raw, target)
        values = np.empty((raw.shape[0], COLUMNS), dtype=np.float64)
        values[:, LOGIT] = np.asarray(raw, np.float64)[:, min(target, raw.shape[1] - 1)]
        probabilities = to_probabilities(raw, self._scoring)
        values[:, PROBABILITY] = probabilities[:, target]
        values[:, TOP] = judge(raw, self._scoring, None).classes == target
        return values

    async def score_all(self, rows: Iterable[Row], target: int) -> np.ndarray:
        """Score a (lazy) sequence of rows chunk by chunk, in order.

        Chunks are built in a worker thread (a plan's rows can cost real work, such as
        Quantus' full permutation per random subset) while up to :data:`CHUNKS_AHEAD` earlier
        chunks are being scored, so building never stalls the event loop or the batches.
        """
        iterator: Iterator[Row] = iter(rows)
        parts: list[np.ndarray] = [np.empty((0, COLUMNS))]
        slots = anyio.Semaphore(CHUNKS_AHEAD)

        async def score_chunk(position: int, chunk: list[Row]) -> None:
            try:
                parts[position] = await self.score(chunk, target)
            finally:
                slots.release()

        async with anyio.create_task_group() as group:
            while True:
                await slots.acquire()
                chunk = await anyio.to_thread.run_sync(_take, iterator, self.chunk)
                if not chunk:
                    slots.release()
                    break
                parts.append(parts[0])
                group.start_soon(score_chunk, len(parts) - 1, chunk)
        return np.concatenate(parts)

    async def _send(self, fresh: list[tuple[int, Row]], target: int, out: np.ndarray) -> None:
        keys = [(target, *row.key) for _, row in fresh]
        try:
            raw = await self._evaluator.evaluate([row.fill for _, row in fresh])
            self.sent += len(fresh)
            values = self._columns(raw, target)
        except BaseException as exc:
            for key in keys:
                pending = self._pending.pop(key)
                pending.error = exc
                pending.done.set()
            raise
        for (index, _), key, value in zip(fresh, keys, values):
            self._scores[key] = value
            out[index] = value
            self._pending.pop(key).done.set()


def _take(rows: Iterator[Row], count: int) -> list[Row]:
    return list(islice(rows, count))


def target_scores(values: np.ndarray, softmax: bool) -> np.ndarray:
    """The probability column (softmax on) or the logit column (off)."""
    return values[:, PROBABILITY if softmax else LOGIT]
