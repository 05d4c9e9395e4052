"""Meta-evaluation by model perturbation (MetaQuantus' model-perturbation test, MPT).

The explanation methods are re-explainers (:data:`~rex_stream.evaluation.explainers.ReExplain`),
named. For every input, each method explains x under the unchanged model and each metric scores
that map with the unchanged model: q. In each of ``iterations`` rounds, ``perturbations`` noisy
models are drawn per test (every layer parameter × N(1, σ), or + N(0, σ) with ``additive``;
:mod:`rex_stream.evaluation.weights`), σ = ``noise_resilience`` (0.001) or
``noise_adversary`` (0.5, MetaQuantus' ImageNet setting; 2.0 for MNIST). A noisy model
predicts every input; resilience keeps the inputs whose prediction held, adversary those whose
prediction changed. On a kept input, each method explains x again *under the noisy model* (for
x's target) and each metric scores that map *with the noisy model*: q̂. IAC, IEC and MC then
come from q, q̂ and the kept flags exactly as in the input-perturbation test
(:func:`rex_stream.evaluation.meta.reduce_scores`).

Each noisy model is seeded by (seed, test, round, copy) and shared by all inputs, as in
MetaQuantus; it is written to a temporary ONNX file, opened with its own scheduler, and its
inputs and methods run concurrently through it. MetaQuantus explains and scores every input
under every noisy model and then keeps some; rex-stream scores only the kept ones (the others
do not enter any reduction).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings, ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.explainers import ReExplain, explainer_from_spec, explainer_name
from rex_stream.evaluation.meta import TESTS, MetaArrays, MetaEvaluation, reduce_scores
from rex_stream.evaluation.meta_store import (
    MetaGroup,
    MetaProgressCallback,
    UnitProgress,
    unit_index,
)
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.registry import choose
from rex_stream.evaluation.run import (
    _check_resumable,
    _settings,
    expand_inputs,
    scoring_session,
)
from rex_stream.evaluation.scoring import RowScorer
from rex_stream.evaluation.sources import MapSource, load_mask
from rex_stream.evaluation.variants import spatial_map
from rex_stream.evaluation.weights import WeightedModel, local_model, open_variant
from rex_stream.explain import raise_first_error
from rex_stream.modes import load_subject

#: Noisy models open at once (each is an onnxruntime session with its own scheduler).
MODELS_AT_ONCE = 2


@dataclass
class _Input:
    key: str
    subject: Subject
    target: int
    mask: np.ndarray | None


class ModelMetaEvaluation(MetaEvaluation):
    """What :func:`meta_evaluate_model` returns: the same numbers as the input-perturbation
    test's result, reported under ``model_perturbation_test``."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready."""
        summary = super().summary()
        return {"model_perturbation_test": summary.pop("input_perturbation_test"), **summary}


def noisy_generator(seed: int, test: int, round_: int, copy: int) -> np.random.Generator:
    """The noise source of one noisy model (shared by every input)."""
    return np.random.default_rng([seed, test, round_, copy])


