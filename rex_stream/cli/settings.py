"""The main command's effective settings: defaults, then the config file, then the flags."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from rex_stream.cli import bounding_box, method_options, resource_options, rex_options
from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError
from rex_stream.rex_compat.config_file import default_config_path, load_config

#: settings keys (as config errors name them) → (the flag a user types, its argparse name)
FLAGS = {
    "causal.iters": ("--iters", "iters"),
    "causal.tree_depth": ("--tree-depth", "tree_depth"),
    "causal.min_box_size": ("--min-box-size", "min_box_size"),
    "causal.search_limit": ("--search-limit", "search_limit"),
    "rex.batch_size": ("--batch-size", "batch_size"),
    "max_inflight": ("--max-inflight", "max_inflight"),
    "linger_ms": ("--linger-ms", "linger_ms"),
    "explanation.chunk_size": ("--chunk-size", "chunk_size"),
    "explanation.minimum_confidence_threshold": ("--confidence", "confidence"),
    "rex.onnx.means": ("--means", "means"),
    "rex.onnx.stds": ("--stds", "stds"),
    "rex.onnx.norm": ("--norm", "norm"),
    "rex.mask_value": ("--mask-value", "mask_value"),
}


def resolve_config(args: argparse.Namespace, base: ExplainConfig) -> ExplainConfig:
    """Defaults, then the config file, then the command line (the command line wins).

    A value the user typed that the settings refuse is reported under the flag's name.
    """
    config = file_config(args, base)
    try:
        return apply_flags(args, config)
    except ConfigError as exc:
        flag = FLAGS.get(exc.key or "")
        if flag and exc.detail is not None and getattr(args, flag[1], None) is not None:
            raise ConfigError(f"{flag[0]} {exc.detail}", key=flag[0], detail=exc.detail) from exc
        raise


def file_config(args: argparse.Namespace, base: ExplainConfig) -> ExplainConfig:
    """``base`` with the config file's keys (``--config``, else ``./rex.toml`` or
    ``~/.config/rex.toml``) applied; says on stderr which file it read."""
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0", key="--seed")
    config_path = Path(args.config) if args.config else default_config_path()
    config = load_config(config_path, base) if config_path else base
    if config_path:
        config = replace(config, config_file=str(config_path))
        if not getattr(args, "quiet", False):
            print(f"rex-stream: settings from {config_path}", file=sys.stderr)
    return config


def apply_flags(args: argparse.Namespace, config: ExplainConfig) -> ExplainConfig:
    """``config`` with every flag the user gave applied on top."""
    search = config.search
    if args.iters is not None:
        search = replace(search, iters=args.iters)
    if args.seed is not None:
        search = replace(search, seed=args.seed)
    for flag in ("min_box_size", "tree_depth", "search_limit"):
        if getattr(args, flag) is not None:
            search = replace(search, **{flag: getattr(args, flag)})
    extraction = config.extraction
    if args.no_extract:
        extraction = replace(extraction, extract=False)
    if args.strategy is not None:
        extraction = replace(extraction, strategy=args.strategy)
    if args.chunk_size is not None:
        extraction = replace(extraction, chunk_size=args.chunk_size)
    if args.extraction_search:
        extraction = replace(extraction, search=args.extraction_search)
    if args.confidence is not None:
        extraction = replace(extraction, minimum_confidence_threshold=args.confidence)
    evaluation = replace(config.evaluation, analyse=True) if args.analyse else config.evaluation
    config = replace(config, search=search, extraction=extraction, evaluation=evaluation)
    config = method_options.explain_config(args, config, sweeps=True)  # reading, scoring, …
    config = bounding_box.apply_arguments(args, config)
    return resource_options.apply_arguments(args, rex_options.apply_arguments(args, config))


#: How ``-v`` describes a per-iteration mask value.
SWEEP_TEXT = {
    "random": "per iteration: uniform in the input's [min, max], seeded with seed + i + 1",
    "linear": "per iteration: min to max in equal steps over the iterations",
}


def settings_table(config: ExplainConfig) -> str:
    """The effective settings (defaults, config file and flags combined), as ``-v`` shows."""
    from dataclasses import fields, is_dataclass

    from rich.console import Console
    from rich.table import Table

    source = config.config_file or "no config file"
    table = Table(title=f"effective settings ({source})", title_justify="left")
    table.add_column("group")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for group in fields(config):
        values = getattr(config, group.name)
        if not is_dataclass(values):
            continue
        for item in fields(values):
            value = getattr(values, item.name)
            shown = str(getattr(value, "value", value))
            if item.name == "mask_value" and value in SWEEP_TEXT:
                shown = f"{value} ({SWEEP_TEXT[value]})"
            table.add_row(group.name, item.name, shown)
    console = Console(file=sys.stderr, force_terminal=False, width=100)
    with console.capture() as captured:
        console.print(table)
    return captured.get()
