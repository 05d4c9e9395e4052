"""The ``rex-stream`` command: explain one input, or ``rex-stream demo`` on the bundled model."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from rex_stream import __version__
from rex_stream.cli import (
    bounding_box,
    checks,
    dask_options,
    faults,
    method_options,
    resource_options,
    rex_options,
)
from rex_stream.cli.demo import DEMO_IMAGE, DEMO_MODEL, demo_config
from rex_stream.cli.parser import OneLineParser
from rex_stream.cli.terminal import TerminalProgress, counted_columns
from rex_stream.config import ExplainConfig, ScoreKind
from rex_stream.errors import ConfigError, RexStreamError
from rex_stream.progress import Progress
from rex_stream.result import Explanation
from rex_stream.rex_compat.config_file import default_config_path, load_config
from rex_stream.runs.rex import explain

logger = logging.getLogger("rex_stream")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (ReX's option names where they exist)."""
    parser = OneLineParser(
        prog="rex-stream",
        description="Explain a classifier's decision with causal responsibility (ReX), "
        "streaming mutants to a local or remote model. `rex-stream demo` runs the bundled "
        "example.",
    )
    parser.add_argument(
        "filename",
        help="input file, a directory (every input in it, recursively, through one backend), "
        "or `demo`",
    )
    parser.add_argument(
        "--method",
        choices=list(METHODS),
        default="rex",
        help="rex (causal responsibility, default); cem-pp / cem-pn (= rex-stream cem --kind "
        "pp|pn); l2x (= rex-stream l2x, with --explainer)",
    )
    parser.add_argument(
        "--concurrent-inputs",
        type=int,
        default=4,
        help="directory mode: inputs explained at once (default 4)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="local ONNX model file")
    model.add_argument(
        "--backend",
        help="backend spec: model.onnx, triton://host:8001/model, triton+http://host:8000/model, "
        "http(s)://…, python:module:function",
    )
    model.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adapter option (repeatable), e.g. threads=2, token_env=TOKEN",
    )
    model.add_argument("--input-shape", help="model input shape without batch axis, e.g. 3,224,224")
    model.add_argument(
        "--means",
        help="per-channel means subtracted after /norm, e.g. 0.485,0.456,0.406 (ImageNet); "
        "ReX's [rex.onnx] means",
    )
    model.add_argument(
        "--stds",
        help="per-channel standard deviations divided by after the means, e.g. "
        "0.229,0.224,0.225 (ImageNet); ReX's [rex.onnx] stds",
    )
    model.add_argument(
        "--norm", type=float, help="pixel values are divided by this first (default 255)"
    )
    model.add_argument("--timeout-s", type=float, default=60.0, help="deadline per backend call")
    faults.add_arguments(model)
    model.add_argument(
        "--scores",
        choices=[k.value for k in ScoreKind],
        help="what the model outputs (default logits: softmax is applied)",
    )
    model.add_argument("--target", type=int, help="explain this class instead of the prediction")
    run = parser.add_argument_group("search")
    run.add_argument("-c", "--config", help="rex.toml (default ./rex.toml, ~/.config/rex.toml)")
    run.add_argument("--iters", type=int, help="iterations (default 20)")
    run.add_argument("--seed", type=int, help="random seed (default: random, kept in the store)")
    run.add_argument("-m", "--mode", help="RGB, L, tabular, spectral, voxel, audio")
    run.add_argument(
        "--mask-value",
        help="what masked elements become: a number, min, mean, or per iteration random "
        "(uniform in the input's [min, max]) or linear (min to max over the iterations)",
    )
    run.add_argument(
        "--mode-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="mode option (repeatable)",
    )
    run.add_argument("--min-box-size", type=int, help="smallest box that is split (default 10)")
    run.add_argument("--tree-depth", type=int, help="deepest level of the box tree (default 10)")
    run.add_argument("--search-limit", type=int, help="most mutants per iteration")
    run.add_argument(
        "-s",
        "--strategy",
        choices=["global", "spatial", "contrastive", "multi", "spotlight"],
        help="extraction strategy (default global)",
    )
    run.add_argument(
        "--contrastive",
        action="store_const",
        const="contrastive",
        dest="strategy",
        help="a sufficient and necessary explanation (= --strategy contrastive)",
    )
    run.add_argument("--chunk-size", type=int, help="elements revealed per extraction step")
    run.add_argument(
        "--extraction-search",
        choices=["bracket", "linear"],
        help="probe extraction candidates coarse to fine (default) or all in order",
    )
    run.add_argument("--batch-size", type=int, help="largest batch per backend call")
    run.add_argument(
        "--max-inflight",
        type=int,
        help="concurrent backend calls (default 8 for network backends, 2 for local ones)",
    )
    run.add_argument("--linger-ms", type=float, help="wait this long for a batch to fill")
    run.add_argument(
        "--confidence",
        type=float,
        help="minimum confidence of the explanation, as a fraction of the target's",
    )
    run.add_argument("-n", "--no-extract", action="store_true", help="only compute the map")
    run.add_argument(
        "--analyse",
        "--analyze",
        action="store_true",
        help="insertion/deletion curves and their AUC",
    )
    out = parser.add_argument_group("outputs")
    out.add_argument("--output", help="explanation picture (PNG)")
    out.add_argument("--heatmap", help="responsibility heatmap over the image (PNG)")
    out.add_argument("--store", help="Zarr store for maps, masks and resumable progress")
    out.add_argument("--resume", action="store_true", help="continue the run in --store")
    out.add_argument("--overwrite", action="store_true", help="replace this input in --store")
    out.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    out.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--version", action="version", version=f"rex-stream {__version__}")
    rex_options.add_arguments(parser)
    bounding_box.add_arguments(run)
    dask_options.add_arguments(parser)
    resource_options.add_arguments(parser)
    return parser


