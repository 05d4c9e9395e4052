"""Explaining one input with ReX, as a composition of explicit phases.

:func:`explain_input` runs them in order; other runs call the same phases instead of copying
them (a Dask task runs the target, store and search phases on their own, see
:mod:`rex_stream.distributed.tasks`):

1. :func:`predict_target` — the model's class for the unmodified input;
2. :func:`~rex_stream.runs.rex_store.open_store` — the store group, and the seed it settles;
3. :func:`check_setup` — warnings about the input's preparation (a few queries);
4. :func:`~rex_stream.runs.rex_search.search_iterations` — a range of iterations, each
   committed as it ends, resumed from what the store holds;
5. :func:`~rex_stream.runs.rex_extract.build_responsibility` — the map;
6. :func:`~rex_stream.runs.rex_extract.extract_explanation` — the explanation, through the
   strategy table;
7. :func:`evaluate_map` — insertion/deletion curves and ReX's analysis (``--analyse``);
8. :func:`~rex_stream.runs.rex_store.save_explanation` — map, masks and summary to the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.causal.analysis import analyse
from rex_stream.causal.baseline_check import check_baseline
from rex_stream.causal.insertion_deletion import Curves, insertion_deletion
from rex_stream.causal.search import IterationResult, iteration_mask_values, search_root
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.engine.scheduler import CountingEvaluator, Evaluator, Scheduler
from rex_stream.engine.session import open_engine
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge, probabilities_read_as_logits
from rex_stream.errors import InputError, raise_first_error
from rex_stream.modes import load_subject
from rex_stream.modes.context import with_context
from rex_stream.modes.image import imagenet_variant
from rex_stream.naming import check_name, input_name
from rex_stream.progress import Progress
from rex_stream.result import Explanation, RunStats
from rex_stream.runs.rex_extract import (
    Extracted,
    ExtractionInput,
    build_responsibility,
    empty_map_message,
    extract_explanation,
)
from rex_stream.runs.rex_search import Searched, search_iterations
from rex_stream.runs.rex_store import open_store, save_explanation

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


async def explain(
    source: str | Path | np.ndarray,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    backend_settings: BackendSettings | None = None,
) -> Explanation:
    """Explain the model's decision on ``source``.

    ``backend`` is a Backend or a spec (``model.onnx``, ``triton://…``, ``http://…``,
    ``python:module:function``); a spec is opened and closed here. With ``store``, every
    finished iteration is committed to a Zarr store and ``resume`` continues a killed run.
    """
    with raise_first_error():
        started = time.perf_counter()
        async with open_engine(backend, config, backend_settings) as engine:
            return await explain_input(
                source,
                engine.info,
                engine.scheduler,
                engine.config,
                store=store,
                resume=resume,
                overwrite=overwrite,
                on_progress=on_progress,
                started=started,
            )


async def explain_input(
    source: str | Path | np.ndarray,
    info: ModelInfo,
    scheduler: Scheduler,
    config: ExplainConfig,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    started: float | None = None,
    name: str | None = None,
    target: Target | None = None,
    answers: Evaluator | None = None,
) -> Explanation:
    """Explain one input through a scheduler that other inputs may share.

    ``name`` replaces the subject's name and is the store group's key as it is (see
    :mod:`rex_stream.naming`; by default the key comes from the file's stem). Stats count this
    input's queries; calls, batch fill and backend time are the shared scheduler's. ``target``
    is a target already predicted (a split run predicts it once, not once per task).
    ``answers`` is what the queries go through instead of ``scheduler`` itself (the targets
    of one detector answer share a :class:`~rex_stream.engine.shared_answers.SharedAnswers`).
    """
    started = time.perf_counter() if started is None else started
    subject = with_context(load_subject(source, info, config), info, config)
    if name is not None:
        subject.name = check_name(name)
    key = subject.name if name is not None else input_name(subject.name)
    search_root(subject.spatial_shape, config.search)  # a bad bounding box fails before queries
    report = on_progress or (lambda _: None)
    calls_before = scheduler.stats.calls
    evaluator = CountingEvaluator(scheduler if answers is None else answers)
    if target is None:
        target = await predict_target(subject, evaluator, config, info)
    known = target

    def phase(name: str, done: int) -> None:
        report(Progress.snapshot(name, done, config.search.iters, scheduler.stats, started, known))

    phase("target", 0)
    explanation_store, seed = open_store(
        store, key, subject, target, info, config, resume=resume, overwrite=overwrite
    )
    try:  # the store is closed here whatever happens: its lock is freed
        warnings: list[str] = []  # the checks' (in their order), then the map's
        checks = [0]  # queries the checks sent

        async def check() -> None:  # only warns: its round trip overlaps the search's
            tally = CountingEvaluator(evaluator)  # counts this task's queries only
            warnings[:0] = await check_setup(subject, tally, config, target)
            checks[0] = tally.queries

        _log_mask_sweep(subject, config, seed)
        async with anyio.create_task_group() as group:
            group.start_soon(check)
            searched = await search_iterations(
                subject,
                target,
                evaluator,
                config,
                seed,
                store=explanation_store,
                on_iteration=lambda done: phase("iteration", done),
                rows_at_once=lambda: scheduler.max_batch * scheduler.window.reach,
            )
        check_queries = checks[0]
        evaluator.join()  # what follows waits for the slowest iteration
        ordered = searched.ordered()
        responsibility = build_responsibility(subject, ordered, target, config)
        empty = empty_map_message(ordered, target)
        if empty is not None:
            logger.warning(empty)
            warnings.append(empty)
        if config.extraction.extract:
            phase("extraction", len(searched.results))
        given = ExtractionInput(subject, responsibility, target, evaluator, config, seed)
        extracted = await extract_explanation(given)
        if config.evaluation.analyse:
            phase("evaluation", len(searched.results))
        curves, analysis = await evaluate_map(given, extracted)
        result = Explanation(
            subject=subject,
            target=target,
            responsibility=responsibility,
            stats=_run_stats(evaluator, scheduler, calls_before, searched, check_queries, started),
            config=config,
            sufficiency=extracted.sufficiency,
            curves=curves,
            store=explanation_store.location if explanation_store else None,
            seed=seed,
            model=info.name,
            multi=extracted.multi,
            model_identity=dict(info.identity),
            warnings=warnings,
            complete=extracted.complete,
            analysis=analysis,
            mask_values=_swept(ordered),
        )
        if explanation_store is not None:
            await anyio.to_thread.run_sync(save_explanation, explanation_store, result)
    finally:
        if explanation_store is not None:
            explanation_store.close()
    phase("done", len(ordered))
    return result


async def check_setup(
    subject: Subject, evaluator: Evaluator, config: ExplainConfig, target: Target
) -> list[str]:
    """Warnings about how the input was prepared: an RGB model that looks as if it expects
    ImageNet-normalised input, a baseline the model finds telling (a few queries)."""
    warnings = await _check_normalisation(subject, evaluator, config, target)
    warnings += await check_baseline(subject, evaluator, config.scoring, target)
    return warnings


async def evaluate_map(
    given: ExtractionInput, extracted: Extracted
) -> tuple[Curves | None, dict[str, Any] | None]:
    """Insertion/deletion curves of the map and ReX's analysis of the map and explanations,
    when the config asks for them (``--analyse``); else nothing, at no query."""
    config = given.config
    if not config.evaluation.analyse:
        return None, None
    curves = await insertion_deletion(
        given.subject,
        given.responsibility,
        given.target,
        given.evaluator,
        config.evaluation,
        config.scoring,
    )
    multi, sufficiency = extracted.multi, extracted.sufficiency
    if multi is not None:
        masks = [(e.index, e.mask, e.confidence) for e in multi.kept]
    elif sufficiency is not None:
        masks = [(0, sufficiency.mask, sufficiency.confidence)]
    else:
        masks = []
    analysis = analyse(given.responsibility, masks, curves.insertion_auc, curves.deletion_auc)
    return curves, analysis


async def _check_normalisation(
    subject: Subject, evaluator: Evaluator, config: ExplainConfig, target: Target
) -> list[str]:
    """Warn (one extra query) when an RGB model looks as if it expects ImageNet-normalised
    input that the user did not ask for: normalised, it is clearly more confident."""
    variant = imagenet_variant(subject, config.image)
    if variant is None:
        return []
    scores = await evaluator.evaluate([lambda out: np.copyto(out, variant)])
    verdicts = judge(scores, config.scoring, target.classification)
    normalised = float(verdicts.confidences[0])
    same = int(verdicts.classes[0]) == target.classification
    if normalised < 0.5 or (same and normalised < target.confidence + 0.1):
        return []
    message = (
        f"the model may expect normalised input: with ImageNet's means/stds it predicts class "
        f"{int(verdicts.classes[0])} ({float(verdicts.confidences[0]):.2f}) instead of "
        f"{target.classification} ({target.confidence:.2f}); pass --means 0.485,0.456,0.406 "
        "--stds 0.229,0.224,0.225 (or [rex.onnx] means/stds in rex.toml) if it was trained so"
    )
    logger.warning(message)
    return [message]


async def predict_target(
    subject: Subject, scheduler: Evaluator, config: ExplainConfig, info: ModelInfo
) -> Target:
    """Classify the unmodified input; with a fixed ``target`` class, check it exists."""
    scores = await scheduler.evaluate([lambda out: np.copyto(out, subject.tensor)])
    doubled = probabilities_read_as_logits(scores, config.scoring)
    if doubled is not None:
        logger.warning(doubled)
    wanted = config.scoring.target
    classes = scores.shape[1] if scores.shape[1] > 1 else 2
    if wanted is not None:
        if not 0 <= wanted < classes:
            raise InputError(
                f"class index {wanted} is out of range: the model has {classes} classes"
            )
        verdicts = judge(scores, config.scoring, wanted)
        return Target(wanted, float(verdicts.target_confidences[0]))
    verdicts = judge(scores, config.scoring, None)
    return Target(int(verdicts.classes[0]), float(verdicts.confidences[0]))


def _log_mask_sweep(subject: Subject, config: ExplainConfig, seed: int) -> None:
    """Log the iterations' own mask values (ReX's ``random``/``linear``) as ReX does."""
    kind = config.image.mask_value
    values = iteration_mask_values(subject, kind, config.search.iters, seed)
    if values is None:
        if isinstance(kind, str) and kind in ("random", "linear"):
            logger.warning(
                "mask value %s is not swept: masked elements take this mode's own baseline "
                "(a context input, a reference table or a noise floor)",
                kind,
            )
        return
    for index, value in enumerate(values):
        logger.info("iteration %d masks with %.6g (mask value %s)", index, value, kind)


def _swept(ordered: list[IterationResult]) -> list[float] | None:
    """Each iteration's own mask value, when the run swept it."""
    values = [r.mask_value for r in ordered if r.mask_value is not None]
    return values or None


def _run_stats(
    evaluator: CountingEvaluator,
    scheduler: Scheduler,
    calls_before: int,
    searched: Searched,
    check_queries: int,
    started: float,
) -> RunStats:
    """What the run cost and found (calls, batch fill and backend time are the scheduler's)."""
    ordered = searched.ordered()
    box_total = sum(r.box_area_sum for r in ordered)
    box_count = sum(r.box_count for r in ordered)
    return RunStats(
        queries=evaluator.queries,
        calls=scheduler.stats.calls - calls_before,
        mean_batch=round(scheduler.stats.mean_batch, 2),
        passing=sum(r.passing for r in ordered),
        failing=sum(r.failing for r in ordered),
        max_depth=max((r.depth for r in ordered), default=0),
        avg_box_size=round(box_total / box_count, 2) if box_count else 0.0,
        iterations=len(ordered),
        resumed_iterations=searched.resumed,
        wall_s=round(time.perf_counter() - started, 3),
        backend_s=round(scheduler.stats.backend_s, 3),
        check_queries=check_queries,
        round_trips=evaluator.rounds,
    )
