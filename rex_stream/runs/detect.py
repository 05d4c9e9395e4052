"""Explaining a detector: one detection (or every one) of an input, each as its own target of
the causal search, all searches sharing one scheduler's batches.

1. the unmodified input's answer, read through its layout (:mod:`rex_stream.detection`),
   gives the detections; :func:`~rex_stream.detection.choose_targets` picks the target(s);
2. each target runs the ReX run's phases (:func:`~rex_stream.runs.rex.explain_input`) with a
   :class:`~rex_stream.detection.DetectionRule` as its scoring settings: a mutant passes when
   it still shows the target, with D-RISE's similarity as its confidence;
3. each target's store group (``<input>__detection-<i>``) gets the detection's attributes.

Boxes are in the model's input pixels inside the run; the photo's own pixels (``scale``: photo
pixels per model pixel along x and y) at its edges (``--target-box``, pictures, JSON).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.detection import (
    Detection,
    DetectionBackend,
    DetectionRule,
    choose_targets,
    detections_in,
    layout_named,
)
from rex_stream.detection.backend import DEFAULT_MAX_DETECTIONS
from rex_stream.detection.targets import Corners
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.session import backend_for_run, settle_inflight
from rex_stream.engine.shared_answers import SharedAnswers
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.errors import ConfigError, InputError, raise_first_error
from rex_stream.modes import load_subject
from rex_stream.naming import input_name
from rex_stream.progress import Progress
from rex_stream.result import Explanation
from rex_stream.runs.rex import explain_input

ProgressCallback = Callable[[int, Progress], None]

#: what each target's entry of the summary takes from its explanation's summary
EXPLANATION_KEYS = ("explanation", "explanations", "multi", "stats", "store", "seed", "curves")


@dataclass(frozen=True)
class DetectionSettings:
    """What to explain of a detector's answer (the CLI's ``--detections`` flags)."""

    layout: str = "boxes"
    target_box: Corners | None = None  # the photo's pixels
    all_detections: bool = False
    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    max_detections: int = DEFAULT_MAX_DETECTIONS

    def __post_init__(self) -> None:
        layout_named(self.layout)  # an unknown layout fails before the backend opens
        for flag, value in (
            ("--score-threshold", self.score_threshold),
            ("--iou", self.iou_threshold),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{flag} {value}: must be in [0, 1]", key=flag)
        if self.target_box is not None and self.all_detections:
            raise ConfigError(
                "--target-box picks one detection, --all-detections explains every one: "
                "give one of them",
                key="--target-box",
            )


@dataclass(frozen=True)
class ExplainedDetection:
    """One target's explanation: the detection (model pixels), its box in the photo's pixels,
    the share of the explanation inside its box, and the store group."""

    detection: Detection
    photo_box: Corners
    explanation: Explanation
    inside_box: float | None
    group: str


@dataclass
class DetectionResult:
    """Every detection of the input and the explanations of the targets."""

    subject: Subject
    layout: str
    found: list[Detection]
    scale: tuple[float, float]
    score_threshold: float = 0.5
    explained: list[ExplainedDetection] = field(default_factory=list)

    @property
    def detected(self) -> list[Detection]:
        """The detections scoring at least the threshold (``found`` also holds weaker
        proposals, which count towards the similarity only)."""
        return [d for d in self.found if d.score >= self.score_threshold]

    def photo_box(self, detection: Detection) -> Corners:
        """A detection's box in the photo's pixels."""
        return to_photo(detection.box, self.scale)

    def summary(self) -> dict[str, Any]:
        """Plain JSON values: the detections found and each one explained."""
        return {
            "input": self.subject.source or self.subject.name,
            "detection_format": self.layout,
            "score_threshold": self.score_threshold,
            "proposals": len(self.found),
            "detections": [
                {
                    "index": d.index,
                    "class": d.label,
                    "score": d.score,
                    "box": [round(v, 2) for v in self.photo_box(d)],
                    "box_model": [round(v, 2) for v in d.box],
                }
                for d in self.detected
            ],
            "explained": [
                {
                    "detection": e.detection.index,
                    "class": e.detection.label,
                    "score": e.detection.score,
                    "box": [round(v, 2) for v in e.photo_box],
                    "group": e.group,
                    "inside_box": e.inside_box,
                    **{k: v for k, v in e.explanation.summary().items() if k in EXPLANATION_KEYS},
                }
                for e in self.explained
            ],
        }


def to_photo(box: Corners, scale: tuple[float, float]) -> Corners:
    """A box in model pixels as the photo's pixels."""
    sx, sy = scale
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def to_model(box: Corners, scale: tuple[float, float]) -> Corners:
    """A box in the photo's pixels as model pixels."""
    sx, sy = scale
    return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)


def photo_scale(subject: Subject) -> tuple[float, float]:
    """The photo's pixels per model pixel along x and y (1, 1 for arrays)."""
    rows, cols = subject.spatial_shape[-2:]
    source = subject.source
    if not source or Path(source).suffix.lower() == ".npy":
        return (1.0, 1.0)
    from PIL import Image, ImageOps

    with Image.open(source) as image:
        width, height = ImageOps.exif_transpose(image).size
    return (width / cols, height / rows)


