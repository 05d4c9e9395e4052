"""``rex-stream evaluate``: score attribution maps with Quantus-style metrics, black-box."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from functools import partial
from pathlib import Path

import anyio

from rex_stream.cli import checks, evaluate_detection, meta_display, meta_model, method_options
from rex_stream.cli.inputs import add_inputs_argument, check_inputs_exist
from rex_stream.cli.log_setup import configure_logging
from rex_stream.cli.parser import OneLineParser
from rex_stream.cli.terminal import RowsProgress
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError
from rex_stream.evaluation.explainers import explainer_from_spec
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.metrics.registry import METRICS, choose
from rex_stream.evaluation.plan import re_explanations
from rex_stream.evaluation.report import Evaluation
from rex_stream.evaluation.sources import MapSource, default_name, split_named
from rex_stream.labels import check_labels_cover, labels_for_model, load_labels
from rex_stream.rex_compat.config_file import default_config_path, load_config

logger = logging.getLogger("rex_stream")


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate`` sub-command's arguments."""
    parser = OneLineParser(
        prog="rex-stream evaluate",
        description="Score attribution maps of a black-box model with Quantus' metrics "
        "(faithfulness, complexity, localisation), every query batched through one scheduler.",
    )
    add_inputs_argument(parser, optional=True)
    parser.add_argument(
        "--attribution",
        action="append",
        default=[],
        metavar="[NAME=]SOURCE",
        help="map to score (repeatable: one column each): A.npy, a directory of <stem>.npy, "
        "or a rex-stream store RUNS.zarr[/group]",
    )
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="score a stored map even when its group was made for another input, model or "
        "target (refused by default)",
    )
    parser.add_argument(
        "--metrics",
        help="comma-separated metrics with Quantus' parameter names, e.g. "
        '"pixel-flipping:features_in_step=224,selectivity:patch_size=16"',
    )
    parser.add_argument("--list-metrics", action="store_true", help="list metrics and exit")
    parser.add_argument("--mask", help="ground-truth mask (picture or .npy; or a directory)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random metric")
    parser.add_argument(
        "--quantus-compatible",
        action="store_true",
        help="Quantus 0.6.0's conventions: channel elements as features, its baselines",
    )
    method_options.add_backend_arguments(parser.add_argument_group("model"))
    method_options.add_reading_arguments(parser.add_argument_group("reading the input"))
    method_options.add_scheduling_arguments(parser.add_argument_group("scheduling"))
    prep = parser.add_argument_group("inputs")
    prep.add_argument("-c", "--config", help="rex.toml (default ./rex.toml, ~/.config/rex.toml)")
    prep.add_argument(
        "--max-queries", type=int, help="refuse a plan that needs more model queries than this"
    )
    parser.add_argument(
        "--explainer",
        metavar="rex[:iters=N,…]|python:mod:fn",
        help="what max-/avg-sensitivity and random-logit re-explain with: rex-stream's ReX "
        "search (settings iters (5), tree_depth, min_box_size, search_limit, seed), through "
        "the same scheduler, or a function (x, target) -> map",
    )
    meta = parser.add_argument_group("meta-evaluation (MetaQuantus' input-perturbation test)")
    meta.add_argument(
        "--meta-evaluation",
        "--meta",
        nargs="?",
        const="input",
        choices=("input", "model"),
        help="test the metrics themselves: IAC, IEC and MC over the inputs and attributions "
        "(with --store, every finished unit is committed and --resume continues it); "
        "--meta model: the model-perturbation test (local ONNX, --explainer)",
    )
    meta.add_argument("--meta-iterations", type=int, default=5, help="rounds (default 5)")
    meta.add_argument(
        "--meta-perturbations", type=int, default=10, help="noisy copies per round (default 10)"
    )
    meta.add_argument("--noise-resilience", type=float, default=0.001, help="default 0.001")
    meta.add_argument(
        "--noise-adversary", type=float, help="default 5.0 (input test), 0.5 (model test)"
    )
    meta_model.add_arguments(meta)
    out = parser.add_argument_group("outputs")
    method_options.add_store_arguments(out, "Zarr store for results and curves (resumable)")
    out.add_argument(
        "--plot", help="picture of the curves and the per-metric ranking (PNG, PDF or SVG)"
    )
    out.add_argument(
        "--labels",
        metavar="FILE",
        help="class names, one per line (line i names class i), or `imagenet`; the bundled "
        "ImageNet model gets ImageNet's names without it",
    )
    method_options.add_terminal_arguments(parser.add_argument_group("terminal"))
    evaluate_detection.add_arguments(parser)
    return parser


