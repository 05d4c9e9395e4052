"""The CLI's text rows: a ``.jsonl`` (or, with ``--mode text``, a ``.csv``/``.tsv``) file
explained one input per row, through one backend and one scheduler, as a directory is.

Each row gets its own store group (``reviews-row3``, source ``reviews.jsonl#row=3``) and its
own page ``<--output DIR>/reviews-row3.html``; an empty row is reported without stopping the
others. ``--mode-option row=N`` explains row ``N`` alone instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rex_stream.cli import rex_options
from rex_stream.cli.directory import (
    finished_status,
    output_directory,
    report_failure,
    run_and_summarise,
)
from rex_stream.cli.directory_display import DirectoryDisplay
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import OutputError
from rex_stream.result import Explanation, InputFailure

#: What each row's ``--output`` page is.
PAGE_SUFFIX = ".html"


def is_text_rows(args: argparse.Namespace, config: ExplainConfig) -> bool:
    """Whether the input is a file of texts to explain row by row: a ``.jsonl`` file (text
    is the only mode that reads it) or a ``.csv``/``.tsv`` file with ``--mode text``, and no
    ``row=N`` mode option."""
    path = Path(args.filename)
    if not path.is_file() or "row" in config.image.mode_options:
        return False
    suffix, mode = path.suffix.lower(), config.image.mode
    return (suffix == ".jsonl" and mode in (None, "text")) or (
        suffix in (".csv", ".tsv") and mode == "text"
    )


def _pages_directory(path: str | None) -> Path | None:
    """The ``--output`` directory (made here); a file name there is a mistake."""
    return output_directory(
        path,
        "--output",
        (PAGE_SUFFIX, ".htm", ".png", ".jpg", ".pdf", ".svg"),
        "a file of texts gets one page per row; --output names a directory for them, not a file",
    )


def run_text_rows(
    args: argparse.Namespace, spec: str, config: ExplainConfig, settings: BackendSettings
) -> int:
    """Every row of the file through one backend and one scheduler; pages go to the
    ``--output`` directory; one bad row does not stop the others."""
    from rex_stream.modes import render_explanation
    from rex_stream.runs.texts import explain_text_inputs, text_rows

    inputs = text_rows(args.filename, config)  # a missing column: one line, nothing written
    if args.heatmap:
        raise OutputError(
            "--heatmap: the text mode has no separate heatmap; its --output pages show the "
            "responsibility"
        )
    output = _pages_directory(args.output)
    summaries: list[dict[str, Any]] = []
    labels = [item.label for item in inputs]
    index_of = {item.name: index for index, item in enumerate(inputs)}
    display = DirectoryDisplay(not args.quiet and sys.stderr.isatty(), len(inputs), labels)
    started = time.perf_counter()

    def report(outcome: Explanation | InputFailure) -> None:
        if isinstance(outcome, InputFailure):
            report_failure(display, labels.index(outcome.source), outcome, summaries)
            return
        name = outcome.subject.name
        display.input_finished(index_of[name], finished_status(outcome), outcome.stats.queries)
        page = output / f"{name}{PAGE_SUFFIX}" if output is not None else None
        if page is not None:
            rex_options.name_target(args, outcome)
            render_explanation(outcome, page)
        written = rex_options.after_run(args, outcome, page, input_name=name)
        summary = outcome.summary()
        if page is not None:
            summary["outputs"] = {"explanation page": str(page)}
        if written:
            summary.setdefault("outputs", {}).update(written)
        summaries.append(summary)
        if not args.json:
            text = summary.get("explanation_text")
            shown = f", explanation: {text}" if text else ""
            print(
                f"{outcome.subject.source}: class {outcome.target.classification} "
                f"({outcome.target.confidence:.3f}){shown}, {outcome.stats.queries} queries"
            )

    async def main() -> None:
        await explain_text_inputs(
            inputs,
            spec,
            config,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            concurrent_inputs=args.concurrent_inputs,
            on_result=report,
            backend_settings=settings,
            keep_results=False,  # each row is reported as it finishes, then released
            on_progress=display.input_progress,
        )

    return run_and_summarise(display, main, args, summaries, len(inputs), started)
