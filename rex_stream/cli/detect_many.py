"""``rex-stream DIR --detections FORMAT`` (or several input files): every input's chosen
detection(s) through one detector and scheduler; one composite picture per input in the
``--output`` directory, a heatmap per target in the ``--heatmap`` directory, one summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rex_stream.api import explain_detections_many
from rex_stream.cli.detect_output import human_summary, write_pictures
from rex_stream.cli.directory import (
    PICTURE_SUFFIXES,
    finished_status,
    output_directory,
    report_failure,
    run_and_summarise,
)
from rex_stream.cli.directory_display import DirectoryDisplay
from rex_stream.cli.inputs import named_inputs
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.progress import Progress
from rex_stream.result import InputFailure
from rex_stream.runs.detect import DetectionResult, DetectionSettings
from rex_stream.runs.detect_many import Outcome


def input_items(args: argparse.Namespace) -> list[str]:
    """The INPUT arguments as a list (one name, or the list the main command gives)."""
    given = args.filename
    return [str(given)] if isinstance(given, (str, Path)) else [str(g) for g in given]


def is_many(args: argparse.Namespace) -> bool:
    """Whether the inputs are a directory or several files (else one photo)."""
    items = input_items(args)
    return len(items) != 1 or Path(items[0]).is_dir()


def _directory(path: str | None, flag: str) -> Path | None:
    return output_directory(
        path,
        flag,
        PICTURE_SUFFIXES,
        f"with several inputs {flag} names a directory for the pictures, not a picture file",
    )


def run_many(
    args: argparse.Namespace,
    spec: str,
    config: ExplainConfig,
    settings: BackendSettings,
    detection: DetectionSettings,
) -> int:
    """Every input's targets through one scheduler; returns 1 when some input failed."""
    pairs = named_inputs(input_items(args))  # a missing path or two alike: one line
    sources, names = [s for s, _ in pairs], [n for _, n in pairs]
    output = _directory(args.output, "--output")
    heatmap = _directory(args.heatmap, "--heatmap")
    summaries: list[dict[str, Any]] = []
    display = DirectoryDisplay(not args.quiet and sys.stderr.isatty(), len(sources), sources)
    started = time.perf_counter()

    def report(index: int, outcome: Outcome) -> None:
        if isinstance(outcome, InputFailure):
            report_failure(display, index, outcome, summaries)
            return
        queries = sum(e.explanation.stats.queries for e in outcome.explained)
        display.input_finished(index, _status(outcome), queries)
        name = names[index]
        outputs = write_pictures(
            outcome,
            output / f"{name}.png" if output is not None else None,
            heatmap / f"{name}-heatmap.png" if heatmap is not None else None,
        )
        summary = outcome.summary()
        summary["outputs"] = outputs
        summaries.append(summary)
        if not args.json:
            print(human_summary(outcome, outputs))

    def progress(index: int, _target: int, event: Progress) -> None:
        display.input_progress(index, event)

    async def main() -> None:
        await explain_detections_many(
            sources,
            spec,
            config,
            detection,
            names=names,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            concurrent_inputs=args.concurrent_inputs,
            on_result=report,
            on_progress=progress,
            backend_settings=settings,
        )

    return run_and_summarise(display, main, args, summaries, len(sources), started)


def _status(result: DetectionResult) -> str:
    """``complete`` when every target came whole from the store, else ``explained``."""
    statuses = {finished_status(e.explanation) for e in result.explained}
    return "complete" if statuses == {"complete"} else "explained"
