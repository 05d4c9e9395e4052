"""Meta-evaluation (MetaQuantus' input-perturbation test): is a metric itself reliable?

For every input, ``perturbations`` noisy copies x̃ = clip(x + U(−n, n), min x, max x̃) are
drawn in each of ``iterations`` rounds, twice: with a tiny noise (resilience: the copies whose
prediction held are kept) and a large one (adversary: the copies whose prediction flipped are
kept). Each metric scores each attribution (the map of x, as MetaQuantus does) on the kept
copies, with x's target, all through the shared scheduler. Then, per metric:

- IAC_NR / IAC_AR: Wilcoxon's signed-rank p-value (two-sided, ``zsplit``) between the scores
  on x and on x̃ over the kept inputs, per attribution and copy; 1 − p for the adversary;
- IEC_NR: the share of kept inputs whose ranking of the attributions did not change;
- IEC_AR: the share of (attribution, kept input) whose score got worse (by the metric's
  direction: MetaQuantus passes the direction as a truthy string and always tests one way);
- MC: the mean of the four; MC_std over the rounds.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.registry import choose
from rex_stream.evaluation.run import (
    Attributions,
    expand_inputs,
    named_attributions,
    scoring_session,
)
from rex_stream.evaluation.scoring import RowScorer
from rex_stream.evaluation.sources import MapSource, load_map, load_mask
from rex_stream.explain import raise_first_error
from rex_stream.modes import load_subject

TESTS = ("resilience", "adversary")


@dataclass(frozen=True)
class MetaScores:
    """One metric's meta-consistency: per-round arrays and their means."""

    iac_nr: np.ndarray
    iac_ar: np.ndarray
    iec_nr: np.ndarray
    iec_ar: np.ndarray

    @property
    def per_round(self) -> np.ndarray:
        """MC of each round."""
        return np.stack([self.iac_nr, self.iac_ar, self.iec_nr, self.iec_ar]).mean(axis=0)

    def summary(self) -> dict[str, float]:
        """The means, MC and MC_std."""
        return {
            "IAC_NR": float(self.iac_nr.mean()),
            "IAC_AR": float(self.iac_ar.mean()),
            "IEC_NR": float(self.iec_nr.mean()),
            "IEC_AR": float(self.iec_ar.mean()),
            "MC": float(self.per_round.mean()),
            "MC_std": float(self.per_round.std()),
        }


@dataclass
class MetaEvaluation:
    """What :func:`meta_evaluate` returns."""

    results: dict[str, MetaScores]
    queries: int
    calls: int
    wall_s: float
    settings: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "input_perturbation_test": {k: v.summary() for k, v in self.results.items()},
            "settings": self.settings,
            "queries": self.queries,
            "calls": self.calls,
            "wall_s": round(self.wall_s, 3),
        }

    def table(self) -> str:
        """One line per metric."""
        width = max(len(k) for k in self.results) + 2
        head = ("IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR", "MC", "MC_std")
        lines = ["metric".ljust(width) + "".join(h.rjust(9) for h in head)]
        for label, scores in self.results.items():
            values = scores.summary()
            lines.append(label.ljust(width) + "".join(f"{values[h]:9.3f}" for h in head))
        lines.append(f"{self.queries} queries in {self.calls} calls, {self.wall_s:.1f} s")
        return "\n".join(lines)


