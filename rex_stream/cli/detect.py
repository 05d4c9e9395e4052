"""Detection on the main command (``rex-stream INPUT --detections FORMAT``): its flags, its
run (one detection or every one as targets, through one scheduler), pictures and summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from rex_stream.cli.detect_output import human_summary, write_pictures
from rex_stream.cli.explain_output import check_writable
from rex_stream.cli.terminal import TerminalProgress, counted_columns
from rex_stream.config import ExplainConfig
from rex_stream.detection import LAYOUTS
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError
from rex_stream.progress import Progress
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The detection flags, in their own group of the main command's help."""
    group = parser.add_argument_group("detection (explain a detector's boxes)")
    group.add_argument(
        "--detections",
        choices=list(LAYOUTS),
        metavar="FORMAT",
        help=f"the model is a detector answering in this layout ({', '.join(LAYOUTS)}); "
        "explains its best detection (see docs/detection.md)",
    )
    group.add_argument(
        "--target-box",
        metavar="X0,Y0,X1,Y1",
        help="explain the detection overlapping this box (the photo's pixels) most",
    )
    group.add_argument(
        "--all-detections",
        action="store_true",
        help="explain every detection scoring at least --score-threshold, all at once",
    )
    group.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="least score of a detection that counts (default 0.5)",
    )
    group.add_argument(
        "--iou",
        type=float,
        default=0.5,
        help="least IoU with the target's box for a mutant to pass (default 0.5)",
    )


def detection_settings(args: argparse.Namespace) -> DetectionSettings:
    """The run's detection settings from the flags (a bad box is one line)."""
    box = None
    if args.target_box is not None:
        try:
            values = tuple(float(v) for v in args.target_box.split(","))
        except ValueError:
            values = ()
        if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
            raise ConfigError(
                f"--target-box {args.target_box}: expected X0,Y0,X1,Y1 with X0 < X1, Y0 < Y1",
                key="--target-box",
            )
        box = (values[0], values[1], values[2], values[3])
    return DetectionSettings(
        layout=args.detections,
        target_box=box,
        all_detections=args.all_detections,
        score_threshold=args.score_threshold,
        iou_threshold=args.iou,
    )


def refuse_without_detections(args: argparse.Namespace) -> None:
    """Detection flags without ``--detections`` would do nothing: say so."""
    given = [
        flag
        for flag, value in (
            ("--target-box", args.target_box),
            ("--all-detections", args.all_detections),
        )
        if value
    ]
    if given:
        raise ConfigError(f"{given[0]} needs --detections FORMAT", key=given[0])


def run(
    args: argparse.Namespace, spec: str, config: ExplainConfig, settings: BackendSettings
) -> int:
    """Explain the chosen detection(s) of one input, or of every input of a directory or
    list of files; returns the exit code."""
    detection = detection_settings(args)
    from rex_stream.cli.detect_dask import refuse_cluster_only, run_dask
    from rex_stream.cli.detect_many import input_items, is_many, run_many

    if getattr(args, "dask", None):  # every input a task on the cluster
        return run_dask(args, spec, config, settings, detection, input_items(args))
    refuse_cluster_only(args)
    if is_many(args):
        return run_many(args, spec, config, settings, detection)
    args.filename = input_items(args)[0]
    output = check_writable(args.output, "--output")
    heatmap = check_writable(args.heatmap, "--heatmap")
    with DetectionDisplay(not args.quiet and sys.stderr.isatty(), config.search.iters) as display:

        async def main() -> DetectionResult:
            return await explain_detections(
                args.filename,
                spec,
                config,
                detection,
                store=args.store,
                resume=args.resume,
                overwrite=args.overwrite,
                on_progress=display.update,
                backend_settings=settings,
            )

        result = anyio.run(main)
    outputs = write_pictures(result, output, heatmap)
    if args.json:
        summary = result.summary()
        summary["outputs"] = outputs
        print(json.dumps(summary, indent=2))
    else:
        print(human_summary(result, outputs))
    return 0


class DetectionDisplay(TerminalProgress):
    """A progress bar over every target's iterations."""

    def __init__(self, enabled: bool, iters: int) -> None:
        super().__init__(enabled)
        self._iters = iters
        self._done: dict[int, int] = {}
        if self.progress is not None:
            self._task = self.progress.add_task("iterations", total=iters, rate="")

    def columns(self) -> list[Any]:
        """Counts, then the mutant rate and mean batch."""
        return counted_columns("{task.fields[rate]}")

    def update(self, target: int, event: Progress) -> None:
        """One target's progress snapshot."""
        self._done[target] = event.iterations_done
        if self.progress is None:
            return
        rate = f"{event.mutants_per_s:6.0f} mutants/s  batch {event.mean_batch:4.1f}"
        self.progress.update(
            self._task,
            completed=sum(self._done.values()),
            total=self._iters * len(self._done),
            rate=rate,
            description=f"{len(self._done)} target(s)",
        )
