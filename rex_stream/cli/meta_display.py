"""The progress display of ``rex-stream evaluate --meta``: units, queries, mutants/s, ETA."""

from __future__ import annotations

import sys
import time
from typing import Any

from rex_stream.cli.terminal import TerminalProgress, counted_columns


class MetaDisplay(TerminalProgress):
    """A rich progress bar of meta-evaluation units (an input unperturbed; one noisy copy or
    noisy model per input) done against planned, with the model queries so far, their rate
    and the time left, on stderr."""

    def __init__(self, enabled: bool, what: str = "units") -> None:
        super().__init__(enabled)
        self.started = time.perf_counter()
        self._task = None
        if self.progress is not None:
            self._task = self.progress.add_task(what, total=None, queries=0, rate=0.0)

    def columns(self) -> list[Any]:
        info = "{task.fields[queries]} queries, {task.fields[rate]:.0f} mutants/s"
        return counted_columns(info, time_left=True, eta_label=True)

    def update(self, done: int, planned: int, queries: int) -> None:
        """Show ``done`` of ``planned`` units and the queries sent so far."""
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.started
        rate = queries / elapsed if elapsed > 0 else 0.0
        self.progress.update(
            self._task, completed=done, total=max(planned, done), queries=queries, rate=rate
        )


def wanted(args: Any) -> bool:
    """A display on a terminal, unless ``-q`` or ``--json``."""
    return not args.quiet and not args.json and sys.stderr.isatty()