#: settings keys (as config errors name them) → the flag a user types
_FLAGS = {
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
    try:
        return _resolve_config(args, base)
    except ConfigError as exc:
        key, sep, rest = str(exc).partition(" = ")
        flag = _FLAGS.get(key)
        if sep and flag and getattr(args, flag[1], None) is not None:
            raise ConfigError(f"{flag[0]} {rest}") from exc
        raise


def _resolve_config(args: argparse.Namespace, base: ExplainConfig) -> ExplainConfig:
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0")
    config_path = Path(args.config) if args.config else default_config_path()
    config = load_config(config_path, base) if config_path else base
    if config_path:
        config = replace(config, config_file=str(config_path))
        if not getattr(args, "quiet", False):
            print(f"rex-stream: settings from {config_path}", file=sys.stderr)
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


def _refuse_idle_options(args: argparse.Namespace, config: ExplainConfig) -> None:
    """Options that would do nothing are mistakes: say so before the run."""
    if (args.resume or args.overwrite) and not args.store:
        flag = "--resume" if args.resume else "--overwrite"
        raise ConfigError(f"{flag} needs --store (the Zarr store to continue or replace)")
    if args.resume and args.overwrite:
        raise ConfigError("give --resume or --overwrite, not both")
    checks.check_store_flags(args)
    checks.check_at_least(args.concurrent_inputs, "--concurrent-inputs")
    if not config.extraction.extract and args.output:
        raise ConfigError(
            "--output draws the explanation, but -n/--no-extract computes only the map; "
            "use --heatmap for the map"
        )


#: what --output and --heatmap may be
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _check_writable(path: str | None, flag: str) -> Path | None:
    """Fail before the run, not after it, when a picture cannot be written."""
    return method_options.check_output(
        path, flag, PICTURE_SUFFIXES, "a picture suffix such as .png"
    )


class _Display(TerminalProgress):
    """A rich progress bar on stderr, fed by progress events."""

    def __init__(self, enabled: bool, total: int) -> None:
        super().__init__(enabled)
        if self.progress is not None:
            self._task = self.progress.add_task("iterations", total=total, rate="")

    def columns(self) -> list[Any]:
        return counted_columns("{task.fields[rate]}")

    def update(self, event: Progress) -> None:
        if self.progress is None:
            return
        rate = f"{event.mutants_per_s:6.0f} mutants/s  batch {event.mean_batch:4.1f}"
        if event.fault_note:
            rate += f"  {event.fault_note}"
        description = "iterations" if event.phase in ("target", "iteration") else event.phase
        self.progress.update(
            self._task,
            completed=event.iterations_done,
            total=event.iterations_total,
            rate=rate,
            description=description,
        )


def _human_summary(result: Explanation, outputs: dict[str, str]) -> str:
    stats = result.stats
    lines = [
        f"{result.subject.source or result.subject.name}: {rex_options.class_text(result)} "
        f"(confidence {result.target.confidence:.3f})"
    ]
    if result.sufficiency is not None:
        lines.append(
            f"explanation: {result.sufficiency.area:.1%} of the input "
            f"(confidence {result.sufficiency.confidence:.3f})"
        )
    if result.curves is not None:
        lines.append(
            f"insertion AUC {result.curves.insertion_auc:.3f}, "
            f"deletion AUC {result.curves.deletion_auc:.3f}"
        )
    resumed = f", {stats.resumed_iterations} resumed" if stats.resumed_iterations else ""
    lines.append(
        f"{stats.iterations} iterations{resumed}: {stats.queries} queries in {stats.calls} calls "
        f"(mean batch {stats.mean_batch:.1f}), {stats.passing} passing / {stats.failing} "
        f"failing, depth {stats.max_depth}, {stats.wall_s:.1f} s"
    )
    from rex_stream.modes import summary_lines

    lines.extend(summary_lines(result))
    lines.extend(rex_options.human_lines(result))
    for name, path in outputs.items():
        lines.append(f"{name}: {path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run one explanation as the arguments say; returns the exit code."""
    base = ExplainConfig()
    is_demo = args.filename == "demo" and not Path("demo").exists()
    if is_demo:
        base = demo_config()
        args.filename = str(DEMO_IMAGE)
        args.backend = args.backend or str(DEMO_MODEL)
        args.output = args.output or "rex-demo-explanation.png"
        args.heatmap = args.heatmap or "rex-demo-heatmap.png"
    rex_options.prepare(args)
    spec = method_options.model_spec(args)
    assert spec is not None  # a model is required here
    config = resolve_config(args, base)
    _refuse_idle_options(args, config)
    if args.verbose and not args.quiet:
        print(settings_table(config), file=sys.stderr, end="")
    settings = method_options.backend_settings(args, spec, config)
    if (code := dask_options.run(args, spec, config, settings)) is not None:
        return code
    if Path(args.filename).is_dir():
        from rex_stream.cli.directory import run_directory

        return run_directory(args, spec, config, settings)
    output = _check_writable(args.output, "--output")
    heatmap = _check_writable(args.heatmap, "--heatmap")
    with _Display(not args.quiet and sys.stderr.isatty(), config.search.iters) as display:

        async def main() -> Explanation:
            return await explain(
                rex_options.source(args),
                spec,
                config,
                store=args.store,
                resume=args.resume,
                overwrite=args.overwrite,
                on_progress=display.update,
                backend_settings=settings,
            )

        result = anyio.run(main)
    outputs: dict[str, str] = {}
    rex_options.name_target(args, result)  # pictures say "ladybug (301)"
    if output is not None:
        from rex_stream.modes import render_explanation

        render_explanation(result, output)
        outputs["explanation picture"] = str(output)
    outputs.update(rex_options.after_run(args, result, output))
    if heatmap is not None:
        from rex_stream.modes import render_heatmap

        render_heatmap(result, heatmap)
        outputs["heatmap"] = str(heatmap)
    if result.store:
        outputs["store"] = result.store
    if args.json:
        summary: dict[str, Any] = result.summary()
        summary["outputs"] = outputs
        print(json.dumps(summary, indent=2))
    else:
        print(_human_summary(result, outputs))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors and exit codes, never a traceback for a mistake."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    try:
        method, argv = _method(argv)
    except ConfigError as exc:
        print(f"rex-stream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if method is not None:
        return run_subcommand(*method)
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose if not args.quiet else logging.ERROR
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    with faults.sigterm_interrupts() as signals:
        try:
            return run(args)
        except RexStreamError as exc:
            print(f"rex-stream: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except MemoryError as exc:
            return _out_of_memory(exc)
        except BrokenPipeError:  # `rex-stream … | head`: the reader left; not an error of ours
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            how = "terminated" if signals.received else "interrupted"
            print(f"rex-stream: {how} (with --store, continue with --resume)", file=sys.stderr)
            return faults.TERMINATED_EXIT if signals.received else 130


#: ``--method NAME`` on the main command → (sub-command, extra arguments)
METHODS = {
    "rex": None,
    "cem-pp": ("cem", ["--kind", "pp"]),
    "cem-pn": ("cem", ["--kind", "pn"]),
    "l2x": ("l2x", []),
}


def _method(argv: list[str]) -> tuple[tuple[str, list[str]] | None, list[str]]:
    """``rex-stream INPUT --method cem-pn …`` as ``rex-stream cem INPUT --kind pn …`` (the
    method sub-commands), or the arguments unchanged for ReX's method (the default)."""
    rest, name = [], None
    items = iter(argv)
    for item in items:
        if item == "--method":
            name = next(items, None)
            if name is None:
                raise ConfigError(f"--method needs a name: {', '.join(METHODS)}")
        elif item.startswith("--method="):
            name = item.split("=", 1)[1]
        else:
            rest.append(item)
    if name is None:
        return None, argv
    if name not in METHODS:
        known = ", ".join(METHODS)
        print(
            f"rex-stream: error: --method {name}: unknown method (known: {known})", file=sys.stderr
        )
        raise SystemExit(2)
    chosen = METHODS[name]
    if chosen is None:
        return None, rest
    command, extra = chosen
    return (command, [*rest, *extra]), rest


#: Sub-commands with modules of their own: name → module in ``rex_stream.cli``.
SUBCOMMANDS = {"cem": "cem", "l2x-train": "l2x", "l2x": "l2x", "evaluate": "evaluate"}


def run_subcommand(name: str, argv: list[str]) -> int:
    """Run a sub-command module's ``run(argv)`` (``l2x`` modules take the name too)."""
    import importlib

    module = importlib.import_module(f"rex_stream.cli.{SUBCOMMANDS[name]}")
    with faults.sigterm_interrupts() as signals:
        try:
            return int(module.run(argv) if name in ("cem", "evaluate") else module.run(name, argv))
        except RexStreamError as exc:
            print(f"rex-stream: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except MemoryError as exc:
            return _out_of_memory(exc)
        except KeyboardInterrupt:
            how = "terminated" if signals.received else "interrupted"
            print(f"rex-stream: {how} (with --store, continue with --resume)", file=sys.stderr)
            return faults.TERMINATED_EXIT if signals.received else 130


def _out_of_memory(exc: MemoryError) -> int:
    """A run that asked for more memory than there is (e.g. --meta-iterations 1000000000):
    one line saying so, exit 1."""
    what = str(exc).splitlines()[0] if str(exc) else "out of memory"
    print(
        f"rex-stream: error: not enough memory ({what}); ask for less: fewer iterations, "
        "samples, steps or inputs at once, or a smaller --batch-size",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
