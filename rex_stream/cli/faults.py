"""The CLI's fault handling: the retry budget, the call deadline, and SIGTERM as an interrupt."""

from __future__ import annotations

import argparse
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType

from rex_stream.config import ExplainConfig
from rex_stream.engine.retry import DEFAULT_RETRY_S
from rex_stream.errors import ConfigError

#: Exit status of a run ended by SIGTERM (128 + 15, as a shell reports it).
TERMINATED_EXIT = 128 + signal.SIGTERM


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--retry-s`` (the timeout flag is the model group's ``--timeout-s``)."""
    parser.add_argument(
        "--retry-s",
        type=float,
        default=None,
        help="retry backend calls that fail transiently (5xx, 429, resets, refused "
        f"connections, gRPC UNAVAILABLE) for up to this many seconds (default "
        f"{DEFAULT_RETRY_S:g}; 0: fail at once)",
    )


def apply(args: argparse.Namespace, config: ExplainConfig) -> ExplainConfig:
    """Check ``--timeout-s`` and put ``--retry-s`` into the config."""
    timeout = getattr(args, "timeout_s", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(
            f"--timeout-s {timeout:g}: the deadline of each backend call must be a positive "
            "number of seconds",
            key="--timeout-s",
        )
    retry = getattr(args, "retry_s", None)
    if retry is None:
        return config
    if not (math.isfinite(retry) and retry >= 0):
        raise ConfigError(
            f"--retry-s {retry:g}: give a number of seconds >= 0 (0: no retries)", key="--retry-s"
        )
    return replace(config, scheduler=replace(config.scheduler, retry_s=retry))


class Terminated:
    """Whether SIGTERM arrived during :func:`sigterm_interrupts`."""

    received = False


@contextmanager
def sigterm_interrupts() -> Iterator[type[Terminated]]:
    """Handle SIGTERM as SIGINT: the run is cancelled, backends are closed (Triton shared
    memory unregistered), the store stays resumable. The previous handler comes back after."""
    Terminated.received = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        Terminated.received = True
        handler = signal.getsignal(signal.SIGINT)  # asyncio's runner cancels its main task
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        yield Terminated
        return
    try:
        yield Terminated
    finally:
        signal.signal(signal.SIGTERM, previous)
