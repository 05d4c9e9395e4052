"""Meta-evaluation (MetaQuantus' input-perturbation test): is a metric itself reliable?

For every input, ``perturbations`` noisy copies x̃ = clip(x + U(−n, n), min x, max x̃) are
drawn in each of ``iterations`` rounds, twice: with a tiny noise (resilience: the copies whose
prediction held are kept) and a large one (adversary: the copies whose prediction flipped are
kept). Each metric scores each attribution (the map of x, as MetaQuantus does) on the kept
copies, with x's target, all through the shared scheduler. Then, per metric:

- IAC_NR / IAC_AR: Wilcoxon's signed-rank p-value (two-sided, ``zsplit``) between the scores
  on x and on x̃ over the kept inputs, per attribution and copy; 1 − p for the adversary;
- IEC_NR: the share of (kept input, rank) where the ranking of the attributions is unchanged
  (with two attributions: the share of kept inputs whose ranking held);
- IEC_AR: the share of (attribution, kept input) whose score got worse (by the metric's
  direction: MetaQuantus passes the direction as a truthy string and always tests one way);
- MC: the mean of the four; MC_std over the rounds.

Each copy's noise is seeded by (seed, test, round, copy, input key), so results do not depend
on the order of work; with a store every finished unit is committed
(:mod:`rex_stream.evaluation.meta.input_units`) and ``resume`` ends with the same numbers.
The reductions are :mod:`rex_stream.evaluation.meta.scores`'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import ExplainFunction, ReExplain, warnings_once
from rex_stream.evaluation.meta.input_units import (
    InputOutcome,
    MetaPlan,
    copy_generator,
    perturbed,
    run_input,
)
from rex_stream.evaluation.meta.scores import (
    TESTS,
    MetaArrays,
    MetaEvaluation,
    MetaScores,
    reduce_scores,
    wilcoxon_p,
)
from rex_stream.evaluation.meta.store import MetaProgressCallback, UnitProgress
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.plan import QueryLimit
from rex_stream.evaluation.session import (
    Attributions,
    Inputs,
    check_mask,
    check_resumable,
    checked_explainer,
    chosen_metrics,
    expand_inputs,
    named_attributions,
    re_explaining,
    scoring_session,
    weights_for,
)
from rex_stream.evaluation.sources import MapSource

__all__ = [
    "TESTS",
    "MetaArrays",
    "MetaEvaluation",
    "MetaScores",
    "copy_generator",
    "meta_evaluate",
    "perturbed",
    "reduce_scores",
    "wilcoxon_p",
]

#: Noisy copies in flight at once over the whole run (each holds its tensor and its plans).
COPIES_AT_ONCE = 32


async def meta_evaluate(
    inputs: Inputs,
    backend: Backend | str,
    attributions: Attributions,
    metrics: str | Sequence[MetricChoice],
    *,
    mask: MapSource | None = None,
    config: ExplainConfig | None = None,
    seed: int = 0,
    iterations: int = 5,
    perturbations: int = 10,
    noise_resilience: float = 0.001,
    noise_adversary: float = 5.0,
    quantus_compatible: bool = False,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    backend_settings: BackendSettings | None = None,
    concurrent_inputs: int = 4,
    explainer: str | ReExplain | ExplainFunction | None = None,
    on_progress: MetaProgressCallback | None = None,
    max_queries: int | None = None,
    on_plan: Callable[[str, int], None] | None = None,
) -> MetaEvaluation:
    """MetaQuantus' input-perturbation test of ``metrics`` over ``inputs`` and attributions.

    With ``store``, every finished unit (an input's scores; one noisy copy's prediction and
    scores) is committed to the input's group at once, and ``resume`` continues a killed run
    exactly: the settings must match (a changed one is refused, naming it), and the units it
    had not committed are computed with the same seeds. ``quantus_compatible`` scores the
    metrics in Quantus 0.6.0's conventions (the noise is rex-stream's, seeded per copy).
    ``explainer`` (as for :func:`~rex_stream.evaluation.run.evaluate`) serves the metrics
    that re-explain. ``on_progress(units done, units planned, queries so far)`` hears every
    finished unit (an input's scores or one noisy copy; units read back from the store count
    as done when they are read). Before an input runs, ``on_plan(input, queries)`` hears the
    most queries it can cost, and a run whose plan passes ``max_queries`` stops with a
    ConfigError.
    """
    started = time.perf_counter()
    choices = chosen_metrics(metrics)
    named = named_attributions(attributions)
    if iterations < 1 or perturbations < 1:
        raise ConfigError("meta-evaluation needs at least one iteration and one perturbation")
    if not (0 < noise_resilience < float("inf") and 0 < noise_adversary < float("inf")):
        raise ConfigError("meta-evaluation noise levels must be numbers > 0")
    check_mask(choices, mask)
    re_explainer = checked_explainer(choices, explainer)
    check_resumable(store, resume)
    sources = expand_inputs(inputs)
    config = config or ExplainConfig()
    weighted = await weights_for(backend, choices)
    plan = MetaPlan(
        choices,
        named,
        mask,
        seed,
        iterations,
        perturbations,
        (noise_resilience, noise_adversary),
        Conventions.for_flag(quantus_compatible),
    )
    outcomes: list[InputOutcome | None] = [None] * len(sources)
    with raise_first_error(), warnings_once():
        async with scoring_session(backend, config, backend_settings) as session:
            scorer = session.scorer
            bound, variants = re_explaining(re_explainer, weighted, session, backend_settings)
            plan = replace(plan, explainer=bound, variants=variants)
            inputs_at_once = anyio.CapacityLimiter(max(1, concurrent_inputs))
            copies = anyio.CapacityLimiter(COPIES_AT_ONCE)

            def queries_so_far() -> int:
                sent = scorer.sent + (bound.queries if bound else 0)
                return sent + (variants.queries if variants else 0)

            limit = QueryLimit(max_queries)

            def budget(key: str, queries: int) -> None:
                if on_plan is not None:
                    on_plan(key, queries)
                detail = f"{queries} for this input and its noisy copies"
                limit.add(key, queries, "the meta-evaluation's plan needs up to", detail)

            progress = UnitProgress(
                len(sources) * (1 + int(np.prod(plan.shape))), on_progress, queries_so_far
            )

            async def one(position: int, key: str, source: str | Path | np.ndarray) -> None:
                async with inputs_at_once:
                    outcomes[position] = await run_input(
                        key, source, plan, session, copies, store, resume, overwrite, progress,
                        budget,
                    )  # fmt: skip

            async with variants or nullcontext(), anyio.create_task_group() as group:
                for position, (key, source) in enumerate(sources):
                    group.start_soon(one, position, key, source)
            stats = session.engine.scheduler.stats
            queries = queries_so_far()
    done = [o for o in outcomes if o is not None]
    arrays = {c.label: _arrays(done, m) for m, c in enumerate(choices)}
    results = {c.label: reduce_scores(arrays[c.label], c.spec.higher_is_better) for c in choices}
    return MetaEvaluation(
        results,
        queries,
        stats.calls,
        time.perf_counter() - started,
        {
            "iterations": iterations,
            "perturbations": perturbations,
            "noise_resilience": noise_resilience,
            "noise_adversary": noise_adversary,
            "seed": seed,
            "quantus_compatible": quantus_compatible,
            "explainer": plan.explainer.name if plan.explainer is not None else None,
            "attributions": list(named),
            "inputs": [key for key, _ in sources],
        },
        arrays,
        sum(o.resumed for o in done),
    )


def _arrays(outcomes: list[InputOutcome], metric: int) -> MetaArrays:
    """One metric's q, q̂ and kept flags over all inputs."""
    q = np.stack([o.q[metric] for o in outcomes], axis=1)
    q_hat = np.stack([o.q_hat[..., metric, :] for o in outcomes], axis=3)
    kept = np.stack([o.kept for o in outcomes], axis=3)
    return MetaArrays(q, q_hat, kept)
