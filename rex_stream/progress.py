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
    latency_s: float = 0.0  # a backend call's round trip, smoothed over recent calls
    in_flight: int = 0  # calls with the backend right now
    down_s: float | None = None  # how long the backend has been failing, while it is

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
        now = time.perf_counter()
        elapsed = now - started
        down = None if stats.down_since is None else max(0.0, now - stats.down_since)
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
            stats.latency_s,
            stats.in_flight,
            down,
        )

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before the first iteration is done)."""
        if self.iterations_done <= 0 or self.iterations_done >= self.iterations_total:
            return None if self.iterations_done <= 0 else 0.0
        per_iteration = self.elapsed_s / self.iterations_done
        return per_iteration * (self.iterations_total - self.iterations_done)

    @property
    def traffic_note(self) -> str:
        """``call 120 ms, 3 in flight, ETA 0:42`` (what the progress line shows), and
        ``server down 12 s`` while the backend fails."""
        parts = []
        if self.down_s is not None:
            parts.append(f"server down {self.down_s:.0f} s")
        if self.latency_s:
            parts.append(f"call {self.latency_s * 1000:.0f} ms")
        parts.append(f"{self.in_flight} in flight")
        eta = self.eta_s
        if eta is not None and self.down_s is None:
            minutes, seconds = divmod(round(eta), 60)
            parts.append(f"ETA {minutes}:{seconds:02d}")
        return ", ".join(parts)

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
