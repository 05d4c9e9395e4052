"""Progress events, for a CLI display or an application that watches (or stops) a run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rex_stream.engine.scheduler import SchedulerStats
    from rex_stream.engine.verdicts import Target


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run: its phase, iterations done, and backend traffic so far."""

    phase: str  # "target", "iteration", "extraction", "evaluation" or "done"
    iterations_done: int
    iterations_total: int
    queries: int
    calls: int
    mean_batch: float
    elapsed_s: float
    target: Target | None = None
    retries: int = 0  # backend calls repeated after transient faults so far
    retrying: int = 0  # calls waiting to be retried right now

    @classmethod
    def snapshot(
        cls,
        phase: str,
        done: int,
        total: int,
        stats: SchedulerStats,
        started: float,
        target: Target | None = None,
    ) -> Progress:
        """The state of a run that started at ``started`` (a ``perf_counter`` reading)."""
        elapsed = time.perf_counter() - started
        return cls(
            phase,
            done,
            total,
            stats.mutants,
            stats.calls,
            stats.mean_batch,
            elapsed,
            target,
            stats.retries,
            stats.retrying,
        )

    @property
    def fault_note(self) -> str:
        """``retries 3 (2 waiting)`` once a backend call was retried, else empty."""
        if not self.retries:
            return ""
        waiting = f" ({self.retrying} waiting)" if self.retrying else ""
        return f"retries {self.retries}{waiting}"

    @property
    def mutants_per_s(self) -> float:
        """Backend throughput since the start of the run."""
        return self.queries / self.elapsed_s if self.elapsed_s > 0 else 0.0
