"""The reductions of both MetaQuantus tests: IAC, IEC and MC from q, q̂ and the kept flags.

q holds each metric's scores of every attribution (method) on the unperturbed inputs; q̂ the
scores under each perturbation (test, round, copy: a noisy copy of the input, or a noisy model)
where the input was kept, NaN elsewhere. :func:`reduce_scores` turns them into MetaQuantus'
IAC_NR, IAC_AR, IEC_NR and IEC_AR per round; :class:`MetaEvaluation` is what a test returns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.errors import ConfigError

#: The two tests of each meta-evaluation: resilience (tiny noise, kept where the prediction
#: held) and adversary (large noise, kept where it changed).
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


@dataclass(frozen=True)
class MetaArrays:
    """One metric's raw material: q (attributions, inputs), q̂ (tests, rounds, copies, inputs,
    attributions; NaN where the copy was not kept) and the kept flags (tests, rounds, copies,
    inputs) — what MetaQuantus' ``results_eval_scores[_perturbed]`` and
    ``results_indices_perturbed`` hold."""

    q: np.ndarray
    q_hat: np.ndarray
    kept: np.ndarray


@dataclass
class MetaEvaluation:
    """What :func:`meta_evaluate` returns."""

    results: dict[str, MetaScores]
    queries: int
    calls: int
    wall_s: float
    settings: dict[str, Any]
    arrays: dict[str, MetaArrays] = field(default_factory=dict)
    resumed: int = 0  # units (inputs and copies) read back from the store

    def summary(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "input_perturbation_test": {k: v.summary() for k, v in self.results.items()},
            "settings": self.settings,
            "resumed": self.resumed,
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


def wilcoxon_p(q: np.ndarray, q_hat: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value with ``zsplit`` (0 when it cannot be computed)."""
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        raise ConfigError(f"meta-evaluation needs scipy: {install_command('evaluation')}") from None
    if q.size == 0:
        return 0.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(wilcoxon(q, q_hat, alternative="two-sided", zero_method="zsplit")[1])
    except ValueError:
        return 0.0
    return p if np.isfinite(p) else 0.0


def reduce_scores(arrays: MetaArrays, higher_is_better: bool) -> MetaScores:
    """IAC and IEC per round from q, q̂ and the kept flags (MetaQuantus' reductions)."""
    q, q_hat, kept = arrays.q, arrays.q_hat, arrays.kept
    tests, rounds, copies = kept.shape[:3]
    methods = q.shape[0]
    iac = np.zeros((tests, rounds, copies, methods))
    iec = np.zeros((tests, rounds, copies))
    for t, i, p in np.ndindex(tests, rounds, copies):
        chosen = kept[t, i, p]
        for m in range(methods):
            value = wilcoxon_p(q[m, chosen], q_hat[t, i, p, chosen, m])
            iac[t, i, p, m] = value if TESTS[t] == "resilience" else 1.0 - value
        star, hat = q[:, chosen], q_hat[t, i, p, chosen, :].T
        if not chosen.any():
            iec[t, i, p] = np.nan
        elif TESTS[t] == "resilience":
            same = np.argsort(star, axis=0) == np.argsort(hat, axis=0)
            iec[t, i, p] = same.mean()
        else:
            worse = hat < star if higher_is_better else hat > star
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
