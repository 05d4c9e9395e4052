"""The CLI's directory mode: every input under a directory through one backend and scheduler."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from rex_stream.cli import rex_options
from rex_stream.cli.directory_display import DirectoryDisplay
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError, OutputError
from rex_stream.result import Explanation


def directory_inputs(directory: Path) -> list[Path]:
    """Every file under ``directory`` whose suffix some mode reads, in a stable order."""
    from rex_stream.modes import known_suffixes

    suffixes = known_suffixes()
    found = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise ConfigError(
            f"{directory}: no input files (known suffixes: {', '.join(sorted(suffixes))})"
        )
    return found


def _output_directory(path: str | None, flag: str) -> Path | None:
    if path is None:
        return None
    directory = Path(path)
    if directory.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"):
        raise OutputError(
            f"{flag} {path}: with a directory input {flag} names a directory for one picture "
            "per input, not a picture file"
        )
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


def run_directory(
    args: argparse.Namespace, spec: str, config: ExplainConfig, settings: BackendSettings
) -> int:
    """Directory mode: every input through one backend and one scheduler; pictures go to the
    ``--output`` / ``--heatmap`` directories; one bad input does not stop the others."""
    from rex_stream.modes import render_explanation, render_heatmap
    from rex_stream.naming import input_name
    from rex_stream.runs.many import InputFailure, explain_many

    root = Path(args.filename)
    inputs = directory_inputs(root)
    names = [input_name(p.relative_to(root)) for p in inputs]
    output = _output_directory(args.output, "--output")
    heatmap = _output_directory(args.heatmap, "--heatmap")
    summaries: list[dict[str, Any]] = []
    index_of = {str(p): i for i, p in enumerate(inputs)}
    display = DirectoryDisplay(
        not args.quiet and sys.stderr.isatty(), len(inputs), [str(p) for p in inputs]
    )
    started = time.perf_counter()

    def report(outcome: Explanation | InputFailure) -> None:
        if isinstance(outcome, InputFailure):
            display.input_finished(index_of.get(outcome.source, -1), "failed")
            message = str(outcome.error)
            if outcome.source not in message:
                message = f"{outcome.source}: {message}"
            print(f"rex-stream: error: {message}", file=sys.stderr)
            summaries.append({"input": outcome.source, "error": message})
            return
        stats = outcome.stats
        complete = stats.iterations > 0 and stats.resumed_iterations == stats.iterations
        display.input_finished(
            index_of.get(str(outcome.subject.source), -1),
            "complete" if complete else "explained",
            stats.queries,
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

    with display:
        anyio.run(main)
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(display.summary_table(len(inputs), time.perf_counter() - started), end="")
    return 1 if display.failed else 0
