"""The search's next level starts before its level is fully scored: the results must not move.

Real onnxruntime sessions (tests/onnx_models.py) behind the real scheduler; each case runs the
same iteration with early next-level starts and with whole-level steps, at several batch sizes.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream import ExplainConfig, explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.causal.search import IterationResult, input_key, run_iteration
from rex_stream.config import QueueStyle, SchedulerConfig, ScoringConfig, SearchConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import CountingEvaluator, Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge
from rex_stream.modes import load_subject


def _iteration(
    model: Path, image: Path, search: SearchConfig, batch: int, *, early: bool, index: int
) -> tuple[IterationResult, int]:
    """One iteration through a real session: its result and the rounds on its chain."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model))

    async def score(rows: np.ndarray) -> np.ndarray:
        await anyio.sleep(0.001 * (len(rows) % 3))  # batches come back out of order
        return session.run(None, {"input": rows})[0]

    backend = PythonBackend(score, (3, 32, 32), max_batch=batch, max_inflight=4)
    info = ModelInfo("tiny", "input", (3, 32, 32))
    subject: Subject = load_subject(image, info, ExplainConfig())
    scoring = ScoringConfig()

    async def run() -> tuple[IterationResult, int]:
        async with Scheduler(backend, SchedulerConfig(max_batch=batch, linger_ms=0)) as sched:
            counting = CountingEvaluator(sched)
            scores = await counting.evaluate([lambda out: np.copyto(out, subject.tensor)])
            verdicts = judge(scores, scoring, None)
            target = Target(int(verdicts.classes[0]), float(verdicts.confidences[0]))
            result = await run_iteration(
                index,
                subject,
                target,
                counting,
                search,
                scoring,
                5,
                input_key(subject),
                early=early,
            )
            return result, counting.rounds

    return anyio.run(run)


def _same(a: IterationResult, b: IterationResult) -> None:
    assert (a.passing, a.failing, a.depth, a.box_count) == (
        b.passing,
        b.failing,
        b.depth,
        b.box_count,
    )
    assert a.box_area_sum == b.box_area_sum
    for field in ("start", "stop", "classes", "amount"):
        assert np.array_equal(getattr(a.ledger, field), getattr(b.ledger, field)), field


@pytest.mark.parametrize(
    "search",
    [
        SearchConfig(min_box_size=4),
        SearchConfig(min_box_size=4, queue_len=3),
        SearchConfig(min_box_size=4, queue_style=QueueStyle.ALL, search_limit=300),
        SearchConfig(min_box_size=4, queue_style=QueueStyle.INTERSECTION, queue_len=3),
        SearchConfig(min_box_size=4, queue_style=QueueStyle.DC, search_limit=300),
        SearchConfig(min_box_size=4, weighted=True, concentrate=True),
    ],
    ids=["area-1", "area-3", "all", "intersection", "dc", "weighted"],
)
@pytest.mark.parametrize("batch", [1, 7])
def test_early_next_level_gives_the_same_iteration(
    tiny_cnn: Path, tiny_image: Path, search: SearchConfig, batch: int
) -> None:
    for index in (0, 3):
        reference, whole_rounds = _iteration(
            tiny_cnn, tiny_image, search, 64, early=False, index=index
        )
        early, early_rounds = _iteration(
            tiny_cnn, tiny_image, search, batch, early=True, index=index
        )
        _same(early, reference)
        assert early.depth >= 1
        # the chain of rounds is the same: target + one per level, however it was scored
        assert early_rounds == whole_rounds


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_explanation_is_the_same_across_batch_sizes_and_adaptive_inflight(
    tiny_cnn: Path, tiny_image: Path, batch: int
) -> None:
    settings = {"iters": 5, "seed": 3, "min_box_size": 4, "analyse": False}
    reference = explain_sync(tiny_image, str(tiny_cnn), max_batch=16, max_inflight=1, **settings)
    candidate = explain_sync(
        tiny_image,
        str(tiny_cnn),
        max_batch=batch,
        max_inflight=3,
        adaptive_inflight=True,
        **settings,
    )
    assert np.array_equal(candidate.responsibility, reference.responsibility)
    assert candidate.mask is not None and reference.mask is not None
    assert np.array_equal(candidate.mask, reference.mask)
    assert candidate.stats.round_trips == reference.stats.round_trips
    # target + at least one level per iteration + at least one extraction round
    assert candidate.stats.round_trips >= 1 + candidate.stats.max_depth + 1


def test_round_trips_count_each_input_alone(tiny_cnn: Path, tiny_image: Path) -> None:
    """Two runs in one task: the second's chain does not start where the first ended."""
    from rex_stream import explain

    config = ExplainConfig().with_overrides(iters=2, seed=3, min_box_size=4, analyse=False)

    async def twice() -> tuple[int, int]:
        first = await explain(tiny_image, str(tiny_cnn), config)
        second = await explain(tiny_image, str(tiny_cnn), config)
        return first.stats.round_trips, second.stats.round_trips

    first, second = anyio.run(twice)
    assert first == second > 2
