"""The black-box side of training: each input's scores, unmasked and under random masks.

Input ``i`` is scored unmasked and under ``masks_per_input`` masks that keep a random number of
regions (log-uniform in ``1 … R``), drawn from ``(seed, i)``. Scores are committed to the store per
chunk of inputs as records of kind ``"l2x_scores"``, so a killed training run asks the model
only for the chunks it had not finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import anyio
import numpy as np

from rex_stream.config import ScoringConfig
from rex_stream.engine.regions import Regions
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import to_probabilities
from rex_stream.errors import BackendError

SCORES = "l2x_scores"
_MASK_SALT = 0x12C5


def random_masks(seed: int, index: int, count: int, regions: int) -> np.ndarray:
    """``count`` masks over ``regions`` for input ``index``: log-uniform sizes in ``1 … R``
    (small selections, where an explainer works, are as common as large ones), random
    regions."""
    rng = np.random.default_rng([seed, index, _MASK_SALT])
    sizes = np.clip(np.round(np.exp(rng.uniform(0, np.log(regions), count))), 1, regions)
    order = np.argsort(rng.random((count, regions)), axis=1)
    return order < sizes[:, None]


def probabilities(scores: np.ndarray, scoring: ScoringConfig) -> np.ndarray:
    """Class probabilities of score rows; class labels or non-finite scores are errors."""
    raw = np.asarray(scores)
    if raw.ndim == 2 and raw.shape[1] == 1 and (raw > 1).any() and (raw == np.round(raw)).all():
        raise BackendError(
            "the model returns class labels, not scores; L2X needs a score per class"
        )
    return to_probabilities(raw, scoring)


async def score_masks(
    subjects: Sequence[Subject],
    masks: Sequence[np.ndarray],
    regions: Regions,
    evaluator: Evaluator,
    scoring: ScoringConfig,
) -> np.ndarray:
    """Probabilities of every subject under each of its masks (rows in order): one block per
    subject, so the scheduler handles a subject's rows as one request."""
    tables: list[np.ndarray] = [np.empty(0)] * len(subjects)

    async def one(position: int) -> None:
        write = partial(_write_masks, subjects[position], regions, masks[position])
        tables[position] = await evaluator.evaluate_block(write, len(masks[position]))

    async with anyio.create_task_group() as group:
        for position in range(len(subjects)):
            group.start_soon(one, position)
    return probabilities(np.concatenate(tables), scoring)


def _write_masks(
    subject: Subject,
    regions: Regions,
    masks: np.ndarray,
    out: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """Rows ``start … stop − 1`` of a subject's masked inputs (through its mode's own fill)."""
    for row, mask in zip(out, masks[start:stop]):
        subject.fill_mask(row, regions.expand(mask))


async def training_scores(
    subjects: Sequence[Subject],
    regions: Regions,
    evaluator: Evaluator,
    scoring: ScoringConfig,
    seed: int,
    masks_per_input: int,
    chunk_inputs: int,
    store: ExplanationStore | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(masks, probabilities)``: per input ``1 + masks_per_input`` rows, the first unmasked.

    Shapes ``(N, 1 + M, R)`` and ``(N, 1 + M, classes)``. Chunks run concurrently.
    """
    count = len(subjects)
    rows = 1 + masks_per_input
    masks = np.stack(
        [
            np.concatenate(
                [
                    np.ones((1, regions.count), bool),
                    random_masks(seed, i, masks_per_input, regions.count),
                ]
            )
            for i in range(count)
        ]
    )
    done: dict[int, Record] = {}
    if store is not None:
        done = await anyio.to_thread.run_sync(store.committed, SCORES)
    chunks = range(0, count, chunk_inputs)
    tables: dict[int, np.ndarray] = {}

    async def one(first: int) -> None:
        index = first // chunk_inputs
        if index in done and done[index].table.shape[0] == min(chunk_inputs, count - first) * rows:
            tables[index] = done[index].table
            return
        last = min(count, first + chunk_inputs)
        table = await score_masks(
            subjects[first:last], list(masks[first:last]), regions, evaluator, scoring
        )
        if store is not None:
            await anyio.to_thread.run_sync(store.commit, SCORES, Record(index, table))
        tables[index] = table

    async with anyio.create_task_group() as group:
        for first in chunks:
            group.start_soon(one, first)
    scores = np.concatenate([tables[i] for i in sorted(tables)])
    return masks, scores.reshape(count, rows, -1)
