"""SharedAnswers: a keyed mutant goes to the wrapped evaluator once, whoever asks and when;
unkeyed fills pass through; a failed call's waiters ask again; old answers are forgotten
within the budget. (The scheduler side is a counting stand-in: this is the engine's unit.)"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import anyio
import numpy as np
import pytest

from rex_stream.engine.requests import Fill
from rex_stream.engine.shared_answers import KeyedFill, SharedAnswers


class Value(KeyedFill):
    """Writes ``value`` everywhere; named by it."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, out: np.ndarray) -> None:
        out[...] = self.value

    @property
    def key(self) -> Hashable:
        return ("value", self.value)


class Counting:
    """Answers each fill with the value it writes (one row of 2), after ``delay_s``; records
    every fill it was asked for."""

    max_batch = 8

    def __init__(self, delay_s: float = 0.0, fail_first: bool = False) -> None:
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.asked: list[float] = []

    async def evaluate(self, fills: Sequence[Fill]) -> np.ndarray:
        rows = np.zeros((len(fills), 2))
        for row, fill in zip(rows, fills):
            fill(row)
        self.asked.extend(rows[:, 0].tolist())
        await anyio.sleep(self.delay_s)
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("the first call fails")
        return rows


def test_a_keyed_mutant_is_asked_for_once_and_unkeyed_fills_always() -> None:
    inner = Counting()
    shared = SharedAnswers(inner)

    async def main() -> None:
        first = await shared.evaluate([Value(1), Value(2), lambda out: out.fill(7)])
        second = await shared.evaluate([Value(2), Value(3), Value(1), lambda out: out.fill(7)])
        assert first[:, 0].tolist() == [1, 2, 7]
        assert second[:, 0].tolist() == [2, 3, 1, 7]

    anyio.run(main)
    assert inner.asked == [1, 2, 7, 3, 7]
    assert (shared.asked, shared.shared) == (5, 2)
    assert shared.max_batch == 8


def test_concurrent_askers_wait_for_the_call_already_sent() -> None:
    inner = Counting(delay_s=0.05)
    shared = SharedAnswers(inner)
    answers: dict[str, np.ndarray] = {}

    async def ask(name: str, values: list[float]) -> None:
        answers[name] = await shared.evaluate([Value(v) for v in values])

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(ask, "a", [1.0, 2.0, 3.0])
            await anyio.sleep(0.01)  # a's call is in flight
            group.start_soon(ask, "b", [3.0, 4.0, 1.0, 4.0])

    anyio.run(main)
    assert sorted(inner.asked) == [1, 2, 3, 4]  # 4 twice in one call: asked once
    assert answers["b"][:, 0].tolist() == [3, 4, 1, 4]


def test_the_waiters_of_a_failed_call_ask_for_themselves() -> None:
    inner = Counting(delay_s=0.05, fail_first=True)
    shared = SharedAnswers(inner)
    outcome: dict[str, object] = {}

    async def ask(name: str) -> None:
        try:
            outcome[name] = (await shared.evaluate([Value(5.0)]))[:, 0].tolist()
        except RuntimeError as error:
            outcome[name] = str(error)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(ask, "first")
            await anyio.sleep(0.01)
            group.start_soon(ask, "waiter")

    anyio.run(main)
    assert outcome == {"first": "the first call fails", "waiter": [5.0]}
    assert inner.asked == [5.0, 5.0]


@pytest.mark.parametrize("budget_rows", [1, 3])
def test_old_answers_are_forgotten_within_the_budget(budget_rows: int) -> None:
    inner = Counting()
    shared = SharedAnswers(inner, budget_bytes=budget_rows * 2 * 8)

    async def main() -> None:
        await shared.evaluate([Value(1), Value(2), Value(3)])
        await shared.evaluate([Value(1)])

    anyio.run(main)
    # with room for one row only the newest (3) is known, so 1 is asked for again
    assert inner.asked == ([1, 2, 3, 1] if budget_rows == 1 else [1, 2, 3])
