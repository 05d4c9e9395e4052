"""The terminal's progress displays: one optional rich progress on stderr per command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from rex_stream.cli.log_setup import set_active_console
from rex_stream.progress import Progress

T = TypeVar("T", bound="TerminalProgress")


class TerminalProgress:
    """A rich progress display on stderr, used as a context manager; a no-op when disabled
    (stderr not a terminal, or ``-q``). Subclasses name their columns and feed ``progress``."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(*self.columns(), console=Console(stderr=True), transient=True)

    def columns(self) -> Sequence[Any]:
        """The rich columns shown (imported lazily: rich is needed only on a terminal)."""
        raise NotImplementedError

    def __enter__(self: T) -> T:
        if self.progress is not None:
            self.progress.start()
            set_active_console(self.progress.console)  # log lines go above the bar
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            set_active_console(None)
            self.progress.stop()


def counted_columns(info: str, time_left: bool = False, eta_label: bool = False) -> list[Any]:
    """The usual columns: description, bar, done/total, ``info`` (a rich format string of the
    task's fields), time elapsed, and with ``time_left`` the time left (``eta_label``: after
    the word "ETA")."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(info),
        TimeElapsedColumn(),
    ]
    if time_left:
        columns += (
            [TextColumn("ETA"), TimeRemainingColumn()] if eta_label else [TimeRemainingColumn()]
        )
    return columns


def traffic_text(event: Progress) -> str:
    """The traffic part of every progress line (one input, a directory run, an evaluation):
    call latency, calls in flight, ETA or how long the server has been down, and retries."""
    faults = event.fault_note
    return f"{event.traffic_note}  {faults}" if faults else event.traffic_note


class RowsProgress(TerminalProgress):
    """A progress bar of rows answered against rows planned (the evaluations), on stderr,
    with the traffic facts of :func:`traffic_text` when the run reports them."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        super().__init__(enabled)
        if self.progress is not None:
            self._task = self.progress.add_task("rows", total=None, info="")

    def columns(self) -> list[Any]:
        return counted_columns("{task.fields[info]}")

    def count(self, answered: int, planned: int) -> None:
        """Show ``answered`` of ``planned`` rows (a run that reports no traffic)."""
        if self.progress is not None:
            self.progress.update(self._task, completed=answered, total=max(planned, answered))

    def update(self, event: Progress) -> None:
        """Show one snapshot: rows answered of planned (its done and total), and its traffic."""
        if self.progress is None:
            return
        done, planned = event.iterations_done, event.iterations_total
        self.progress.update(
            self._task, completed=done, total=max(planned, done), info=traffic_text(event)
        )
