"""What a detection run shows: the composite picture and heatmaps it writes, and its
summary lines."""

from __future__ import annotations

from pathlib import Path

from rex_stream.runs.detect import DetectionResult


def write_pictures(
    result: DetectionResult, output: Path | None, heatmap: Path | None
) -> dict[str, str]:
    """The composite picture and the heatmaps (one per target) where asked."""
    from rex_stream.pictures.detections import DrawnTarget, save_detections

    written: dict[str, str] = {}
    if output is not None and result.explained:
        drawn = [
            DrawnTarget(e.photo_box, f"{e.detection.describe(result.scale)}", e.explanation)
            for e in result.explained
        ]
        name = Path(result.subject.source or result.subject.name).name
        save_detections(drawn, output, f"{name}: {len(drawn)} detection(s) explained")
        written["explanation picture"] = str(output)
    if heatmap is not None:
        from rex_stream.modes import render_heatmap

        for number, explained in enumerate(result.explained):
            path = heatmap
            if len(result.explained) > 1:
                path = heatmap.with_name(
                    f"{heatmap.stem}-detection-{explained.detection.index}{heatmap.suffix}"
                )
            render_heatmap(explained.explanation, path)
            written[f"heatmap {number}"] = str(path)
    return written


def human_summary(result: DetectionResult, outputs: dict[str, str]) -> str:
    """The detections found, each explanation's size and share inside its box, the files."""
    source = result.subject.source or result.subject.name
    lines = [
        f"{source}: {len(result.detected)} detection(s) scoring at least "
        f"{result.score_threshold:g} ({result.layout})"
    ]
    for explained in result.explained:
        sufficiency = explained.explanation.sufficiency
        size = (
            f"explanation {sufficiency.area:.1%} of the input, confidence "
            f"{sufficiency.confidence:.3f}"
            if sufficiency is not None
            else "no explanation extracted"
        )
        inside = (
            f", {explained.inside_box:.0%} inside the box"
            if explained.inside_box is not None
            else ""
        )
        lines.append(
            f"  #{explained.detection.index} {explained.detection.describe(result.scale)}: "
            f"{size}{inside}"
        )
    lines += [f"{what}: {where}" for what, where in outputs.items()]
    return "\n".join(lines)