def inside_fraction(mask: np.ndarray | None, box: Corners) -> float | None:
    """The share of an explanation's pixels (model pixels) inside ``box``."""
    if mask is None or not mask.any():
        return None
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    return round(float(mask[y0:y1, x0:x1].sum() / mask.sum()), 4)


async def explain_detections(
    source: str | Path | np.ndarray,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    settings: DetectionSettings | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    backend_settings: BackendSettings | None = None,
) -> DetectionResult:
    """Explain the detections of ``source`` that ``settings`` choose (by default the best).

    ``backend`` is a Backend that answers with named outputs, or a spec; ``settings.layout``
    says how its outputs read as detections.
    """
    config = config or ExplainConfig()
    settings = settings or DetectionSettings()
    with raise_first_error():
        started = time.perf_counter()
        opened = open_detector(
            backend, config, settings.layout, backend_settings, settings.max_detections
        )
        async with opened as (detector, scheduler, resolved):
            return await explain_detections_with(
                source,
                scheduler,
                detector,
                resolved,
                settings,
                store=store,
                resume=resume,
                overwrite=overwrite,
                on_progress=on_progress,
                started=started,
            )


@asynccontextmanager
async def open_detector(
    backend: Backend | str,
    config: ExplainConfig,
    layout: str,
    backend_settings: BackendSettings | None = None,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> AsyncIterator[tuple[DetectionBackend, Scheduler, ExplainConfig]]:
    """A detector (every named output asked for, read through ``layout``) and its scheduler,
    with the run's resolved configuration; both closed on the way out."""
    inflight = settle_inflight(backend, config).scheduler.max_inflight
    wanted = backend_settings or BackendSettings(max_inflight=inflight or 1)
    wanted = replace(wanted, all_outputs=True)
    async with backend_for_run(backend, config, wanted) as (opened, resolved):
        detector = (
            opened
            if isinstance(opened, DetectionBackend)
            else DetectionBackend(opened, layout_named(layout), max_detections)
        )
        async with Scheduler(detector, resolved.scheduler) as scheduler:
            yield detector, scheduler, resolved


async def explain_detections_with(
    source: str | Path | np.ndarray,
    scheduler: Scheduler,
    detector: DetectionBackend,
    config: ExplainConfig,
    settings: DetectionSettings,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    started: float | None = None,
    name: str | None = None,
) -> DetectionResult:
    """Detect, choose the targets, and explain them all at once through ``scheduler``.

    ``name`` is the input's store name (default: from the file's name); each target's group
    is ``<name>__detection-<i>``."""
    info = detector.info
    subject = load_subject(source, info, config)
    if len(subject.spatial_shape) != 2:
        raise InputError(
            f"--detections explains pictures; this input has {len(subject.spatial_shape)} "
            "spatial axes"
        )
    key = name if name is not None else input_name(subject.name)
    answer = await scheduler.evaluate([lambda out: np.copyto(out, subject.tensor)])
    found = detections_in(answer[0])
    scale = photo_scale(subject)
    near = None if settings.target_box is None else to_model(settings.target_box, scale)
    targets = choose_targets(
        found,
        score_threshold=settings.score_threshold,
        label=config.scoring.target,
        near=near,
        every=settings.all_detections,
        scale=scale,
    )
    result = DetectionResult(subject, settings.layout, found, scale, settings.score_threshold)
    explained: dict[int, ExplainedDetection] = {}
    shared = SharedAnswers(scheduler)  # the targets' searches ask for many equal mutants

    async def explain_one(detection: Detection) -> None:
        rule = DetectionRule(
            scores=config.scoring.scores,
            binary_threshold=config.scoring.binary_threshold,
            target=config.scoring.target,
            target_box=detection.box,
            target_class=detection.label,
            score_threshold=settings.score_threshold,
            iou_threshold=settings.iou_threshold,
            detection_format=settings.layout,
        )
        group = input_name(PurePath(key) / f"detection-{detection.index}")
        report = on_progress or (lambda _i, _p: None)
        explanation = await explain_input(
            source,
            info,
            scheduler,
            replace(config, scoring=rule),
            store=store,
            resume=resume,
            overwrite=overwrite,
            on_progress=lambda event: report(detection.index, event),
            started=started,
            name=group,
            target=Target(detection.label, detection.score),
            answers=shared,
        )
        photo_box = result.photo_box(detection)
        if store is not None:
            await anyio.to_thread.run_sync(
                _record_target, store, group, detection, photo_box, settings.layout
            )
        explained[detection.index] = ExplainedDetection(
            detection,
            photo_box,
            explanation,
            inside_fraction(explanation.mask, detection.box),
            group,
        )

    async with anyio.create_task_group() as tasks:
        for detection in targets:
            tasks.start_soon(explain_one, detection)
    result.explained = [explained[d.index] for d in targets]
    return result


def _record_target(
    store: str | Path, group: str, detection: Detection, photo_box: Corners, layout: str
) -> None:
    """The target's attributes on its store group (after the run has written the group)."""
    import zarr

    node = zarr.open_group(str(store), mode="a")[group]
    node.attrs.update(
        {
            "target_box": [float(v) for v in detection.box],
            "target_box_photo": [float(v) for v in photo_box],
            "target_class": detection.label,
            "target_score": detection.score,
            "detection_format": layout,
            "detection_index": detection.index,
        }
    )
