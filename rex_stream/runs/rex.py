"""Explaining one input end to end: target, concurrent searches, store, map, extraction."""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.causal.analysis import analyse
from rex_stream.causal.baseline_check import check_baseline
from rex_stream.causal.complete import CompleteExplanation, extract_complete
from rex_stream.causal.extraction import (
    LARGE_INPUT_ELEMENTS,
    Sufficiency,
    extract_contrastive,
    extract_global,
    extract_spatial,
)
from rex_stream.causal.insertion_deletion import insertion_deletion
from rex_stream.causal.multi import MultiExplanation, extract_multi
from rex_stream.causal.negative import negative_responsibility
from rex_stream.causal.records import check_mask_values, commit_iteration, committed_iterations
from rex_stream.causal.responsibility import build_map, build_map_chunked, normalise
from rex_stream.causal.search import (
    IterationResult,
    input_key,
    iteration_mask_values,
    run_iteration,
    search_root,
)
from rex_stream.config import Distribution, ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.engine.scheduler import CountingEvaluator, Evaluator, Scheduler
from rex_stream.engine.session import backend_for_run
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge
from rex_stream.errors import InputError, StoreError, raise_first_error
from rex_stream.modes import load_subject
from rex_stream.modes.context import with_context
from rex_stream.modes.image import imagenet_variant
from rex_stream.naming import check_name, input_name
from rex_stream.progress import Progress
from rex_stream.result import Explanation, RunStats

if sys.version_info < (3, 11):  # pragma: no cover
    pass

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]

#: seconds between live progress snapshots while iterations run
PROGRESS_TICK_S = 0.5


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
        async with backend_for_run(backend, config or ExplainConfig(), backend_settings) as (
            opened,
            resolved,
        ):
            async with Scheduler(opened, resolved.scheduler) as scheduler:
                return await explain_input(
                    source,
                    opened.info,
                    scheduler,
                    resolved,
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
) -> Explanation:
    """Explain one input through a scheduler that other inputs may share.

    ``name`` replaces the subject's name and is the store group's key as it is (see
    :mod:`rex_stream.naming`; by default the key comes from the file's stem). Stats count this
    input's queries; calls, batch fill and backend time are the shared scheduler's. ``target``
    is a target already predicted (a split run predicts it once, not once per task).
    """
    opened: list[ExplanationStore] = []  # closed here whatever happens: the lock is freed
    try:
        return await _explain_input(
            source,
            info,
            scheduler,
            config,
            store=store,
            resume=resume,
            overwrite=overwrite,
            on_progress=on_progress,
            started=started,
            name=name,
            target=target,
            opened=opened,
        )
    finally:
        for held in opened:
            held.close()


