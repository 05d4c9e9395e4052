"""Reading ``rex.toml`` with ReX's section and key names into an ExplainConfig.

Every key of ReX 0.4.1's ``rex.toml`` is accepted: it means what it means in ReX, or a
one-line warning says what rex-stream does instead (:data:`INSTEAD`). Unknown keys, misplaced
keys and invalid values are errors that name the key and the file (ReX warns and silently
falls back to defaults; we do not). ReX's documented-but-wrong aliases (``dist_args``,
``initial_radius``…) are accepted for the keys that exist here.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rex_stream.config import (
    Distribution,
    ExplainConfig,
    QueueStyle,
    ResponsibilityStyle,
)
from rex_stream.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

logger = logging.getLogger(__name__)

#: (section, key) → (config group, field). Keys ReX has that we accept but ignore map to None.
KEYS: dict[tuple[str, str], tuple[str, str] | None] = {
    ("rex", "mask_value"): ("image", "mask_value"),
    ("rex", "seed"): ("search", "seed"),
    ("rex", "batch_size"): ("scheduler", "max_batch"),
    ("rex", "gpu"): None,
    ("rex.onnx", "means"): ("image", "means"),
    ("rex.onnx", "stds"): ("image", "stds"),
    ("rex.onnx", "norm"): ("image", "norm"),
    ("rex.onnx", "binary_threshold"): ("scoring", "binary_threshold"),
    ("rex.onnx", "intra_op_num_threads"): None,
    ("rex.onnx", "inter_op_num_threads"): None,
    ("rex.onnx", "ort_logger"): None,
    ("rex.visual", "colour"): ("visual", "colour"),
    ("rex.visual", "alpha"): ("visual", "alpha"),
    ("rex.visual", "heatmap_colours"): ("visual", "heatmap_colours"),
    ("rex.visual", "progress_bar"): None,
    ("rex.visual", "info"): None,
    ("rex.visual", "raw"): None,
    ("rex.visual", "grid"): None,
    ("rex.visual", "mark_segments"): None,
    ("rex.visual", "multi_style"): ("visual", "multi_style"),
    ("causal", "tree_depth"): ("search", "tree_depth"),
    ("causal", "search_limit"): ("search", "search_limit"),
    ("causal", "iters"): ("search", "iters"),
    ("causal", "min_box_size"): ("search", "min_box_size"),
    ("causal", "confidence_filter"): ("search", "confidence_filter"),
    ("causal", "weighted"): ("search", "weighted"),
    ("causal", "queue_style"): ("search", "queue_style"),
    ("causal", "queue_len"): ("search", "queue_len"),
    ("causal", "concentrate"): ("search", "concentrate"),
    ("causal", "responsibility_style"): ("search", "responsibility_style"),
    ("causal.distribution", "distribution"): ("search", "distribution"),
    ("causal.distribution", "distribution_args"): ("search", "distribution_args"),
    ("causal.distribution", "dist_args"): ("search", "distribution_args"),
    ("causal.distribution", "blend"): None,
    ("explanation", "chunk_size"): ("extraction", "chunk_size"),
    ("explanation", "strategy"): ("extraction", "strategy"),
    ("explanation.spatial", "spatial_initial_radius"): ("extraction", "spatial_initial_radius"),
    ("explanation.spatial", "initial_radius"): ("extraction", "spatial_initial_radius"),
    ("explanation.spatial", "spatial_radius_eta"): ("extraction", "spatial_radius_eta"),
    ("explanation.spatial", "radius_eta"): ("extraction", "spatial_radius_eta"),
    ("explanation.spatial", "no_expansions"): ("multi", "no_expansions"),
    ("explanation.multi", "spotlights"): ("multi", "spotlights"),
    ("explanation.multi", "spotlight_size"): ("multi", "spotlight_size"),
    ("explanation.multi", "spotlight_eta"): ("multi", "spotlight_eta"),
    ("explanation.multi", "spotlight_step"): ("multi", "spotlight_step"),
    ("explanation.multi", "max_spotlight_budget"): ("multi", "max_spotlight_budget"),
    ("explanation.multi", "spotlight_objective_function"): (
        "multi",
        "spotlight_objective_function",
    ),
    ("explanation.multi", "objective_function"): ("multi", "spotlight_objective_function"),
    ("explanation.multi", "permitted_overlap"): ("multi", "permitted_overlap"),
    ("explanation.multi", "strategy"): None,  # ReX reads it, then the command line decides
    ("explanation.multi", "method"): None,
    ("explanation", "search"): ("extraction", "search"),
    ("explanation", "minimum_confidence_threshold"): (
        "extraction",
        "minimum_confidence_threshold",
    ),
    ("explanation.evaluation", "insertion_step"): ("evaluation", "insertion_step"),
    ("explanation.evaluation", "normalise_curves"): ("evaluation", "normalise_curves"),
}

KEYS.update(
    {
        ("causal", "negative_responsibility"): ("search", "negative_responsibility"),
        ("causal", "use_bounding_box"): ("search", "use_bounding_box"),
        ("causal", "bounding_box"): ("search", "bounding_box"),  # rex-stream's: the box itself
        ("explanation", "shrink_rounds"): ("extraction", "shrink_rounds"),  # rex-stream's
        ("explanation", "multi_class"): None,
        ("rex.visual", "resize"): None,
    }
)

#: What rex-stream does instead, for the ReX keys it accepts but does not act on.
INSTEAD: dict[tuple[str, str], str] = {
    ("rex", "gpu"): "the backend decides the device (ONNX: --backend-option providers=…)",
    ("rex.onnx", "intra_op_num_threads"): "use --backend-option threads=N",
    ("rex.onnx", "inter_op_num_threads"): "one inter-op thread per session; "
    "use --backend-option threads=N",
    ("rex.onnx", "ort_logger"): "onnxruntime logs errors only",
    ("rex.visual", "progress_bar"): "a progress bar shows on a terminal unless -q",
    ("rex.visual", "info"): "pictures always carry the class and its confidence",
    ("rex.visual", "raw"): "pictures are always blended with colour and alpha",
    ("rex.visual", "grid"): "no grid is drawn",
    ("rex.visual", "mark_segments"): "no segment boundaries are drawn",
    ("rex.visual", "resize"): "removed in ReX 0.4.1; pictures are drawn at the model's size",
    ("causal.distribution", "blend"): "unused (ReX does not use it either)",
    ("explanation", "multi_class"): "ReX 0.4.1 reads it and never uses it (it explains the "
    "first target only); rex-stream explains the predicted class, or --target",
    ("explanation.multi", "strategy"): "the command line (-s, --multi) picks the strategy, "
    "as in ReX",
    ("explanation.multi", "method"): "the command line (-s, --multi) picks the strategy, as in ReX",
}

#: ReX mask values rex-stream has no per-iteration form of: (value used, warning).
MASK_VALUE_INSTEAD: dict[str, tuple[float | str, str]] = {
    "context": (
        0.0,
        "pass the occluding input with --context FILE (and --noise SIGMA); without it "
        "masked elements are 0",
    ),
}

SECTIONS = {section for section, _ in KEYS} | {"explanation.multi"}


def default_config_path() -> Path | None:
    """``./rex.toml``, else ``~/.config/rex.toml``, else None."""
    for candidate in (Path("rex.toml"), Path.home() / ".config" / "rex.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | Path, base: ExplainConfig | None = None) -> ExplainConfig:
    """Read ``path`` and apply its keys on top of ``base`` (default settings)."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    config = base or ExplainConfig()
    groups: dict[str, dict[str, Any]] = {}
    try:
        entries = _walk(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", key=exc.key, detail=exc.detail) from exc
    for section, key, value in entries:
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]", key=section)
        if (section, key) not in KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} in [{section}]", key=f"{section}.{key}")
        target = KEYS[(section, key)]
        if target is None:
            if (section, key) == ("rex", "gpu") and value is False:
                continue  # rex-stream's backends run where they are told: nothing differs
            instead = INSTEAD.get((section, key), "it has no effect here")
            logger.warning("%s: [%s] %s is accepted, but %s", path, section, key, instead)
            continue
        group, field_name = target
        converted = _convert(path, section, key, value)
        if key == "mask_value" and isinstance(converted, str):
            converted = _rex_mask_value(path, converted, groups)
        groups.setdefault(group, {})[field_name] = converted
    try:
        for group, values in groups.items():
            config = replace(config, **{group: replace(getattr(config, group), **values)})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", key=exc.key, detail=exc.detail) from exc
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config