async def meta_evaluate_model(
    inputs: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
    model: str | Path,
    explainers: Mapping[str, ReExplain | str] | ReExplain | str,
    metrics: str | Sequence[MetricChoice],
    *,
    mask: MapSource | None = None,
    config: ExplainConfig | None = None,
    seed: int = 0,
    iterations: int = 5,
    perturbations: int = 10,
    noise_resilience: float = 0.001,
    noise_adversary: float = 0.5,
    noise_type: str = "multiplicative",
    quantus_compatible: bool = False,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    backend_settings: BackendSettings | None = None,
    on_progress: MetaProgressCallback | None = None,
) -> ModelMetaEvaluation:
    """MetaQuantus' model-perturbation test of ``metrics`` for the methods ``explainers``
    (name → re-explainer or spec such as ``"rex:iters=5"``; or a single one) over ``inputs``,
    with a local ONNX ``model`` whose weights are perturbed.

    With ``store``, every finished unit (an input's unperturbed scores; one input under one
    noisy model: its predicted class, kept flag and scores) is committed to the input's group,
    and ``resume`` continues a killed run exactly: the settings must match (a changed one is
    refused, naming it), a noisy model whose units are all committed is not opened again, and
    the others recompute only the missing units, with the same seeds.
    ``on_progress(units done, units planned, queries so far)`` hears every finished unit.
    """
    started = time.perf_counter()
    path = local_model(model, "the model-perturbation test")
    choices = choose(metrics) if isinstance(metrics, str) else list(metrics)
    methods = _methods(explainers)
    if not methods:
        raise ConfigError(
            "the model-perturbation test needs an explainer (--explainer rex or "
            "python:module:function) to re-explain under each noisy model"
        )
    if iterations < 1 or perturbations < 1:
        raise ConfigError("meta-evaluation needs at least one iteration and one perturbation")
    weighty = [c.label for c in choices if c.spec.needs == "weights"]
    if weighty:
        raise ConfigError(f"the model-perturbation test cannot meta-evaluate {', '.join(weighty)}")
    if mask is None and any(c.spec.needs == "mask" for c in choices):
        needing = [c.label for c in choices if c.spec.needs == "mask"]
        raise ConfigError(f"{', '.join(needing)} need a ground-truth mask (--mask)")
    _check_resumable(store, resume)
    weighted = await anyio.to_thread.run_sync(WeightedModel.load, path)
    config = config or ExplainConfig()
    sigmas = {"resilience": noise_resilience, "adversary": noise_adversary}
    # validate the noise settings before any work
    weighted.noisy(min(sigmas.values()), noise_type, np.random.default_rng(0))
    sources = expand_inputs(inputs)
    shape = (len(TESTS), iterations, perturbations)
    names = list(methods)
    test_settings = {
        "test": "model-perturbation",
        "iterations": iterations,
        "perturbations": perturbations,
        "noise_resilience": noise_resilience,
        "noise_adversary": noise_adversary,
        "noise_type": noise_type,
        "explainers": {name: explainer_name(method) for name, method in methods.items()},
    }
    q = np.full((len(choices), len(names), len(sources)), np.nan)
    q_hat = np.full((len(choices), *shape, len(sources), len(names)), np.nan)
    kept = np.zeros((*shape, len(sources)), dtype=bool)
    totals = {"queries": 0, "calls": 0}
    groups: list[MetaGroup | None] = [None] * len(sources)
    with raise_first_error():
        async with scoring_session(str(path), config, backend_settings) as session:
            info, resolved, scheduler, scorer = session
            cases = [
                await _prepare(key, source, mask, info, resolved, scorer) for key, source in sources
            ]
            open_schedulers: dict[int, Scheduler] = {}  # by id: a Scheduler is unhashable

            def queries_so_far() -> int:
                live = sum(s.stats.mutants for s in open_schedulers.values())
                return totals["queries"] + scheduler.stats.mutants + live

            progress = UnitProgress(
                len(sources) * (1 + int(np.prod(shape))), on_progress, queries_so_far
            )
            try:
                if store is not None:
                    for n, item in enumerate(cases):
                        settings = _settings(
                            info, resolved, choices, {}, item.mask, seed, quantus_compatible,
                            item.target,
                        )  # fmt: skip
                        settings["meta_evaluation"] = test_settings
                        groups[n] = await MetaGroup.open(
                            store, item.key, settings, len(item.subject.spatial_shape),
                            (len(choices), len(names)), resume=resume, overwrite=overwrite,
                        )  # fmt: skip
                    progress.add(sum(g.resumed for g in groups if g is not None))

                async def scores_of(
                    item: _Input, run: tuple[Any, ModelInfo, ExplainConfig, RowScorer]
                ) -> np.ndarray:
                    """Every method's map of one input under one model, scored by every metric
                    with that model: (metrics, methods)."""
                    on, model_info, model_config, model_scorer = run
                    values = np.full((len(choices), len(names)), np.nan)

                    async def one(m: int) -> None:
                        explained = await methods[names[m]](
                            item.subject.tensor, item.target, on, model_info, model_config
                        )
                        attribution = spatial_map(explained, item.subject)
                        for c, choice in enumerate(choices):
                            case = Case(
                                item.subject, attribution, item.target, quantus_compatible, seed,
                                item.key, names[m], item.mask,
                            )  # fmt: skip
                            result = await choice.spec.compute(case, choice.params, model_scorer)
                            values[c, m] = result.score

                    async with anyio.create_task_group() as tasks:
                        for m in range(len(names)):
                            tasks.start_soon(one, m)
                    return values

                unchanged = (scheduler, info, resolved, scorer)

                async def original(n: int) -> None:
                    group = groups[n]
                    found = group.original() if group is not None else None
                    if found is not None:
                        q[:, :, n] = found
                        return
                    q[:, :, n] = await scores_of(cases[n], unchanged)
                    if group is not None:
                        await group.commit_original(cases[n].target, q[:, :, n])
                    progress.add()

                async with anyio.create_task_group() as tasks:
                    for n in range(len(cases)):
                        tasks.start_soon(original, n)

                models_at_once = anyio.CapacityLimiter(MODELS_AT_ONCE)

                def read_back(t: int, i: int, p: int, n: int) -> bool:
                    """Fill input n's unit under noisy model (t, i, p) from the store."""
                    group = groups[n]
                    found = group.copy(unit_index(shape, t, i, p)) if group is not None else None
                    if found is None:
                        return False
                    kept[t, i, p, n], q_hat[:, t, i, p, n, :] = found
                    return True

                async def judge_and_score(
                    t: int,
                    i: int,
                    p: int,
                    n: int,
                    run: tuple[Any, ModelInfo, ExplainConfig, RowScorer],
                ) -> None:
                    """Keep input n under noisy model (t, i, p) or not; if kept, q̂ of each
                    method; commit the unit."""
                    item = cases[n]
                    probe = Case(item.subject, np.zeros(1), 0, input_key=item.key).original()
                    predicted = await run[3].classify(probe, None)
                    held = predicted == item.target
                    keep = held if TESTS[t] == "resilience" else not held
                    kept[t, i, p, n] = keep
                    if keep:
                        q_hat[:, t, i, p, n, :] = await scores_of(item, run)
                    group = groups[n]
                    if group is not None:
                        attributes = {"test": TESTS[t], "round": i, "copy": p}
                        await group.commit_copy(
                            unit_index(shape, t, i, p), predicted, keep,
                            q_hat[:, t, i, p, n, :], attributes,
                        )  # fmt: skip
                    progress.add()

                async def noisy(t: int, i: int, p: int) -> None:
                    missing = [n for n in range(len(cases)) if not read_back(t, i, p, n)]
                    if not missing:
                        return  # every input's unit is committed: no need to open the model
                    async with models_at_once:
                        rng = noisy_generator(seed, t, i, p)
                        weights = weighted.noisy(sigmas[TESTS[t]], noise_type, rng)
                        opened = open_variant(weighted, weights, config, backend_settings)
                        async with opened as (backend, variant_config):
                            async with Scheduler(backend, variant_config.scheduler) as variant:
                                open_schedulers[id(variant)] = variant
                                variant_scorer = RowScorer(variant, variant_config.scoring)
                                run = (variant, backend.info, variant_config, variant_scorer)
                                try:
                                    async with anyio.create_task_group() as inner:
                                        for n in missing:
                                            inner.start_soon(judge_and_score, t, i, p, n, run)
                                finally:
                                    del open_schedulers[id(variant)]
                                    totals["queries"] += variant.stats.mutants
                                    totals["calls"] += variant.stats.calls

                async with anyio.create_task_group() as tasks:
                    for t, i, p in np.ndindex(shape):
                        tasks.start_soon(noisy, t, i, p)
                for n, group in enumerate(groups):
                    if group is not None:
                        counts = {test: int(kept[t, ..., n].sum()) for t, test in enumerate(TESTS)}
                        source = str(cases[n].subject.source or cases[n].key)
                        await group.finish({"source": source, "meta_evaluation": {"kept": counts}})
            finally:
                for group in groups:
                    if group is not None:
                        group.close()
            totals["queries"] += scheduler.stats.mutants
            totals["calls"] += scheduler.stats.calls
    arrays = {c.label: MetaArrays(q[m], q_hat[m], kept) for m, c in enumerate(choices)}
    results = {c.label: reduce_scores(arrays[c.label], c.spec.higher_is_better) for c in choices}
    return ModelMetaEvaluation(
        results,
        totals["queries"],
        totals["calls"],
        time.perf_counter() - started,
        {
            "test": "model-perturbation",
            "iterations": iterations,
            "perturbations": perturbations,
            "noise_resilience": noise_resilience,
            "noise_adversary": noise_adversary,
            "noise_type": noise_type,
            "seed": seed,
            "quantus_compatible": quantus_compatible,
            "explainers": names,
            "inputs": [key for key, _ in sources],
        },
        arrays,
        sum(g.resumed for g in groups if g is not None),
    )


