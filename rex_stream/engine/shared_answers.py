"""Answers shared by several searches of one input: a mutant that more than one of them asks
for goes to the model once.

Searches of the same input with the same seed split the same boxes (a box's split is a pure
function of the seed, the input and the box), so several targets of one input (the detections
of a detector's answer) ask for many identical mutants: every iteration's first level, and the
deeper levels wherever their targets lie in the same region. A :class:`KeyedFill` names its
mutant; :class:`SharedAnswers` asks the wrapped evaluator only for keys it has neither answered
nor sent, and hands each search the same answer row. Each search still judges the rows by its
own rule, so its verdicts are those it would have had alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import anyio
import numpy as np

from rex_stream.engine.requests import BlockWrite, Fill

#: answer rows kept for later askers, in bytes (the oldest are forgotten first)
DEFAULT_BUDGET_BYTES = 64 << 20


class KeyedFill:
    """A fill whose mutant has a name, :attr:`key`: two fills with equal keys write equal
    rows. Subclasses write the row (``__call__``) and make the key."""

    __slots__ = ()

    def __call__(self, out: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def key(self) -> Hashable:
        """The mutant's name."""
        raise NotImplementedError


class SharedAnswers:
    """An evaluator over ``inner`` that asks for each keyed mutant once: later askers get the
    answer row already in (or wait for the call already sent). Fills without a key, and
    blocks, pass straight through."""

    def __init__(self, inner: object, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._inner = inner
        self._budget = budget_bytes
        self._known: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._known_bytes = 0
        self._sent: dict[Hashable, anyio.Event] = {}
        self.asked = 0  # keyed mutants asked for
        self.shared = 0  # of which answered without a query of their own

    @property
    def max_batch(self) -> int:
        """The wrapped evaluator's batch size."""
        return self._inner.max_batch  # type: ignore[attr-defined,no-any-return]

    async def evaluate(self, fills: Sequence[Fill]) -> np.ndarray:
        """One answer row per fill, in order; each distinct keyed mutant asked once."""
        rows: list[np.ndarray | None] = [None] * len(fills)
        fresh: list[Fill] = []
        fresh_at: list[tuple[int, Hashable | None]] = []
        waiting: list[tuple[int, Hashable, anyio.Event]] = []
        answered = anyio.Event()  # set when this call's fresh mutants are in (or failed)
        for at, fill in enumerate(fills):
            key = fill.key if isinstance(fill, KeyedFill) else None
            if key is None:
                fresh.append(fill)
                fresh_at.append((at, None))
                continue
            self.asked += 1
            known = self._known.get(key)
            if known is not None:
                self.shared += 1
                rows[at] = known
                continue
            sent = self._sent.get(key)
            if sent is not None:
                self.shared += 1
                waiting.append((at, key, sent))
                continue
            self._sent[key] = answered
            fresh.append(fill)
            fresh_at.append((at, key))
        if len(fresh) == len(fills):  # nothing shared: the answer as it came
            return await self._answer(fresh, fresh_at, answered)
        if fresh:
            answers = await self._answer(fresh, fresh_at, answered)
            for (at, _), answer in zip(fresh_at, answers):
                rows[at] = answer
        for at, key, sent in waiting:
            await sent.wait()
            known = self._known.get(key)
            if known is None:  # its asker failed, or it was forgotten already: ask again
                known = (await self.evaluate([fills[at]]))[0]
            rows[at] = known
        return np.stack(rows)  # type: ignore[arg-type]

    async def _answer(
        self,
        fresh: list[Fill],
        fresh_at: list[tuple[int, Hashable | None]],
        answered: anyio.Event,
    ) -> np.ndarray:
        """Ask the wrapped evaluator for ``fresh`` and remember the keyed answers."""
        try:
            answers: np.ndarray = await self._inner.evaluate(fresh)  # type: ignore[attr-defined]
            for (_, key), answer in zip(fresh_at, answers):
                if key is not None:
                    self._remember(key, answer)
            return answers
        finally:  # on failure too: its waiters then ask for themselves
            for _, key in fresh_at:
                if key is not None:
                    del self._sent[key]
            answered.set()

    async def evaluate_block(self, write: BlockWrite, count: int) -> np.ndarray:
        """A block of rows, straight through (blocks carry no keys)."""
        return await self._inner.evaluate_block(write, count)  # type: ignore[attr-defined,no-any-return]

    def _remember(self, key: Hashable, row: np.ndarray) -> None:
        # a view of its batch's answer: every keyed row of that batch is kept alike
        self._known[key] = row
        self._known_bytes += row.nbytes
        while self._known_bytes > self._budget and self._known:
            _, old = self._known.popitem(last=False)
            self._known_bytes -= old.nbytes
