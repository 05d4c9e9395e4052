"""The terminal's progress displays: one optional rich progress on stderr per command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

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
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
