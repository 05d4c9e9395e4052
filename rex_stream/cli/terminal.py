"""The terminal's progress displays: one optional rich progress on stderr per command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from rex_stream.cli.log_setup import set_active_console

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


class RowsProgress(TerminalProgress):
    """A progress bar of rows answered against rows planned (the evaluations), on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        super().__init__(enabled)
        if self.progress is not None:
            self._task = self.progress.add_task("rows", total=None)

    def columns(self) -> list[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

        return ["rows", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]

    def update(self, answered: int, planned: int) -> None:
        """Show ``answered`` of ``planned`` rows."""
        if self.progress is not None:
            self.progress.update(self._task, completed=answered, total=max(planned, answered))