def resolve_config(args: argparse.Namespace) -> ExplainConfig:
    """Defaults, then the config file, then the command line."""
    config_path = Path(args.config) if args.config else default_config_path()
    config = load_config(config_path) if config_path else ExplainConfig()
    if config.image.mask_value in ("random", "linear"):
        logger.warning(
            "%s: mask_value = %r varies per iteration of the causal search; where a metric "
            "masks with the mask value, evaluate uses the input's mean",
            config_path,
            config.image.mask_value,
        )
    return method_options.explain_config(args, config)


def _attributions(values: list[str]) -> dict[str, MapSource]:
    if not values:
        raise ConfigError("no attribution: pass --attribution A.npy (repeatable, NAME=A.npy)")
    named: dict[str, MapSource] = {}
    for value in values:
        name, source = split_named(value)
        name = name or default_name(source, set(named))
        if name in named:
            raise ConfigError(f"--attribution: the name {name!r} is used twice")
        named[name] = source
    return named


def list_metrics() -> str:
    """One line per metric: name, what it needs, direction, Quantus' defaults."""
    lines = []
    for name, spec in METRICS.items():
        arrow = "↑" if spec.higher_is_better else "↓"
        defaults = ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
        lines.append(f"{name:26} {spec.needs:9} {arrow}  ({spec.quantus}: {defaults})")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    """Evaluate as the arguments say; returns the exit code."""
    if args.list_metrics:
        print(list_metrics())
        return 0
    if not args.inputs:
        raise ConfigError("no input: rex-stream evaluate INPUT… --attribution … --metrics …")
    check_inputs_exist(args.inputs)  # one line naming the first missing input
    # one input as it is, several as a list: evaluate() runs them as it runs a directory
    args.input = args.inputs[0] if len(args.inputs) == 1 else list(args.inputs)
    if not args.metrics:
        raise ConfigError("no metrics: pass --metrics m1,m2,… (see --list-metrics)")
    if args.detections:
        return evaluate_detection.run(args, resolve_config)
    choices = choose(args.metrics)
    named = _attributions(args.attribution) if args.meta_evaluation != "model" else {}
    if args.model and args.backend:
        raise ConfigError("give --model or --backend, not both")
    spec = args.backend or args.model
    if not spec:
        raise ConfigError("no model: pass --model model.onnx or --backend SPEC")
    _check_arguments(args, choices)
    from rex_stream.evaluation.run import evaluate

    config = resolve_config(args)
    settings = method_options.backend_settings(args, spec, config)

    if args.meta_evaluation == "model":
        return meta_model.run_model_test(args, spec, choices, config, settings)
    if args.meta_evaluation:
        return _run_meta(args, spec, named, choices, config, settings)
    explainer = explainer_from_spec(args.explainer) if args.explainer else None
    estimated = {c.label: re_explanations(c) for c in choices if c.spec.needs == "explainer"}

    async def main() -> Evaluation:
        return await evaluate(
            args.input,
            spec,
            named,
            choices,
            mask=args.mask,
            config=config,
            seed=args.seed,
            quantus_compatible=args.quantus_compatible,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            backend_settings=settings,
            concurrent_inputs=args.concurrent_inputs,
            max_queries=args.max_queries,
            on_plan=None if args.quiet else partial(_print_plan, estimated=estimated),
            explainer=explainer,
            allow_mismatch=args.allow_mismatch,
            on_event=progress,
        )

    labels = load_labels(args.labels) if args.labels else None
    with RowsProgress(not args.quiet and sys.stderr.isatty()) as display:
        progress = display.update if display.enabled else None
        result = anyio.run(main)
    _name_classes(result, labels, args.labels, spec)
    if args.plot:
        from rex_stream.pictures.evaluation import save_plot

        save_plot(result, args.plot)
    for failure in result.failures:
        message = str(failure.error)
        if failure.source not in message and Path(failure.source).name not in message:
            message = f"{failure.source}: {message}"
        print(f"rex-stream: error: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(result.table())
    return 1 if result.failures else 0


def _name_classes(
    result: Evaluation, labels: tuple[str, ...] | None, source: str | None, spec: str
) -> None:
    """Name each input's target class: ``--labels`` (refused when it does not cover the
    class), else the bundled model's names."""
    if labels is None:
        labels = labels_for_model(spec)
    elif source is not None:
        for scores in result.inputs:
            check_labels_cover(labels, scores.target + 1, source)
    for scores in result.inputs:
        if labels is not None and 0 <= scores.target < len(labels) and labels[scores.target]:
            scores.label = labels[scores.target]


def _print_plan(key: str, plan: dict[str, int], estimated: dict[str, int] | None = None) -> None:
    """The rows each query metric will send for one input, on stderr; for a metric that
    re-explains, its re-explanations and an estimate of their queries."""
    estimated = estimated or {}
    rows = {label: n for label, n in plan.items() if n or label in estimated}
    if rows:
        shown = ", ".join(
            f"{label} ~{n} ({estimated[label]} re-explanation{'s' * (estimated[label] != 1)})"
            if label in estimated
            else f"{label} {n}"
            for label, n in rows.items()
        )
        print(f"plan for {key}: {shown} rows per attribution", file=sys.stderr)


def _print_meta_plan(key: str, queries: int, args: argparse.Namespace) -> None:
    """The most queries one input of a meta-evaluation can cost, on stderr."""
    copies = 2 * args.meta_iterations * args.meta_perturbations
    print(f"plan for {key}: up to {queries} queries (x and {copies} noisy copies)", file=sys.stderr)


def _run_meta(
    args: argparse.Namespace,
    spec: str,
    named: dict[str, MapSource],
    choices: list[MetricChoice],
    config: ExplainConfig,
    settings: BackendSettings,
) -> int:
    """The input-perturbation test of the chosen metrics."""
    if args.resume and not args.store:
        raise ConfigError("--resume needs --store (the store of the run to continue)")
    from rex_stream.evaluation.meta.input_test import MetaEvaluation, meta_evaluate

    async def main() -> MetaEvaluation:
        return await meta_evaluate(
            args.input,
            spec,
            named,
            choices,
            mask=args.mask,
            config=config,
            seed=args.seed,
            iterations=args.meta_iterations,
            perturbations=args.meta_perturbations,
            noise_resilience=args.noise_resilience,
            noise_adversary=_or(args.noise_adversary, meta_model.ADVERSARY_NOISE["input"]),
            quantus_compatible=args.quantus_compatible,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            backend_settings=settings,
            concurrent_inputs=args.concurrent_inputs,
            explainer=explainer_from_spec(args.explainer) if args.explainer else None,
            on_progress=display.update,
            max_queries=args.max_queries,
            on_plan=None if args.quiet else partial(_print_meta_plan, args=args),
        )

    with meta_display.MetaDisplay(meta_display.wanted(args), "units (copies)") as display:
        result = anyio.run(main)
    if result.resumed and not args.quiet:
        print(f"resumed {result.resumed} finished units from {args.store}", file=sys.stderr)
    print(json.dumps(result.summary(), indent=2) if args.json else result.table())
    return 0


def _check_arguments(args: argparse.Namespace, choices: list[MetricChoice]) -> None:
    """Refuse, before any model call, what would fail late or do nothing."""
    checks.check_store_flags(args)
    checks.check_at_least(args.seed, "--seed", 0)
    checks.check_at_least(args.concurrent_inputs, "--concurrent-inputs")
    method_options.check_output(args.plot, "--plot", PLOT_SUFFIXES)
    for flag in ("noise_resilience", "noise_adversary"):
        value = getattr(args, flag)
        if value is not None and not 0 < value < float("inf"):
            raise ConfigError(f"--{flag.replace('_', '-')} {value:g}: must be a number > 0")
    if args.explainer and not args.meta_evaluation:
        if not any(choice.spec.needs in ("explainer", "weights") for choice in choices):
            raise ConfigError(
                f"--explainer {args.explainer}: none of the metrics re-explains (those that do: "
                "max-sensitivity, avg-sensitivity, random-logit, mprt, efficient-mprt)"
            )


#: What ``--plot`` may write (matplotlib's common formats).
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def run(argv: list[str]) -> int:
    """``rex-stream evaluate …`` (the CLI turns errors into one line and an exit code)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    return _run(args)
