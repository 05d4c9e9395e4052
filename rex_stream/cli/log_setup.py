"""The CLI's logging: rex-stream's own messages at the level ``-v``/``-q`` ask for, every
other library's at WARNING, and log lines printed above a live progress display, never onto it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

#: The format of every log line on stderr.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _ActiveConsole:
    """The rich console of the progress display that is live now (None: plain stderr)."""

    console: Any = None


def set_active_console(console: Any) -> None:
    """Route log lines through ``console`` (a live rich display) until called with None."""
    _ActiveConsole.console = console


class TerminalHandler(logging.Handler):
    """Writes records to stderr, or through the live progress display's console so that a
    warning lands on a line of its own above the bar instead of inside it."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print one formatted record."""
        try:
            message = self.format(record)
            console = _ActiveConsole.console
            if console is not None:
                console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
        except Exception:  # a logging failure must never end the run
            self.handleError(record)


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """rex-stream's loggers at WARNING (``-v``: INFO, ``-vv``: DEBUG); third-party loggers
    (matplotlib, asyncio, urllib3, …) stay at WARNING whatever ``-v`` says. ``-q`` silences
    the progress display only: warnings and errors are still printed."""
    level = logging.WARNING if quiet else max(logging.WARNING - 10 * verbose, logging.DEBUG)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, TerminalHandler):
            root.removeHandler(handler)
    handler = TerminalHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("rex_stream").setLevel(level)
