"""Reading ``rex.toml`` with ReX's section and key names into an ExplainConfig.

Unknown keys, misplaced keys and invalid values are errors that name the key and the file
(ReX warns and silently falls back to defaults; we do not). ReX's documented-but-wrong aliases
(``dist_args``, ``initial_radius``…) are accepted for the keys that exist here.
"""

from __future__ import annotations

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
        raise ConfigError(f"{path}: {exc}") from exc
    for section, key, value in entries:
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if (section, key) not in KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} in [{section}]")
        target = KEYS[(section, key)]
        if target is None:
            continue
        group, field_name = target
        groups.setdefault(group, {})[field_name] = _convert(path, section, key, value)
    try:
        for group, values in groups.items():
            config = replace(config, **{group: replace(getattr(config, group), **values)})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config


def _walk(document: dict[str, Any], prefix: str = "") -> list[tuple[str, str, Any]]:
    """Flatten nested tables into (section, key, value)."""
    items: list[tuple[str, str, Any]] = []
    for key, value in document.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            items.extend(_walk(value, name))
        elif not prefix:
            raise ConfigError(f"key {key!r} must be inside a section such as [rex] or [causal]")
        else:
            items.append((prefix, key, value))
    return items


def _convert(path: Path, section: str, key: str, value: Any) -> Any:
    """Turn a TOML value into the type the config field wants."""
    where = f"{path}: [{section}] {key}"
    try:
        if key == "queue_len":
            return None if value == "all" else int(value)
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
        if key in ("weighted", "concentrate", "normalise_curves"):
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
        if key == "seed":
            return int(value)
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} = {value!r} is invalid ({exc})") from exc
