"""Explaining one input with CEM: predict the target, run every chain at once, pick the best."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.cem.autoencoder import Autoencoder
from rex_stream.cem.chain import ChainState, advance
from rex_stream.cem.config import CemConfig
from rex_stream.cem.perturbation import perturbation_for
from rex_stream.cem.records import commit_chain, committed_chains
from rex_stream.cem.result import ARRAY_NAMES, CemResult
from rex_stream.config import ScoringConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.regions import Regions
from rex_stream.engine.scheduler import CountingEvaluator, Evaluator
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge
from rex_stream.errors import ConfigError, InputError, StoreError

logger = logging.getLogger(__name__)

#: Inputs open their groups one at a time: zarr cannot create a new store's root from two
#: threads at once ("a group exists at path ''").
_OPEN_LOCK = threading.Lock()


def subject_key(subject: Subject) -> int:
    """A 64-bit digest of the input tensor (seeds its chains; names it in the store)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(subject.tensor.shape).encode())
    digest.update(np.ascontiguousarray(subject.tensor).tobytes())
    return int.from_bytes(digest.digest(), "little")


async def predict_target(subject: Subject, evaluator: Evaluator, scoring: ScoringConfig) -> Target:
    """The class to explain: the model's prediction on the input, or ``scoring.target``."""
    scores = await evaluator.evaluate([lambda out: np.copyto(out, subject.tensor)])
    classes = scores.shape[1] if scores.shape[1] > 1 else 2
    wanted = scoring.target
    if wanted is not None:
        if not 0 <= wanted < classes:
            raise InputError(f"class index {wanted} is out of range: the model has {classes}")
        return Target(wanted, float(judge(scores, scoring, wanted).target_confidences[0]))
    verdicts = judge(scores, scoring, None)
    return Target(int(verdicts.classes[0]), float(verdicts.confidences[0]))


async def explain_subject(
    subject: Subject,
    evaluator: Evaluator,
    info: ModelInfo,
    config: CemConfig,
    scoring: ScoringConfig,
    *,
    reference: np.ndarray | None = None,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    autoencoder: Autoencoder | None = None,
) -> CemResult:
    """The pertinent positive or negative of one input, through a (shared) scheduler; with
    ``autoencoder`` (needed when ``config.gamma > 0``), its reconstruction errors through
    their own."""
    if (config.gamma > 0) != (autoencoder is not None):
        raise ConfigError(
            "the autoencoder term needs both an autoencoder and gamma > 0 "
            f"(gamma {config.gamma:g}, autoencoder {'given' if autoencoder else 'none'})"
        )
    started = time.perf_counter()
    counting = CountingEvaluator(evaluator)
    target = await predict_target(subject, counting, scoring)
    regions = Regions.grid(subject.spatial_shape, config.region_size)
    perturbation = perturbation_for(subject, regions, config.kind, reference)
    key = subject_key(subject)
    opened = await anyio.to_thread.run_sync(
        lambda: _open_store(
            store, subject, key, target, info, config, scoring, resume, overwrite, autoencoder
        )
    )
    try:
        chains = [
            ChainState.initial(
                p * config.restarts + r, penalty, r, regions.count, perturbation.start
            )
            for p, penalty in enumerate(config.penalties)
            for r in range(config.restarts)
        ]
        resumed = 0
        if opened is not None:
            stored = await anyio.to_thread.run_sync(committed_chains, opened)
            for index, state in stored.items():
                if index < len(chains) and state.current.size == regions.count:
                    chains[index] = state
                    resumed += 1

        errors = None if autoencoder is None else autoencoder.errors

        async def run(state: ChainState) -> None:
            while not state.done:
                await advance(
                    state,
                    counting,
                    perturbation,
                    config,
                    scoring,
                    target.classification,
                    key,
                    errors,
                )
                if opened is not None and (state.done or state.step % config.block_steps == 0):
                    await anyio.to_thread.run_sync(commit_chain, opened, state)

        async with anyio.create_task_group() as group:
            for state in chains:
                group.start_soon(run, state)
        best = min(
            (s for s in chains if s.best is not None),
            key=lambda s: (s.best_objective, s.index),
            default=None,
        )
        result = CemResult(
            subject=subject,
            kind=config.kind,
            target=target,
            regions=regions,
            values=None if best is None else best.best,
            solution=None if best is None or best.best is None else perturbation.tensor(best.best),
            solution_class=-1 if best is None else best.best_class,
            margin=float("nan") if best is None else best.best_margin,
            penalty=float("nan") if best is None else best.penalty,
            objective=float("nan") if best is None else best.best_objective,
            reconstruction=float("nan") if best is None else best.best_reconstruction,
            autoencoder_queries=sum(s.autoencoder_queries for s in chains),
            gamma=config.gamma,
            queries=1 + sum(s.queries for s in chains),
            steps=sum(s.step for s in chains),
            chains=len(chains),
            resumed_chains=resumed,
            wall_s=round(time.perf_counter() - started, 3),
            seed=config.seed,
            model=info.name,
            store=None if opened is None else opened.location,
        )
        if opened is not None:
            await anyio.to_thread.run_sync(save_result, opened, result)
    finally:
        if opened is not None:
            opened.close()
    return result


def _open_store(
    path: str | Path | None,
    subject: Subject,
    key: int,
    target: Target,
    info: ModelInfo,
    config: CemConfig,
    scoring: ScoringConfig,
    resume: bool,
    overwrite: bool,
    autoencoder: Autoencoder | None = None,
) -> ExplanationStore | None:
    if path is None:
        return None
    if resume and not overwrite and not ExplanationStore.exists(path):  # also s3://…
        raise StoreError(f"cannot resume: {path} does not exist")
    settings: dict[str, Any] = {
        "method": f"cem-{config.kind.value}",
        "cem": config.settings(),
        "scoring": asdict(scoring),
        "model": {
            "name": info.name,
            "input_shape": list(info.input_shape),
            "identity": dict(info.identity),  # which model: evaluate checks it, as for ReX
        },
        "input": f"{key:016x}",
        "target": target.classification,
    }
    if autoencoder is not None:
        settings["autoencoder"] = autoencoder.name

    def settled(stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """This run's settings; a store made before models were identified resumes as made."""
        stored_model = stored.get("model") if stored is not None else None
        if isinstance(stored_model, Mapping) and "identity" not in stored_model:
            model = {k: v for k, v in settings["model"].items() if k != "identity"}
            return {**settings, "model": model}
        return settings

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", subject.name) or "input"
    with _OPEN_LOCK:
        store = ExplanationStore.open(
            path, name, settled, len(subject.spatial_shape), resume=resume, overwrite=overwrite
        )
    store.update_attributes(
        {
            "target": {"class": target.classification, "confidence": target.confidence},
            "source": subject.source or subject.name,
        }
    )
    return store


def save_result(store: ExplanationStore, result: CemResult) -> None:
    """Write the solution (input units and shape), its region mask, and the summary."""
    if result.solution is not None and result.mask is not None:
        store.write_array(ARRAY_NAMES[result.kind], result.solution, "float32")
        store.write_array(f"{ARRAY_NAMES[result.kind]}_regions", result.mask, "float32")
    summary = result.summary()
    store.update_attributes({"cem": {k: v for k, v in summary.items() if k not in ("input",)}})
    store.finish()
