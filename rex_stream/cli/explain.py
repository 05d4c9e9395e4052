"""The main command's run (``rex-stream INPUT …``): one input, a directory, or a Dask cluster."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import anyio

from rex_stream.cli import checks, dask_options, detect, method_options, rex_options
from rex_stream.cli.demo import DEMO_IMAGE, DEMO_MODEL, demo_config
from rex_stream.cli.explain_output import (
    check_writable,
    default_pictures,
    print_summary,
    write_outputs,
)
from rex_stream.cli.explain_parser import DEFAULT_PICTURE
from rex_stream.cli.settings import resolve_config, settings_table
from rex_stream.cli.terminal import TerminalProgress, counted_columns, traffic_text
from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError, InputError
from rex_stream.progress import Progress
from rex_stream.result import Explanation
from rex_stream.runs.rex import explain


def run(args: argparse.Namespace) -> int:
    """Run one explanation as the arguments say; returns the exit code."""
    base = ExplainConfig()
    for item in args.inputs:
        if not item.strip():  # Path("") is the current folder: never what was meant
            raise InputError(f"{item!r}: an empty input name; give a file or a directory")
    several = len(args.inputs) > 1
    # one input is ``filename`` as it is; several stay a list and run as a directory does
    args.filename = list(args.inputs) if several else args.inputs[0]
    if several:
        refuse_for_several(args)
    is_demo = args.filename == "demo" and not Path("demo").exists()
    if is_demo:
        base = demo_config()
        args.filename = str(DEMO_IMAGE)
        args.backend = args.backend or str(DEMO_MODEL)
        args.output = args.output or "rex-demo-explanation.png"
        args.heatmap = args.heatmap or "rex-demo-heatmap.png"
    default_pictures(args, DEFAULT_PICTURE)
    if getattr(args, "contrastive_floodlights", None) is not None:
        logging.getLogger("rex_stream").warning(
            "--contrastive %d: ReX 0.3's floodlight count is not needed (rex-stream's "
            "contrastive search pairs insertion and deletion candidates); it is ignored",
            args.contrastive_floodlights,
        )
    rex_options.prepare(args)
    spec = method_options.model_spec(args)
    assert spec is not None  # a model is required here
    config = resolve_config(args, base)
    refuse_idle_options(args, config)
    if args.verbose and not args.quiet:
        print(settings_table(config), file=sys.stderr, end="")
    settings = method_options.backend_settings(args, spec, config)
    if args.detections:
        return detect.run(args, spec, config, settings)
    detect.refuse_without_detections(args)
    if (code := dask_options.run(args, spec, config, settings)) is not None:
        return code
    if several or Path(args.filename).is_dir():
        from rex_stream.cli.directory import run_directory

        return run_directory(args, spec, config, settings)
    from rex_stream.cli import text_inputs

    if text_inputs.is_text_rows(args, config):  # a .jsonl of texts: one input per row
        return text_inputs.run_text_rows(args, spec, config, settings)
    output = check_writable(args.output, "--output")
    heatmap = check_writable(args.heatmap, "--heatmap")
    with ExplainDisplay(not args.quiet and sys.stderr.isatty(), config.search.iters) as display:

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
    print_summary(args, result, write_outputs(args, result, output, heatmap))
    return 0


#: Flags for one input at a time: (attribute, flag, why), refused with several inputs.
ONE_INPUT_FLAGS = (
    ("script", "--script", "preprocesses one input"),
    ("processed", "--processed", "takes one preprocessed input"),
    ("rows", "--rows", "picks rows of one table file"),
)


def refuse_for_several(args: argparse.Namespace) -> None:
    """Several inputs: each must exist (one line for the first that does not), and flags
    that work on one input only are refused before anything runs."""
    from rex_stream.cli.inputs import check_inputs_exist

    check_inputs_exist(args.filename)
    for attribute, flag, why in ONE_INPUT_FLAGS:
        if getattr(args, attribute, None):
            raise ConfigError(f"{flag} {why}: give one input, not several", key=flag)


def refuse_idle_options(args: argparse.Namespace, config: ExplainConfig) -> None:
    """Options that would do nothing are mistakes: say so before the run."""
    if (args.resume or args.overwrite) and not args.store:
        flag = "--resume" if args.resume else "--overwrite"
        raise ConfigError(f"{flag} needs --store (the Zarr store to continue or replace)", key=flag)
    if args.resume and args.overwrite:
        raise ConfigError("give --resume or --overwrite, not both", key="--overwrite")
    checks.check_store_flags(args)
    checks.check_at_least(args.concurrent_inputs, "--concurrent-inputs")
    if not config.extraction.extract and args.output:
        raise ConfigError(
            "--output draws the explanation, but -n/--no-extract computes only the map; "
            "use --heatmap for the map",
            key="--output",
        )


class ExplainDisplay(TerminalProgress):
    """A rich progress bar on stderr, fed by one explanation's progress events."""

    def __init__(self, enabled: bool, total: int) -> None:
        super().__init__(enabled)
        if self.progress is not None:
            self._task = self.progress.add_task("iterations", total=total, rate="")

    def columns(self) -> list[Any]:
        """The bar's columns: counts, then the mutant rate and mean batch."""
        return counted_columns("{task.fields[rate]}")

    def update(self, event: Progress) -> None:
        """Show one progress snapshot."""
        if self.progress is None:
            return
        rate = f"{event.mutants_per_s:6.0f} mutants/s  batch {event.mean_batch:4.1f}"
        rate += f"  {traffic_text(event)}"
        description = "iterations" if event.phase in ("target", "iteration") else event.phase
        self.progress.update(
            self._task,
            completed=event.iterations_done,
            total=event.iterations_total,
            rate=rate,
            description=description,
        )