async def _explain_input(
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
    opened: list[ExplanationStore],
) -> Explanation:
    """:func:`explain_input`; the store it opens goes into ``opened``."""
    started = time.perf_counter() if started is None else started
    subject = with_context(load_subject(source, info, config), info, config)
    if name is not None:
        subject.name = check_name(name)
    key = subject.name if name is not None else input_name(subject.name)
    search_root(subject.spatial_shape, config.search)  # a bad bounding box fails before queries
    report = on_progress or (lambda _: None)
    calls_before = scheduler.stats.calls
    evaluator = CountingEvaluator(scheduler)
    if target is None:
        target = await predict_target(subject, evaluator, config, info)

    def phase(name: str, done: int) -> None:
        report(Progress.snapshot(name, done, config.search.iters, scheduler.stats, started, target))

    phase("target", 0)
    explanation_store, seed = open_store(
        store, key, subject, target, info, config, resume=resume, overwrite=overwrite
    )
    if explanation_store is not None:
        opened.append(explanation_store)
    before_checks = evaluator.queries
    warnings = await _check_normalisation(subject, evaluator, config, target)
    warnings += await check_baseline(subject, evaluator, config.scoring, target)
    check_queries = evaluator.queries - before_checks
    results, resumed = await _search_all(
        subject, target, evaluator, scheduler, config, seed, explanation_store, report, started
    )
    evaluator.join()  # what follows waits for the slowest iteration
    ordered = [results[i] for i in sorted(results)]
    style = config.search.responsibility_style
    if subject.size > LARGE_INPUT_ELEMENTS:
        # region by region into one float32 map: never a float64 map of a large volume
        responsibility = build_map_chunked(
            [r.ledger for r in ordered], target.classification, subject.spatial_shape, style
        )
    else:
        raw = build_map(
            (r.ledger for r in ordered), target.classification, subject.spatial_shape, style
        )
        responsibility = normalise(raw, style).astype(np.float32)
        if config.search.negative_responsibility:
            responsibility = negative_responsibility(
                responsibility,
                [r.ledger for r in ordered],
                target.classification,
                subject.spatial_shape,
                style,
            )
    if not any(np.any(r.ledger.classes == target.classification) for r in ordered):
        message = (
            f"the responsibility map is empty: no mutant was classified as class "
            f"{target.classification}, so nothing is responsible for it (is --target a class "
            "the model predicts here?)"
        )
        logger.warning(message)
        warnings.append(message)
    sufficiency: Sufficiency | None = None
    multi: MultiExplanation | None = None
    complete: CompleteExplanation | None = None
    if config.extraction.extract and config.extraction.strategy == "multi":
        phase("extraction", len(results))
        multi = await extract_multi(
            subject,
            responsibility,
            target,
            evaluator,
            config.extraction,
            config.multi,
            config.scoring,
            seed,
            input_key(subject),
        )
        sufficiency = multi.first
    elif config.extraction.extract and config.extraction.complete:
        phase("extraction", len(results))
        complete = await extract_complete(
            subject, responsibility, target, evaluator, config.extraction, config.scoring
        )
        sufficiency = complete.complete
    elif config.extraction.extract:
        phase("extraction", len(results))
        extract = {"spatial": extract_spatial, "contrastive": extract_contrastive}.get(
            config.extraction.strategy, extract_global
        )
        sufficiency = await extract(
            subject, responsibility, target, evaluator, config.extraction, config.scoring
        )
    curves = None
    if config.evaluation.analyse:
        phase("evaluation", len(results))
        curves = await insertion_deletion(
            subject, responsibility, target, evaluator, config.evaluation, config.scoring
        )
    analysis = None
    if config.evaluation.analyse:
        analysis = analyse(
            responsibility,
            [(e.index, e.mask, e.confidence) for e in multi.kept]
            if multi is not None
            else [(0, sufficiency.mask, sufficiency.confidence)]
            if sufficiency
            else [],
            curves.insertion_auc if curves else None,
            curves.deletion_auc if curves else None,
        )
    box_total = sum(r.box_area_sum for r in ordered)
    box_count = sum(r.box_count for r in ordered)
    stats = RunStats(
        queries=evaluator.queries,
        calls=scheduler.stats.calls - calls_before,
        mean_batch=round(scheduler.stats.mean_batch, 2),
        passing=sum(r.passing for r in ordered),
        failing=sum(r.failing for r in ordered),
        max_depth=max((r.depth for r in ordered), default=0),
        avg_box_size=round(box_total / box_count, 2) if box_count else 0.0,
        iterations=len(ordered),
        resumed_iterations=resumed,
        wall_s=round(time.perf_counter() - started, 3),
        backend_s=round(scheduler.stats.backend_s, 3),
        check_queries=check_queries,
        round_trips=evaluator.rounds,
    )
    result = Explanation(
        subject=subject,
        target=target,
        responsibility=responsibility,
        stats=stats,
        config=config,
        sufficiency=sufficiency,
        curves=curves,
        store=explanation_store.location if explanation_store else None,
        seed=seed,
        model=info.name,
        multi=multi,
        extra={
            "model_identity": dict(info.identity),
            **({"warnings": warnings} if warnings else {}),
            **({"complete": complete} if complete is not None else {}),
            **({"analysis": analysis} if analysis is not None else {}),
            **_swept(ordered),
        },
    )
    if explanation_store is not None:
        await anyio.to_thread.run_sync(_save_results, explanation_store, result)
    phase("done", len(ordered))
    return result


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


def _settings(
    subject: Subject, target: Target, info: ModelInfo, config: ExplainConfig, seed: int
) -> dict[str, Any]:
    """Everything that shapes the map (not ``iters``: more iterations extend a store)."""
    search = {
        k: v
        for k, v in asdict(config.search).items()
        if k not in ("iters", "max_concurrent_searches", "seed", "negative_responsibility")
    }
    if config.search.distribution is not Distribution.ADAPTIVE:
        search.pop("adaptive_lag")
    return {
        "search": search,
        "scoring": asdict(config.scoring),
        "image": asdict(config.image),
        "model": {
            "name": info.name,
            "input_shape": list(info.input_shape),
            "identity": dict(info.identity),
        },
        "input": f"{input_key(subject):016x}",
        "target": {"class": target.classification, "confidence": target.confidence},
        "seed": seed,
    }


#: A resumed run's target confidence may differ from the stored one by float noise alone
#: (another CPU, batch size or server); more than this means another model or input.
CONFIDENCE_TOLERANCE = 1e-4


