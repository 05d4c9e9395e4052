"""``rex-stream evaluate --detections FORMAT``: score stored explanations of detections, each
against its own box (energy in the box, pointing game, …) and its own D-RISE similarity
(insertion, deletion, …)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import anyio

from rex_stream.cli import method_options
from rex_stream.cli.terminal import RowsProgress
from rex_stream.config import ExplainConfig
from rex_stream.detection import LAYOUTS
from rex_stream.errors import ConfigError
from rex_stream.evaluation.detection import DetectionEvaluation, evaluate_detections
from rex_stream.evaluation.detection.run import detection_metrics
from rex_stream.evaluation.sources import split_named


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--detections`` flag of ``evaluate``."""
    parser.add_argument(
        "--detections",
        choices=sorted(LAYOUTS),
        metavar="FORMAT",
        help="the attributions are a detection run's store (RUNS.zarr): score every target "
        "against its box (energy-in-box, pointing-game, …) and its D-RISE similarity "
        f"(insertion, deletion, …); FORMAT: {', '.join(sorted(LAYOUTS))}",
    )


#: evaluate's flags that a detection evaluation does not take, and why
REFUSED = (
    ("mask", "--mask", "each target's box is its mask"),
    ("store", "--store", "detection scores are not stored yet"),
    ("resume", "--resume", "detection scores are not stored yet"),
    ("meta_evaluation", "--meta-evaluation", "not for detections yet"),
    ("explainer", "--explainer", "re-explaining metrics do not apply to detections yet"),
    ("quantus_compatible", "--quantus-compatible", "Quantus has no detection metrics"),
    ("plot", "--plot", "not drawn for detections yet"),
)


def run(
    args: argparse.Namespace, resolve_config: Callable[[argparse.Namespace], ExplainConfig]
) -> int:
    """Evaluate the detection runs the arguments name; returns the exit code."""
    for attribute, flag, why in REFUSED:
        if getattr(args, attribute, None):
            raise ConfigError(f"{flag} with --detections: {why}", key=flag)
    choices = detection_metrics(args.metrics)
    if not args.attribution:
        raise ConfigError(
            "no attribution: pass --attribution RUNS.zarr, the store of "
            "rex-stream INPUT --detections FORMAT --store RUNS.zarr"
        )
    named: dict[str, str] = {}
    for value in args.attribution:
        name, source = split_named(value)
        name = name or f"rex{len(named) or ''}"
        if name in named:
            raise ConfigError(f"--attribution: the name {name!r} is used twice")
        named[name] = str(source)
    if args.model and args.backend:
        raise ConfigError("give --model or --backend, not both")
    spec = args.backend or args.model
    if not spec:
        raise ConfigError("no model: pass --model model.onnx or --backend SPEC")
    config = resolve_config(args)
    settings = method_options.backend_settings(args, spec, config)

    async def main() -> DetectionEvaluation:
        return await evaluate_detections(
            args.input,
            spec,
            named,
            choices,
            layout=args.detections,
            config=config,
            seed=args.seed,
            backend_settings=settings,
            allow_mismatch=args.allow_mismatch,
            on_progress=progress,
        )

    with RowsProgress(not args.quiet and sys.stderr.isatty()) as display:
        progress = display.count if display.enabled else None
        result = anyio.run(main)
    print(json.dumps(result.summary(), indent=2) if args.json else result.table())
    return 0
