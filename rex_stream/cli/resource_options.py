"""Command-line options that bound what a run may take from the machine: ``--memory-gib``."""

from __future__ import annotations

import argparse
from dataclasses import replace

from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the resource options to the parser."""
    group = parser.add_argument_group("resources")
    group.add_argument(
        "--memory-gib",
        type=float,
        help="memory budget of the run in GiB (default: a quarter of the machine's); a "
        "--batch-size whose calls would not fit with the model's memory per row is lowered",
    )


def apply_arguments(args: argparse.Namespace, config: ExplainConfig) -> ExplainConfig:
    """The config with the resource options applied."""
    memory = getattr(args, "memory_gib", None)
    if memory is None:
        return config
    if not memory > 0:
        raise ConfigError(f"--memory-gib {memory:g}: must be > 0", key="--memory-gib")
    if memory == float("inf"):
        raise ConfigError(
            f"--memory-gib {memory:g}: must be a finite number of GiB", key="--memory-gib"
        )
    return replace(config, scheduler=replace(config.scheduler, memory_gib=memory))
