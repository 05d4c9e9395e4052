"""One input's share of a meta-evaluation: its units, each committed to the input's store group.

The units of an input are the input itself (every metric × attribution scored on x: q) and
each noisy copy (test, round, copy): its predicted class, whether it is kept, and the scores on
it (q̂). A copy's noise comes from its own generator, seeded by (seed, test, round, copy, input
key), so what a unit computes does not depend on which units ran before it: a resumed run
recomputes exactly the units a killed run had not committed and ends with the same numbers.

The records in the input's group are laid out by :mod:`rex_stream.evaluation.meta.store`
(shared with the model-perturbation test).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.engine.subject import Subject
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import BoundExplainer
from rex_stream.evaluation.meta.scores import TESTS
from rex_stream.evaluation.meta.store import MetaGroup, UnitProgress, unit_index
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.plan import planned_rows
from rex_stream.evaluation.session import ScoringSession, load_input, run_settings
from rex_stream.evaluation.sources import MapSource, load_map, load_mask
from rex_stream.evaluation.variants.pool import VariantPool


def perturbed(x: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """x + U(−noise, noise), clipped to [min x, max of the noisy copy] (MetaQuantus)."""
    noisy = x + rng.uniform(-noise, noise, size=x.shape).astype(x.dtype)
    return np.clip(noisy, x.min(), noisy.max()).astype(x.dtype)


def copy_generator(seed: int, test: int, round_: int, copy: int, key: str) -> np.random.Generator:
    """The noise source of one copy: seeded by the unit alone, never by what ran before."""
    return np.random.default_rng([seed, test, round_, copy, zlib.crc32(key.encode())])


def copy_key(key: str, test: int, round_: int, copy: int) -> str:
    """The name of one noisy copy of input ``key`` (its rows' cache keys and seeds)."""
    return f"{key}~{TESTS[test]}{round_}.{copy}"


@dataclass(frozen=True)
class MetaPlan:
    """What every input of one meta-evaluation shares."""

    choices: Sequence[MetricChoice]
    attributions: dict[str, MapSource]
    mask: MapSource | None
    seed: int
    iterations: int
    perturbations: int
    noises: tuple[float, float]  # resilience, adversary
    conventions: Conventions
    #: what the re-explaining metrics call (bound to the run's scheduler), and weight variants
    explainer: BoundExplainer | None = None
    variants: VariantPool | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(tests, rounds, copies)."""
        return (len(TESTS), self.iterations, self.perturbations)

    def case(self, subject: Subject, key: str, **given: Any) -> Case:
        """A case of one input (x or a copy) under the plan's conventions, seed and
        re-explainers."""
        return Case(
            subject, conventions=self.conventions, seed=self.seed, input_key=key,
            explainer=self.explainer, variants=self.variants, **given,
        )  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """The meta-evaluation's own settings (a resumed group must match them)."""
        return {
            "test": "input-perturbation",
            "iterations": self.iterations,
            "perturbations": self.perturbations,
            "noise_resilience": self.noises[0],
            "noise_adversary": self.noises[1],
            "explainer": self.explainer.name if self.explainer is not None else None,
        }


@dataclass
class InputOutcome:
    """One input's q, q̂ and kept flags (metrics × attributions on the last axes)."""

    key: str
    target: int
    q: np.ndarray  # (metrics, attributions)
    q_hat: np.ndarray  # (tests, rounds, copies, metrics, attributions); NaN where not kept
    kept: np.ndarray  # (tests, rounds, copies) bool
    resumed: int = 0


def planned_queries(plan: MetaPlan, subject: Subject, key: str) -> int:
    """The most queries one input can cost: x and each noisy copy predicted, and every
    metric × attribution scored on each (a copy that is not kept is not scored)."""
    base = plan.case(subject, key, attribution=np.zeros(subject.spatial_shape), target=0)
    rows = sum(planned_rows(choice, base) for choice in plan.choices) * len(plan.attributions)
    return (1 + math.prod(plan.shape)) * (1 + rows)


async def run_input(
    key: str,
    source: str | Path | np.ndarray,
    plan: MetaPlan,
    session: ScoringSession,
    copies: anyio.CapacityLimiter,
    store_path: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: UnitProgress | None = None,
    budget: Callable[[str, int], None] | None = None,
) -> InputOutcome:
    """Score one input and its noisy copies; with a store, commit each unit when done.
    ``budget(key, queries)`` hears the most queries the input can cost before any is sent."""
    info, config, scorer = session.info, session.config, session.scorer
    subject = await load_input(key, source, info, config, plan.conventions)
    truth = load_mask(plan.mask, key, subject) if plan.mask is not None else None
    probe = Case(subject, np.zeros(1), 0, input_key=key).original()
    target = await scorer.classify(probe, config.scoring.target)
    names = list(plan.attributions)
    maps = {name: load_map(src, key, subject, name) for name, src in plan.attributions.items()}
    outcome = InputOutcome(
        key,
        target,
        np.full((len(plan.choices), len(names)), np.nan),
        np.full((*plan.shape, len(plan.choices), len(names)), np.nan),
        np.zeros(plan.shape, dtype=bool),
    )
    group: MetaGroup | None = None
    if store_path is not None:
        settings = run_settings(
            info, config, list(plan.choices), maps, truth, plan.seed, plan.conventions, target
        )
        settings["meta_evaluation"] = plan.settings()
        scores = (len(plan.choices), len(names))
        ndim = len(subject.spatial_shape)
        group = await MetaGroup.open(
            store_path, key, settings, ndim, scores, resume=resume, overwrite=overwrite
        )
    try:
        if budget is not None:  # after the store's refusals, before any copy is sent
            budget(key, planned_queries(plan, subject, key))
        outcome.resumed = group.resumed if group is not None else 0
        if progress is not None:
            progress.add(outcome.resumed)

        async def scores_on(variant: Subject, variant_key: str) -> np.ndarray:
            """Every metric × attribution on one input (x or a copy), with x's target."""
            values = np.full((len(plan.choices), len(names)), np.nan)

            async def one(m: int, a: int) -> None:
                case = plan.case(
                    variant, variant_key, attribution=maps[names[a]], target=target,
                    attribution_name=names[a], mask=truth,
                )  # fmt: skip
                choice = plan.choices[m]
                values[m, a] = (await choice.spec.compute(case, choice.params, scorer)).score

            async with anyio.create_task_group() as tasks:
                for a in range(len(names)):
                    for m in range(len(plan.choices)):
                        tasks.start_soon(one, m, a)
            return values

        async def original() -> None:
            found = group.original() if group is not None else None
            if found is not None:
                outcome.q[:] = found
                return
            outcome.q[:] = await scores_on(subject, key)
            if group is not None:
                await group.commit_original(target, outcome.q)
            if progress is not None:
                progress.add()

        async def noisy(t: int, i: int, p: int) -> None:
            index = unit_index(plan.shape, t, i, p)
            found = group.copy(index) if group is not None else None
            if found is not None:
                outcome.kept[t, i, p], outcome.q_hat[t, i, p] = found
                return
            async with copies:
                rng = copy_generator(plan.seed, t, i, p, key)
                variant = replace(subject, tensor=perturbed(subject.tensor, plan.noises[t], rng))
                name = copy_key(key, t, i, p)
                probe = Case(variant, np.zeros(1), 0, input_key=name).original()
                predicted = await scorer.classify(probe, None)
                held = predicted == target
                keep = held if TESTS[t] == "resilience" else not held
                if keep:
                    outcome.q_hat[t, i, p] = await scores_on(variant, name)
            outcome.kept[t, i, p] = keep
            if group is not None:
                attributes = {"test": TESTS[t], "round": i, "copy": p}
                await group.commit_copy(index, predicted, keep, outcome.q_hat[t, i, p], attributes)
            if progress is not None:
                progress.add()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(original)
            for t, i, p in np.ndindex(plan.shape):
                tasks.start_soon(noisy, t, i, p)
        if group is not None:
            kept = {test: int(outcome.kept[t].sum()) for t, test in enumerate(TESTS)}
            await group.finish(
                {"source": str(subject.source or key), "meta_evaluation": {"kept": kept}}
            )
    finally:
        if group is not None:
            group.close()
    return outcome
