"""The detection targets a store holds: each ``<input>__detection-<i>`` group's map, box,
class and the passing rule it was searched with."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.detection import DetectionRule
from rex_stream.errors import InputError

Corners = tuple[float, float, float, float]

#: what a detection run's group names end with before the detection's rank
GROUP_INFIX = "__detection-"


@dataclass(frozen=True)
class StoredTarget:
    """One explained detection, as its store group keeps it."""

    group: str
    index: int
    label: int
    score: float
    box: Corners  # model pixels
    photo_box: Corners
    layout: str
    rule: DetectionRule
    responsibility: np.ndarray
    identity: dict[str, Any]


def split_store(source: str | Path) -> tuple[str, str]:
    """``RUNS.zarr/group`` → (``RUNS.zarr``, ``group``); a store alone → (store, "")."""
    text = str(source)
    root, found, inner = text.partition(".zarr")
    if not found:
        raise InputError(
            f"{text}: detection maps are read from a rex-stream store (RUNS.zarr or "
            "RUNS.zarr/<group>) made by rex-stream INPUT --detections FORMAT --store RUNS.zarr"
        )
    return root + ".zarr", inner.strip("/")


def stored_targets(source: str | Path, key: str) -> list[StoredTarget]:
    """Every detection target of input ``key`` in ``source`` (a store, or one of its groups),
    by rank; an error naming what is missing when there is none or one is unfinished."""
    import zarr

    root, inner = split_store(source)
    try:
        store = zarr.open_group(root, mode="r")
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise InputError(f"cannot open the Zarr store {root}: {exc}") from exc
    if inner:
        if inner not in store:
            raise InputError(f"{root} has no group {inner!r}")
        names = [inner]
    else:
        prefix = f"{key}{GROUP_INFIX}"
        names = sorted(
            (name for name, _ in store.groups() if name.startswith(prefix)),
            key=lambda name: (len(name), name),
        )
        if not names:
            raise InputError(
                f"{root} holds no detection of {key!r} (groups {prefix}<i>); explain it first: "
                f"rex-stream INPUT --model … --detections FORMAT --store {root}"
            )
    return [_read(root, name, store[name]) for name in names]


def _read(root: str, name: str, group: Any) -> StoredTarget:
    attrs = dict(group.attrs)
    if "target_box" not in attrs or "responsibility" not in group:
        raise InputError(f"{root}/{name} is not a detection run's group (no target_box)")
    if not attrs.get("complete", False):
        raise InputError(f"{root}/{name} is unfinished: --resume its run first")
    scoring = dict(attrs.get("settings", {}).get("scoring", {}))
    known = {f.name for f in fields(DetectionRule)}
    rule = DetectionRule(**{k: v for k, v in scoring.items() if k in known})
    return StoredTarget(
        group=name,
        index=int(attrs.get("detection_index", 0)),
        label=int(attrs["target_class"]),
        score=float(attrs["target_score"]),
        box=_corners(attrs["target_box"]),
        photo_box=_corners(attrs.get("target_box_photo", attrs["target_box"])),
        layout=str(attrs.get("detection_format", rule.detection_format)),
        rule=rule,
        responsibility=np.asarray(group["responsibility"][...], dtype=np.float64),
        identity=dict(attrs.get("model_identity", {})),
    )


def _corners(values: Any) -> Corners:
    x0, y0, x1, y1 = (float(v) for v in values)
    return (x0, y0, x1, y1)