def _methods(explainers: Mapping[str, ReExplain | str] | ReExplain | str) -> dict[str, ReExplain]:
    """Named re-explainers (a spec string is parsed; a single one is named by its spec)."""
    if isinstance(explainers, str) or callable(explainers):
        name = explainers if isinstance(explainers, str) else getattr(explainers, "spec", None)
        explainers = {str(name or "explainer"): explainers}
    return {
        str(name): explainer_from_spec(given) if isinstance(given, str) else given
        for name, given in explainers.items()
    }


async def _prepare(
    key: str,
    source: str | Path | np.ndarray,
    mask: MapSource | None,
    info: ModelInfo,
    config: ExplainConfig,
    scorer: RowScorer,
) -> _Input:
    subject = await anyio.to_thread.run_sync(load_subject, source, info, config)
    subject.name = key
    truth = load_mask(mask, key, subject) if mask is not None else None
    probe = Case(subject, np.zeros(1), 0, input_key=key).original()
    target = await scorer.classify(probe, config.scoring.target)
    return _Input(key, subject, target, truth)


def meta_evaluate_model_sync(*args: Any, **kwargs: Any) -> ModelMetaEvaluation:
    """Blocking :func:`meta_evaluate_model`."""

    async def run() -> ModelMetaEvaluation:
        return await meta_evaluate_model(*args, **kwargs)

    return anyio.run(run)