def perturbed(x: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """x + U(−noise, noise), clipped to [min x, max of the noisy copy] (MetaQuantus)."""
    noisy = x + rng.uniform(-noise, noise, size=x.shape).astype(x.dtype)
    return np.clip(noisy, x.min(), noisy.max()).astype(x.dtype)


def wilcoxon_p(q: np.ndarray, q_hat: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value with ``zsplit`` (0 when it cannot be computed)."""
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        raise ConfigError("meta-evaluation needs scipy: pip install scipy") from None
    if q.size == 0:
        return 0.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(wilcoxon(q, q_hat, alternative="two-sided", zero_method="zsplit")[1])
    except ValueError:
        return 0.0
    return p if np.isfinite(p) else 0.0


async def meta_evaluate(
    inputs: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
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
    backend_settings: BackendSettings | None = None,
) -> MetaEvaluation:
    """MetaQuantus' input-perturbation test of ``metrics`` over ``inputs`` and attributions."""
    started = time.perf_counter()
    choices = choose(metrics) if isinstance(metrics, str) else list(metrics)
    named = named_attributions(attributions)
    if iterations < 1 or perturbations < 1:
        raise ConfigError("meta-evaluation needs at least one iteration and one perturbation")
    sources = expand_inputs(inputs)
    config = config or ExplainConfig()
    noises = {"resilience": noise_resilience, "adversary": noise_adversary}
    shape = (len(TESTS), iterations, perturbations, len(sources))
    with raise_first_error():
        async with scoring_session(backend, config, backend_settings) as session:
            info, resolved, scheduler, scorer = session
            cases: list[dict[str, Case]] = []
            for key, source in sources:
                subject = load_subject(source, info, resolved)
                subject.name = key
                truth = load_mask(mask, key, subject) if mask is not None else None
                probe = Case(subject, np.zeros(1), 0, input_key=key).original()
                target = await scorer.classify(probe, resolved.scoring.target)
                maps = {name: load_map(src, key, subject, name) for name, src in named.items()}
                cases.append(
                    {
                        name: Case(subject, a, target, False, seed, key, name, truth)
                        for name, a in maps.items()
                    }
                )
            kept = np.zeros(shape, dtype=bool)
            noisy: dict[tuple[int, int, int, int], dict[str, Case]] = {}

            async def draw(t: int, i: int, p: int, n: int) -> None:
                first = next(iter(cases[n].values()))
                rng = np.random.default_rng([seed, t, i, p, n])
                tensor = perturbed(first.subject.tensor, noises[TESTS[t]], rng)
                subject = replace(first.subject, tensor=tensor)
                key = f"{first.input_key}~{TESTS[t]}{i}.{p}"
                probe = Case(subject, np.zeros(1), 0, input_key=key).original()
                predicted = await scorer.classify(probe, None)
                held = predicted == first.target
                kept[t, i, p, n] = held if TESTS[t] == "resilience" else not held
                noisy[t, i, p, n] = {
                    name: replace(case, subject=subject, input_key=key, _tokens={})
                    for name, case in cases[n].items()
                }

            async with anyio.create_task_group() as group:
                for index in np.ndindex(shape):
                    group.start_soon(draw, *index)
            results = {}
            for choice in choices:
                results[choice.label] = await _meta_scores(
                    choice, cases, noisy, kept, named, scorer, shape
                )
            stats = scheduler.stats
    return MetaEvaluation(
        results,
        scorer.sent,
        stats.calls,
        time.perf_counter() - started,
        {
            "iterations": iterations,
            "perturbations": perturbations,
            "noise_resilience": noise_resilience,
            "noise_adversary": noise_adversary,
            "seed": seed,
            "attributions": list(named),
            "inputs": [key for key, _ in sources],
        },
    )


async def _meta_scores(
    choice: MetricChoice,
    cases: list[dict[str, Case]],
    noisy: dict[tuple[int, int, int, int], dict[str, Case]],
    kept: np.ndarray,
    named: dict[str, MapSource],
    scorer: RowScorer,
    shape: tuple[int, ...],
) -> MetaScores:
    """Score one metric on x and on every kept copy, then reduce to IAC / IEC."""
    methods = list(named)
    q = np.full((len(methods), len(cases)), np.nan)
    q_hat = np.full((*shape, len(methods)), np.nan)
    limiter = anyio.CapacityLimiter(64)

    async def unperturbed(m: int, n: int) -> None:
        async with limiter:
            case = cases[n][methods[m]]
            q[m, n] = (await choice.spec.compute(case, choice.params, scorer)).score

    async def on_copy(index: tuple[int, int, int, int], m: int) -> None:
        async with limiter:
            case = noisy[index][methods[m]]
            where = (*index, m)
            q_hat[where] = (await choice.spec.compute(case, choice.params, scorer)).score

    async with anyio.create_task_group() as group:
        for m in range(len(methods)):
            for n in range(len(cases)):
                group.start_soon(unperturbed, m, n)
            for index in np.ndindex(shape):
                if kept[index]:
                    group.start_soon(on_copy, index, m)
    tests, rounds, copies = shape[:3]
    iac = np.zeros((tests, rounds, copies, len(methods)))
    iec = np.zeros((tests, rounds, copies))
    better_high = choice.spec.higher_is_better
    for t, i, p in np.ndindex(tests, rounds, copies):
        chosen = kept[t, i, p]
        for m in range(len(methods)):
            value = wilcoxon_p(q[m, chosen], q_hat[t, i, p, chosen, m])
            iac[t, i, p, m] = value if TESTS[t] == "resilience" else 1.0 - value
        star, hat = q[:, chosen], q_hat[t, i, p, chosen, :].T
        if not chosen.any():
            iec[t, i, p] = np.nan
        elif TESTS[t] == "resilience":
            same = np.argsort(star, axis=0) == np.argsort(hat, axis=0)
            iec[t, i, p] = same.mean()
        else:
            worse = hat < star if better_high else hat > star
            iec[t, i, p] = worse.mean()
    return MetaScores(
        iac_nr=iac[0].mean(axis=(1, 2)),
        iac_ar=iac[1].mean(axis=(1, 2)),
        iec_nr=_round_means(iec[0]),
        iec_ar=_round_means(iec[1]),
    )


def _round_means(values: np.ndarray) -> np.ndarray:
    """Mean per round over the copies that kept any input (0 for a round with none)."""
    means = np.zeros(values.shape[0])
    for index, row in enumerate(values):
        finite = row[np.isfinite(row)]
        means[index] = finite.mean() if finite.size else 0.0
    return means


def meta_evaluate_sync(*args: Any, **kwargs: Any) -> MetaEvaluation:
    """Blocking :func:`meta_evaluate`."""

    async def run() -> MetaEvaluation:
        return await meta_evaluate(*args, **kwargs)

    return anyio.run(run)
