"""The CLI's directory mode: every input under a directory through one backend and scheduler."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from rex_stream.cli import rex_options
from rex_stream.cli.directory_display import DirectoryDisplay
from rex_stream.cli.inputs import named_inputs
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import OutputError
from rex_stream.result import Explanation, InputFailure

#: Picture files: with several inputs, ``--output``/``--heatmap`` name a directory instead.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def output_directory(
    path: str | None, flag: str, file_suffixes: tuple[str, ...], file_mistake: str
) -> Path | None:
    """The directory ``flag`` names for one output per input, made here (the folder above it
    must exist); a name ending in one of ``file_suffixes`` is refused with ``file_mistake``."""
    if path is None:
        return None
    directory = Path(path)
    if directory.suffix.lower() in file_suffixes:
        raise OutputError(f"{flag} {path}: {file_mistake}")
    parent = directory.parent if str(directory.parent) else Path(".")
    if not parent.is_dir():  # the folder itself is made, a mistyped path above it is not
        raise OutputError(f"{flag} {path}: directory {parent} does not exist")
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot create directory ({exc.strerror})") from exc
    if not os.access(directory, os.W_OK):
        raise OutputError(f"{flag} {path}: not writable")
    return directory


def _picture_directory(path: str | None, flag: str) -> Path | None:
    return output_directory(
        path,
        flag,
        PICTURE_SUFFIXES,
        f"with a directory or several inputs {flag} names a directory for one picture per "
        "input, not a "
        "picture file",
    )


def report_failure(
    display: DirectoryDisplay, index: int, failure: InputFailure, summaries: list[dict[str, Any]]
) -> None:
    """An input that failed alone: its line on stderr, its status and its summary entry."""
    display.input_finished(index, "failed")
    message = str(failure.error)
    if failure.source not in message:
        message = f"{failure.source}: {message}"
    print(f"rex-stream: error: {message}", file=sys.stderr)
    summaries.append({"input": failure.source, "error": message})


def finished_status(outcome: Explanation) -> str:
    """``complete`` when every iteration came from the store, else ``explained``."""
    stats = outcome.stats
    complete = stats.iterations > 0 and stats.resumed_iterations == stats.iterations
    return "complete" if complete else "explained"


def run_and_summarise(
    display: DirectoryDisplay,
    main: Callable[[], Awaitable[None]],
    args: argparse.Namespace,
    summaries: list[dict[str, Any]],
    count: int,
    started: float,
) -> int:
    """Run ``main`` under the display, then print the JSON list or the summary table; the
    exit code says whether any input failed."""
    with display:
        anyio.run(main)
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(display.summary_table(count, time.perf_counter() - started), end="")
    return 1 if display.failed else 0


def run_directory(
    args: argparse.Namespace, spec: str, config: ExplainConfig, settings: BackendSettings
) -> int:
    """Directory mode (a directory, several files, or a mix): every input through one backend
    and one scheduler; pictures go to the ``--output`` / ``--heatmap`` directories; one bad
    input does not stop the others."""
    from rex_stream.modes import render_explanation, render_heatmap
    from rex_stream.runs.many import explain_many

    items = args.filename if isinstance(args.filename, list) else [args.filename]
    named = named_inputs(items)
    inputs = [Path(source) for source, _ in named]
    names = [name for _, name in named]
    output = _picture_directory(args.output, "--output")
    heatmap = _picture_directory(args.heatmap, "--heatmap")
    summaries: list[dict[str, Any]] = []
    index_of = {str(p): i for i, p in enumerate(inputs)}
    display = DirectoryDisplay(
        not args.quiet and sys.stderr.isatty(), len(inputs), [str(p) for p in inputs]
    )
    started = time.perf_counter()

    def report(outcome: Explanation | InputFailure) -> None:
        if isinstance(outcome, InputFailure):
            report_failure(display, index_of.get(outcome.source, -1), outcome, summaries)
            return
        display.input_finished(
            index_of.get(str(outcome.subject.source), -1),
            finished_status(outcome),
            outcome.stats.queries,
        )
        name = outcome.subject.name
        rex_options.name_target(args, outcome)
        if output is not None:
            render_explanation(outcome, output / f"{name}.png")
        written = rex_options.after_run(
            args, outcome, output / f"{name}.png" if output else None, input_name=name
        )
        summary = outcome.summary()
        if output is not None:
            summary["outputs"] = {"explanation picture": str(output / f"{name}.png")}
        if heatmap is not None:
            render_heatmap(outcome, heatmap / f"{name}-heatmap.png")
            summary.setdefault("outputs", {})["heatmap"] = str(heatmap / f"{name}-heatmap.png")
        if written:
            summary.setdefault("outputs", {}).update(written)
        summaries.append(summary)
        if not args.json:
            area = f", explanation {outcome.sufficiency.area:.1%}" if outcome.sufficiency else ""
            print(
                f"{outcome.subject.source}: {rex_options.class_text(outcome)} "
                f"({outcome.target.confidence:.3f}){area}, {outcome.stats.queries} queries"
            )

    async def main() -> None:
        await explain_many(
            [str(p) for p in inputs],
            spec,
            config,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            concurrent_inputs=args.concurrent_inputs,
            names=names,
            on_result=report,
            backend_settings=settings,
            keep_results=False,  # each input is reported as it finishes, then released
            on_progress=display.input_progress,
        )

    return run_and_summarise(display, main, args, summaries, len(inputs), started)
