"""The Dask tasks: plain, idempotent sync functions that run coroutines on the worker's engine.

A task returns a small summary (a JSON-ready dict, well under a kilobyte); maps and masks are
written to the shared Zarr store by the worker and never travel through Dask. Every task
resumes what the store already holds, so a task retried after its worker died continues from
the committed iterations, and a finished input (its ``complete`` marker written last) is
skipped without a single model query.

A huge input may be split: :func:`prepare_input` predicts the target once and settles the
seed, :func:`run_iterations` runs and commits one range of iterations, and
:func:`finalise_input` builds the map from every committed iteration, in iteration order, and
extracts: the same bytes as one machine running the whole input.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import anyio

from rex_stream.causal.search import input_key
from rex_stream.config import ExplainConfig
from rex_stream.distributed.inputs import split_row
from rex_stream.distributed.runtime import worker_runtime
from rex_stream.engine.scheduler import CountingEvaluator
from rex_stream.engine.session import Engine
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.errors import RexStreamError, StoreLocked, raise_first_error
from rex_stream.modes import load_subject
from rex_stream.naming import check_name
from rex_stream.runs.many import INPUT_ERRORS
from rex_stream.runs.rex import explain_input, predict_target
from rex_stream.runs.rex_search import search_iterations
from rex_stream.runs.rex_store import open_store

__all__ = [
    "COMPLETE",
    "FATAL",
    "FINGERPRINT",
    "INPUT_ERRORS",
    "explain_shard",
    "finalise_input",
    "prepare_input",
    "run_iterations",
]

#: The store's own marker of a whole result, and ours of what it was computed from.
COMPLETE = "complete"
FINGERPRINT = "fingerprint"
#: A task's summary of an error that ends the whole run.
FATAL = "fatal"
#: How long a task waits for a group that another writer holds: a task retried after its
#: worker died on another host finds that worker's lock, stale once its heartbeat is older than
#: the lock's 60 s, and takes it over.
LOCK_WAIT_S = 75.0
LOCK_POLL_S = 1.0
_KEPT = ("model", "target", "seed", "stats", "explanation", "evaluation")

Summary = dict[str, Any]
T = TypeVar("T")


def explain_shard(
    runtime: str, store: str, items: list[tuple[str, str]]
) -> list[Summary] | Summary:
    """Explain a shard of ``(source, name)`` inputs concurrently on this worker's engine."""

    async def work(engine: Engine) -> list[Summary]:
        summaries: list[Summary] = [{} for _ in items]

        async def one(position: int, source: str, name: str) -> None:
            work = _explain(engine, store, source, name)
            summaries[position] = await _guarded(source, name, work)

        async with anyio.create_task_group() as group:
            for position, (source, name) in enumerate(items):
                group.start_soon(one, position, source, name)
        return summaries

    return _run(runtime, work)


def prepare_input(runtime: str, store: str, source: str, name: str) -> Summary:
    """Split run, first task: the target (one query) and the seed, settled in the store."""

    async def work(engine: Engine) -> Summary:
        async def prepare() -> Summary:
            item = _open_input(engine, source, name)
            subject = item.subject
            done = await _finished(engine, store, item)
            if done is not None:
                return {"finished": done}
            evaluator = CountingEvaluator(engine.scheduler)
            target = await predict_target(subject, evaluator, item.config, engine.info)
            opened, seed = await _when_unlocked(
                lambda: anyio.to_thread.run_sync(
                    lambda: open_store(
                        store,
                        subject.name,
                        subject,
                        target,
                        engine.info,
                        item.config,
                        resume=True,
                        overwrite=False,
                    )
                )
            )
            assert opened is not None
            try:
                await anyio.to_thread.run_sync(lambda: opened.group.require_group("ledger"))
            finally:
                opened.close()  # frees the group's lock for the tasks that follow
            return {
                "target": [target.classification, target.confidence],
                "seed": seed,
                "queries": evaluator.queries,
            }

        return await _guarded(source, name, prepare())

    return _run(runtime, work)


def run_iterations(
    runtime: str, store: str, source: str, name: str, prepared: Summary, first: int, stop: int
) -> Summary:
    """Split run: iterations ``first`` to ``stop - 1`` not yet committed, each committed as it
    ends; this task writes only these iterations' records."""
    if "target" not in prepared:
        return {"iterations": 0, "queries": 0}

    async def work(engine: Engine) -> Summary:
        item = _open_input(engine, source, name)
        subject, config = item.subject, _seeded(item.config, prepared)
        # no lock: the tasks of one input write its group at once, each its own iterations
        ndim = len(subject.spatial_shape)
        attached = await anyio.to_thread.run_sync(
            lambda: ExplanationStore.attach(store, subject.name, ndim)
        )
        target = Target(int(prepared["target"][0]), float(prepared["target"][1]))
        evaluator = CountingEvaluator(engine.scheduler)
        searched = await search_iterations(
            subject, target, evaluator, config, int(prepared["seed"]), range(first, stop),
            store=attached,
        )  # fmt: skip
        return {"iterations": searched.ran, "queries": evaluator.queries}

    return _run(runtime, work)