def open_store(
    path: str | Path | None,
    key: str,
    subject: Subject,
    target: Target,
    info: ModelInfo,
    config: ExplainConfig,
    *,
    resume: bool,
    overwrite: bool,
) -> tuple[ExplanationStore | None, int]:
    """Open the store group for this input, and settle the seed (a resumed run reuses it)."""
    if path is None:
        seed = config.search.seed
        return None, seed if seed is not None else secrets.randbits(32)
    if resume and not overwrite and not Path(path).exists():
        raise StoreError(f"cannot resume: {path} does not exist")
    fresh_seed = config.search.seed if config.search.seed is not None else secrets.randbits(32)

    def settings(stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """This run's settings; a resumed run without --seed keeps the stored seed."""
        seed = config.search.seed
        if seed is None and stored is not None and isinstance(stored.get("seed"), int):
            seed = stored["seed"]
        wanted = _settings(subject, target, info, config, fresh_seed if seed is None else seed)
        stored_target = stored.get("target") if stored is not None else None
        if isinstance(stored_target, Mapping):
            confidence = stored_target.get("confidence")
            if (
                isinstance(confidence, float)
                and abs(confidence - target.confidence) <= CONFIDENCE_TOLERANCE
            ):
                wanted["target"]["confidence"] = confidence
        return wanted

    store = ExplanationStore.open(
        path, key, settings, len(subject.spatial_shape), resume=resume, overwrite=overwrite
    )
    seed = int(store.attributes()["settings"]["seed"])
    try:
        store.update_attributes(
            {
                "target": {"class": target.classification, "confidence": target.confidence},
                "source": subject.source or subject.name,
            }
        )
    except BaseException:
        store.close()
        raise
    return store, seed


async def _search_all(
    subject: Subject,
    target: Target,
    evaluator: Evaluator,
    scheduler: Scheduler,
    config: ExplainConfig,
    seed: int,
    store: ExplanationStore | None,
    report: ProgressCallback,
    started: float,
) -> tuple[dict[int, IterationResult], int]:
    """Run every iteration not yet in the store, concurrently, committing each as it ends.

    Returns every iteration's result and how many of them came from the store.
    """
    search = config.search
    results: dict[int, IterationResult] = {}
    mask_values = _mask_sweep(subject, config, seed)
    if store is not None:
        committed = await anyio.to_thread.run_sync(committed_iterations, store)
        results.update({i: r for i, r in committed.items() if i < search.iters})
        check_mask_values(results, mask_values, store.location)
    resumed = len(results)
    key = input_key(subject)
    finished = {i: anyio.Event() for i in range(search.iters)}
    for i in results:
        finished[i].set()
    limiter = anyio.CapacityLimiter(search.max_concurrent_searches)
    adaptive = search.distribution is Distribution.ADAPTIVE

    async def prior_map(index: int) -> np.ndarray | None:
        """The map of iterations ``< index - adaptive_lag`` (so it is the same every run)."""
        before = range(max(0, index - search.adaptive_lag))
        for i in before:
            await finished[i].wait()
        if not before:
            return None
        return build_map(
            (results[i].ledger for i in before),
            target.classification,
            subject.spatial_shape,
            search.responsibility_style,
        )

    async def one(index: int) -> None:
        weights = await prior_map(index) if adaptive else None
        async with limiter:
            result = await run_iteration(
                index,
                subject,
                target,
                evaluator,
                search,
                config.scoring,
                seed,
                key,
                weights,
                mask_value=None if mask_values is None else mask_values[index],
            )
        if store is not None:
            await anyio.to_thread.run_sync(commit_iteration, store, result)
        results[index] = result
        finished[index].set()
        report(
            Progress.snapshot(
                "iteration", len(results), search.iters, scheduler.stats, started, target
            )
        )

    async def tick() -> None:
        """Live progress between iterations (throughput and batch fill as they are now)."""
        while True:
            await anyio.sleep(PROGRESS_TICK_S)
            report(
                Progress.snapshot(
                    "iteration", len(results), search.iters, scheduler.stats, started, target
                )
            )

    async with anyio.create_task_group() as group:
        for index in range(search.iters):
            if index not in results:
                group.start_soon(one, index)
        async with anyio.create_task_group() as ticker:
            ticker.start_soon(tick)
            await _wait_all(finished)
            ticker.cancel_scope.cancel()
    return results, resumed


def _swept(ordered: list[IterationResult]) -> dict[str, Any]:
    """``{"mask_values": [...]}``: each iteration's own mask value, when the run swept it."""
    values = [r.mask_value for r in ordered]
    return {"mask_values": values} if any(v is not None for v in values) else {}


def _mask_sweep(subject: Subject, config: ExplainConfig, seed: int) -> list[float] | None:
    """The iterations' own mask values (ReX's ``random``/``linear``), logged as ReX does."""
    kind = config.image.mask_value
    values = iteration_mask_values(subject, kind, config.search.iters, seed)
    if values is None:
        if isinstance(kind, str) and kind in ("random", "linear"):
            logger.warning(
                "mask value %s is not swept: masked elements take this mode's own baseline "
                "(a context input, a reference table or a noise floor)",
                kind,
            )
        return None
    for index, value in enumerate(values):
        logger.info("iteration %d masks with %.6g (mask value %s)", index, value, kind)
    return values


async def _wait_all(events: dict[int, anyio.Event]) -> None:
    for event in events.values():
        await event.wait()


def _save_results(store: ExplanationStore, result: Explanation) -> None:
    """Write the dense map, the mask and the summary attributes."""
    store.write_array("responsibility", result.responsibility, "float32")
    summary = result.summary()
    if result.mask is not None:
        store.write_array("explanation", result.mask, "uint8")
    if result.extra.get("complete") is not None:
        store.write_array("necessary", result.extra["complete"].necessary.mask, "uint8")
    if result.multi is not None and result.multi.kept:
        kept = np.stack([e.mask for e in result.multi.kept])
        store.write_array("explanations", kept, "uint8")
    store.update_attributes({k: v for k, v in summary.items() if k not in ("input", "store")})
    store.finish()
