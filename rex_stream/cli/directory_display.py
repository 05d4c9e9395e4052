"""Directory mode's terminal display: overall and per-input progress, then a summary table."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from rex_stream.cli.terminal import TerminalProgress, counted_columns, traffic_text
from rex_stream.progress import Progress

#: at most this many per-input bars are shown at once (the rest wait their turn)
MAX_INPUT_BARS = 8


class DirectoryDisplay(TerminalProgress):
    """A rich live display on stderr: inputs done / failed, mutants/s and the traffic facts of
    the single-input line overall (call latency, calls in flight, ETA, server downtime), one
    bar per input in flight. Disabled (a no-op) when stderr is not a terminal or with ``-q``."""

    def __init__(self, enabled: bool, total: int, names: list[str]) -> None:
        self._names = names
        self._bars: dict[int, Any] = {}
        self._started = time.perf_counter()
        self._queries_done = 0
        self._queries_live: dict[int, int] = {}
        self._iterations_live: dict[int, int] = {}
        self._total = total
        self._latest: Progress | None = None  # the shared scheduler's traffic, as last heard
        self.explained = self.failed = self.complete = 0
        super().__init__(enabled)
        if self.progress is not None:
            self._overall = self.progress.add_task("inputs", total=total, info="")

    def columns(self) -> list[Any]:
        return counted_columns("{task.fields[info]}")

    def input_progress(self, index: int, event: Progress) -> None:
        """One input's snapshot: its own bar (iterations) and the overall rate."""
        self._queries_live[index] = event.queries
        self._iterations_live[index] = event.iterations_done
        self._latest = event
        if self.progress is None:
            return
        bar = self._bars.get(index)
        if bar is None and len(self._bars) < MAX_INPUT_BARS:
            bar = self._bars[index] = self.progress.add_task(
                f"  {self._names[index][:40]}", total=event.iterations_total, info=""
            )
        if bar is not None:
            self.progress.update(
                bar,
                completed=event.iterations_done,
                total=event.iterations_total,
                info=event.phase,
            )
        self._refresh()

    def input_finished(self, index: int, outcome: str, queries: int = 0) -> None:
        """An input ended: ``outcome`` is ``explained``, ``failed`` or ``complete``."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        self._queries_done += queries
        self._queries_live.pop(index, None)
        self._iterations_live.pop(index, None)
        if self.progress is None:
            return
        bar = self._bars.pop(index, None)
        if bar is not None:
            self.progress.remove_task(bar)
        self.progress.advance(self._overall)
        self._refresh()

    def overall(self) -> Progress | None:
        """The whole run as one snapshot: iterations done of all the inputs still to explain
        (inputs already complete in the store take no time), over the time since the start,
        with the traffic the inputs last reported; None before any input reported."""
        if self._latest is None:
            return None
        iters = self._latest.iterations_total
        ended = self.explained + self.failed
        return replace(
            self._latest,
            phase="inputs",
            iterations_done=ended * iters + sum(self._iterations_live.values()),
            iterations_total=max(self._total - self.complete, 0) * iters,
            queries=self._queries_done + sum(self._queries_live.values()),
            elapsed_s=max(time.perf_counter() - self._started, 1e-9),
        )

    def status(self) -> str:
        """The overall line's text: mutants/s, failures, then :func:`traffic_text`."""
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        rate = (self._queries_done + sum(self._queries_live.values())) / elapsed
        failed = f", {self.failed} failed" if self.failed else ""
        overall = self.overall()
        traffic = f"  {traffic_text(overall)}" if overall is not None else ""
        return f"{rate:6.0f} mutants/s{failed}{traffic}"

    def _refresh(self) -> None:
        self.progress.update(self._overall, info=self.status())

    def summary_table(self, total: int, wall_s: float) -> str:
        """The closing table: explained / failed / already complete."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{total} inputs in {wall_s:.1f} s", title_justify="left")
        table.add_column("outcome")
        table.add_column("inputs", justify="right")
        table.add_row("explained", str(self.explained))
        table.add_row("already complete in the store (resumed)", str(self.complete))
        table.add_row("failed", str(self.failed), style="red" if self.failed else None)
        console = Console(file=sys.stdout, force_terminal=False, width=80)
        with console.capture() as captured:
            console.print(table)
        return captured.get()