def _rex_mask_value(path: Path, value: str, groups: dict[str, dict[str, Any]]) -> float | str:
    """ReX's string mask values as rex-stream settings (with a warning where they differ)."""
    value = value.lower()
    if value == "none":  # ReX: NaN
        return math.nan
    if value == "spectral":  # ReX's spectral occlusion: interpolation plus N(0, 0.02) noise
        options = groups.setdefault("image", {}).setdefault("mode_options", {})
        options.update({"interpolate": "true", "noise": "0.02"})
        return 0.0
    if value in MASK_VALUE_INSTEAD:
        used, why = MASK_VALUE_INSTEAD[value]
        logger.warning("%s: [rex] mask_value = %r is accepted, but %s", path, value, why)
        return used
    return value


def _walk(document: dict[str, Any], prefix: str = "") -> list[tuple[str, str, Any]]:
    """Flatten nested tables into (section, key, value)."""
    items: list[tuple[str, str, Any]] = []
    for key, value in document.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            items.extend(_walk(value, name))
        elif not prefix:
            raise ConfigError(
                f"key {key!r} must be inside a section such as [rex] or [causal]", key=key
            )
        else:
            items.append((prefix, key, value))
    return items


def _convert(path: Path, section: str, key: str, value: Any) -> Any:
    """Turn a TOML value into the type the config field wants."""
    where = f"{path}: [{section}] {key}"
    try:
        if isinstance(value, bool) and key not in _TRUE_OR_FALSE:
            raise ValueError("expected a value, not true or false")
        if key == "queue_len":
            return None if value == "all" else _whole(value)
        if key == "queue_style":
            return QueueStyle(str(value).lower())
        if key == "responsibility_style":
            return ResponsibilityStyle(str(value).lower())
        if key == "distribution":
            return Distribution(str(value).lower())
        if key in ("distribution_args", "dist_args"):
            return tuple(float(v) for v in value)
        if key in ("means", "stds"):
            return tuple(float(v) for v in value)
        if key == "mask_value":
            return value if isinstance(value, str) else float(value)
        if key == "bounding_box":
            if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
                raise ValueError("expected [x0, y0, x1, y1] in whole pixels")
            return tuple(value)
        if key in _TRUE_OR_FALSE:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if key in (
            "norm",
            "confidence_filter",
            "minimum_confidence_threshold",
            "alpha",
            "binary_threshold",
        ):
            return float(value)
        if key in ("heatmap_colours", "multi_style"):
            return str(value)
        if key in ("spotlight_objective_function", "objective_function"):
            return str(value).lower()
        if key in ("spotlight_eta", "permitted_overlap"):
            return float(value)
        if key in ("search", "strategy"):
            return str(value).lower()
        if key in ("spatial_radius_eta", "radius_eta"):
            return float(value)
        return _whole(value)
    except (TypeError, ValueError) as exc:
        detail = f"{value!r} is invalid ({exc})"
        raise ConfigError(f"{where} = {detail}", key=f"{section}.{key}", detail=detail) from exc


#: Keys whose values are true or false.
_TRUE_OR_FALSE = (
    "weighted",
    "concentrate",
    "normalise_curves",
    "negative_responsibility",
    "use_bounding_box",
)


def _whole(value: Any) -> int:
    """A whole number; 1.5 is not silently 1."""
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("expected a whole number")
    return int(value)
