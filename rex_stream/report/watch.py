"""Writing a report once, or again every few seconds while a job runs (each time atomically,
with :func:`~rex_stream.engine.atomic_file.write_atomically`: the file on disk is always a
complete page)."""

from __future__ import annotations

import time
from collections.abc import Callable


def watch(
    write: Callable[[], None],
    every_s: float,
    until: Callable[[], bool] = lambda: False,
    rounds: int | None = None,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Call ``write`` now and then every ``every_s`` seconds until ``until()`` holds after a
    write, or ``rounds`` writes were made (None: until interrupted); returns the writes made."""
    made = 0
    while True:
        started = time.monotonic()
        write()
        made += 1
        if until() or (rounds is not None and made >= rounds):
            return made
        (sleep or time.sleep)(max(0.0, every_s - (time.monotonic() - started)))