def finalise_input(
    runtime: str, store: str, source: str, name: str, prepared: Summary, *ranges: Summary
) -> Summary:
    """Split run, last task: the map from every committed iteration, extraction, outputs."""
    if "target" not in prepared:
        return prepared.get("finished") or prepared
    for failed in (r for r in ranges if FATAL in r):
        return failed

    async def work(engine: Engine) -> Summary:
        summary = await _guarded(source, name, _explain(engine, store, source, name, prepared))
        if "stats" in summary and not summary.get("skipped"):
            before = int(prepared["queries"]) + sum(int(r["queries"]) for r in ranges)
            summary["stats"]["queries"] += before
            summary["split_tasks"] = len(ranges)
        return summary

    return _run(runtime, work)


def _run(runtime: str, work: Callable[[Engine], Awaitable[T]]) -> T | Summary:
    """Run ``work`` on this worker's engine; an error that ends the run (the backend cannot
    open or fails) comes back as a ``fatal`` summary for the driver to raise, not as a task
    failure that Dask would log with its traceback on every worker."""
    try:
        with raise_first_error():  # a shard's task group raises a group: take its telling error
            return worker_runtime(runtime).run(work)
    except RexStreamError as error:
        return {FATAL: str(error), "kind": type(error).__name__}


async def _guarded(source: str, name: str, work: Any) -> Summary:
    """``await work``; an error of this input alone becomes its summary."""
    try:
        summary: Summary = await work
    except INPUT_ERRORS as error:
        return {"input": source, "name": name, "error": str(error), "kind": type(error).__name__}
    summary.setdefault("name", name)
    return summary


async def _explain(
    engine: Engine, store: str, source: str, name: str, prepared: Summary | None = None
) -> Summary:
    """One input, resumed from the store, skipped if its ``complete`` marker matches; a split
    input's ``prepared`` target and seed are used as they are."""
    item = _open_input(engine, source, name)
    done = await _finished(engine, store, item)
    if done is not None:
        return done
    config, target = item.config, None
    if prepared is not None:
        config = _seeded(config, prepared)
        target = Target(int(prepared["target"][0]), float(prepared["target"][1]))
    result = await _when_unlocked(
        lambda: explain_input(
            item.path, engine.info, engine.scheduler, config, store=store, resume=True,
            name=name, target=target,
        )
    )  # fmt: skip
    marker = _fingerprint(engine, item)
    await anyio.to_thread.run_sync(_mark_finished, store, item.subject.name, marker)
    summary = result.summary()
    summary["skipped"] = False
    return summary


@dataclass(frozen=True)
class _Input:
    """One input as a task sees it: its file, its settings (a table row's own), its subject."""

    path: str
    config: ExplainConfig
    subject: Subject


def _open_input(engine: Engine, source: str, name: str) -> _Input:
    """Load ``source`` as a Subject named ``name`` (its store group's key)."""
    path, row = split_row(source)
    config = engine.config
    if row is not None:
        options = {**config.image.mode_options, "row": str(row)}
        config = replace(config, image=replace(config.image, mode_options=options))
    subject = load_subject(path, engine.info, config)
    subject.name = check_name(name)
    return _Input(path, config, subject)


def _seeded(config: ExplainConfig, prepared: Summary) -> ExplainConfig:
    """The config with the seed the prepare task settled."""
    return replace(config, search=replace(config.search, seed=int(prepared["seed"])))


def _fingerprint(engine: Engine, item: _Input) -> str:
    """What a finished input's result depends on: input, model and every setting but the
    scheduler's (batching never changes a result)."""
    config = asdict(item.config)
    config.pop("scheduler", None)
    content = {
        "config": config,
        "model": [engine.info.name, list(engine.info.input_shape)],
        "input": f"{input_key(item.subject):016x}",
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


async def _finished(engine: Engine, store: str, item: _Input) -> Summary | None:
    """The stored summary of an input whose ``complete`` marker matches this run, else None."""
    subject = item.subject
    path = f"{store}/{subject.name}"
    marker = _fingerprint(engine, item)
    attrs = await anyio.to_thread.run_sync(ExplanationStore.group_attributes, store, subject.name)
    if attrs is None or attrs.get(COMPLETE) is not True or attrs.get(FINGERPRINT) != marker:
        return None
    summary = {k: attrs[k] for k in _KEPT if k in attrs}
    summary.update({"input": subject.source or subject.name, "store": path, "skipped": True})
    return summary


def _mark_finished(store: str, key: str, marker: str) -> None:
    """Record what the complete result was computed from (under the group's lock): from here
    on, a rerun with the same input, model and settings costs no query."""
    ExplanationStore.update_group(store, key, {FINGERPRINT: marker}, wait_s=LOCK_WAIT_S)


async def _when_unlocked(work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, again while another writer holds the group (up to LOCK_WAIT_S)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return await work()
        except StoreLocked:
            if time.monotonic() >= deadline:
                raise
        await anyio.sleep(LOCK_POLL_S)
