"""Killing a run partway: start it, wait until it has committed enough, then SIGKILL it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any


def kill_mid_run(
    command: list[str],
    committed: Callable[[], int],
    at_least: int,
    what: str,
    timeout_s: float,
    **popen: Any,
) -> None:
    """Run ``command`` until ``committed()`` (polled from its store) reaches ``at_least``, then
    kill it with SIGKILL; ``what`` names the unit in the failure messages."""
    process = subprocess.Popen(command, **popen)
    try:
        deadline = time.monotonic() + timeout_s
        while committed() < at_least:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"no {what} was committed in time"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
