"""Meta-evaluation by model perturbation (MetaQuantus' model-perturbation test, MPT).

The explanation methods are re-explainers (:data:`~rex_stream.evaluation.explainers.ReExplain`),
named. For every input, each method explains x under the unchanged model and each metric scores
that map with the unchanged model: q. In each of ``iterations`` rounds, ``perturbations`` noisy
models are drawn per test (every layer parameter × N(1, σ), or + N(0, σ) with ``additive``;
:mod:`rex_stream.evaluation.variants`), σ = ``noise_resilience`` (0.001) or
``noise_adversary`` (0.5, MetaQuantus' ImageNet setting; 2.0 for MNIST). A noisy model
predicts every input; resilience keeps the inputs whose prediction held, adversary those whose
prediction changed. On a kept input, each method explains x again *under the noisy model* (for
x's target) and each metric scores that map *with the noisy model*: q̂. IAC, IEC and MC then
come from q, q̂ and the kept flags exactly as in the input-perturbation test
(:func:`rex_stream.evaluation.meta.scores.reduce_scores`).

Each noisy model is seeded by (seed, test, round, copy) and shared by all inputs, as in
MetaQuantus; it is written to a temporary ONNX file, opened with its own scheduler, and its
inputs and methods run concurrently through it (:mod:`rex_stream.evaluation.meta.model_units`,
which also commits every unit to the store, so a run resumes exactly). MetaQuantus explains
and scores every input under every noisy model and then keeps some; rex-stream scores only the
kept ones (the others do not enter any reduction).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import ReExplain, explainer_from_spec, explainer_name
from rex_stream.evaluation.meta.model_units import (
    ModelTest,
    noisy_generator,
    prepare_input,
)
from rex_stream.evaluation.meta.scores import TESTS, MetaArrays, MetaEvaluation, reduce_scores
from rex_stream.evaluation.meta.store import MetaGroup, MetaProgressCallback, UnitProgress
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.session import (
    Inputs,
    check_mask,
    check_resumable,
    chosen_metrics,
    expand_inputs,
    run_settings,
    scoring_session,
)
from rex_stream.evaluation.sources import MapSource
from rex_stream.evaluation.variants.weights import WeightedModel, local_model

__all__ = [
    "ModelMetaEvaluation",
    "meta_evaluate_model",
    "noisy_generator",
]


class ModelMetaEvaluation(MetaEvaluation):
    """What :func:`meta_evaluate_model` returns: the same numbers as the input-perturbation
    test's result, reported under ``model_perturbation_test``."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready."""
        summary = super().summary()
        return {"model_perturbation_test": summary.pop("input_perturbation_test"), **summary}


async def meta_evaluate_model(
    inputs: Inputs,
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
    choices = chosen_metrics(metrics)
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
    check_mask(choices, mask)
    check_resumable(store, resume)
    conventions = Conventions.for_flag(quantus_compatible)
    weighted = await anyio.to_thread.run_sync(WeightedModel.load, path)
    config = config or ExplainConfig()
    # validate the noise settings before any work
    weighted.noisy(min(noise_resilience, noise_adversary), noise_type, np.random.default_rng(0))
    sources = expand_inputs(inputs)
    shape = (len(TESTS), iterations, perturbations)
    test_settings = {
        "test": "model-perturbation",
        "iterations": iterations,
        "perturbations": perturbations,
        "noise_resilience": noise_resilience,
        "noise_adversary": noise_adversary,
        "noise_type": noise_type,
        "explainers": {name: explainer_name(method) for name, method in methods.items()},
    }
    groups: list[MetaGroup | None] = [None] * len(sources)
    with raise_first_error():
        async with scoring_session(str(path), config, backend_settings) as session:
            info, resolved, scheduler = session.info, session.config, session.engine.scheduler
            prepared = [
                await prepare_input(key, source, mask, session, conventions)
                for key, source in sources
            ]
            try:
                for n, item in enumerate(prepared if store is not None else []):
                    settings = run_settings(
                        info, resolved, choices, {}, item.mask, seed, conventions, item.target
                    )
                    settings["meta_evaluation"] = test_settings
                    groups[n] = await MetaGroup.open(
                        str(store), item.key, settings, len(item.subject.spatial_shape),
                        (len(choices), len(methods)), resume=resume, overwrite=overwrite,
                    )  # fmt: skip
                test = ModelTest(
                    weighted, methods, choices, prepared, groups, shape,
                    (noise_resilience, noise_adversary), noise_type, seed, conventions,
                    config, backend_settings,
                )  # fmt: skip
                test.progress = UnitProgress(
                    test.planned,
                    on_progress,
                    lambda: test.live_queries() + scheduler.stats.mutants,
                )
                await test.run(session)
            finally:
                for group in groups:
                    if group is not None:
                        group.close()
            queries = test.queries + scheduler.stats.mutants
            calls = test.calls + scheduler.stats.calls
    q, q_hat, kept = test.q, test.q_hat, test.kept
    arrays = {c.label: MetaArrays(q[m], q_hat[m], kept) for m, c in enumerate(choices)}
    results = {c.label: reduce_scores(arrays[c.label], c.spec.higher_is_better) for c in choices}
    return ModelMetaEvaluation(
        results,
        queries,
        calls,
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
            "explainers": list(methods),
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
