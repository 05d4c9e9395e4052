"""What the main command leaves behind for one input: pictures, and the summary on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rex_stream.cli import method_options, rex_options
from rex_stream.result import Explanation

#: what --output and --heatmap may be
PICTURE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".webp",
    ".pdf",
    ".svg",
)
PICTURE_SUFFIXES += (".html", ".htm")  # text mode's page


def default_pictures(args: argparse.Namespace, default: str) -> None:
    """``--output``/``--heatmap``/``--surface`` given without a file (as ReX allows): a name
    made from the input's, in the current folder, announced on stderr (several inputs:
    ``inputs-explanations/``, as a directory's)."""
    several = isinstance(args.filename, list)
    source = Path("inputs" if several else args.filename)
    is_dir = several or source.is_dir()
    stem = source.name if several else source.resolve().name if is_dir else source.stem
    for flag, attribute, suffix in (
        ("--output", "output", "explanation"),
        ("--heatmap", "heatmap", "heatmap"),
    ):
        if getattr(args, attribute, None) == default:
            name = f"{stem}-{suffix}s" if is_dir else f"{stem}-{suffix}.png"
            setattr(args, attribute, name)
            print(f"{flag}: writing {name}", file=sys.stderr)


def check_writable(path: str | None, flag: str) -> Path | None:
    """Fail before the run, not after it, when a picture cannot be written."""
    return method_options.check_output(
        path, flag, PICTURE_SUFFIXES, "a picture suffix such as .png"
    )


def write_outputs(
    args: argparse.Namespace, result: Explanation, output: Path | None, heatmap: Path | None
) -> dict[str, str]:
    """Draw the explanation and the heatmap where asked; returns what was written, by name."""
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
    return outputs


def print_summary(args: argparse.Namespace, result: Explanation, outputs: dict[str, str]) -> None:
    """The result on stdout: JSON with ``--json``, else a few lines for a person."""
    if args.json:
        summary: dict[str, Any] = result.summary()
        summary["outputs"] = outputs
        print(json.dumps(summary, indent=2))
    else:
        print(human_summary(result, outputs))


def human_summary(result: Explanation, outputs: dict[str, str]) -> str:
    """The class, the explanation's size, the run's statistics and the files written."""
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
