"""Progress events, for a CLI display or an application that watches (or stops) a run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

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
        return eta_at_pace(self.iterations_done, self.iterations_total, self.elapsed_s)

    @property
    def traffic_note(self) -> str:
        """``call 120 ms, 3 in flight, ETA 0:42`` (what the progress line shows), and
        ``server down 12 s`` while the backend fails."""
        return traffic_note(self.latency_s, self.in_flight, self.down_s, self.eta_s)

    @property
    def fault_note(self) -> str:
        """``retries 3 (2 waiting)`` once a backend call was retried, else empty."""
        return fault_note(self.retries, self.retrying)

    @property
    def mutants_per_s(self) -> float:
        """Backend throughput since the start of the run."""
        return self.queries / self.elapsed_s if self.elapsed_s > 0 else 0.0


def eta_at_pace(done: float, total: float, elapsed_s: float) -> float | None:
    """Seconds left when ``done`` of ``total`` units took ``elapsed_s``: None before the first
    unit, 0 once all are done. The one ETA every progress line shows (iterations of one
    input, inputs of a directory run, rows of an evaluation)."""
    if done <= 0:
        return None
    if done >= total:
        return 0.0
    return elapsed_s / done * (total - done)


def traffic_note(
    latency_s: float, in_flight: int, down_s: float | None, eta_s: float | None
) -> str:
    """``call 120 ms, 3 in flight, ETA 0:42``, led by ``server down 12 s`` while the backend
    fails (no ETA then): the traffic facts of every progress line, spelled once."""
    parts = []
    if down_s is not None:
        parts.append(f"server down {down_s:.0f} s")
    if latency_s:
        parts.append(f"call {latency_s * 1000:.0f} ms")
    parts.append(f"{in_flight} in flight")
    if eta_s is not None and down_s is None:
        minutes, seconds = divmod(round(eta_s), 60)
        parts.append(f"ETA {minutes}:{seconds:02d}")
    return ", ".join(parts)


def fault_note(retries: int, retrying: int) -> str:
    """``retries 3 (2 waiting)`` once a backend call was retried, else empty."""
    if not retries:
        return ""
    waiting = f" ({retrying} waiting)" if retrying else ""
    return f"retries {retries}{waiting}"


#: seconds between the snapshots of a run whose own events may pause (a server that is down)
TICK_S = 1.0


@asynccontextmanager
async def ticking(
    report: Callable[[], None] | None, period_s: float = TICK_S
) -> AsyncIterator[None]:
    """Call ``report`` every ``period_s`` while the block runs (nothing when it is None), so a
    progress line keeps moving, and can say the server is down, while no answer comes."""
    if report is None:
        yield
        return

    async def tick() -> None:
        while True:
            await anyio.sleep(period_s)
            report()

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        try:
            yield
        finally:
            group.cancel_scope.cancel()
