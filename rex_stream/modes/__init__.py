"""Input modes: how a file or array becomes a Subject in the model's input space, and how
its explanation is drawn.

Each mode is a module of this package with ``SUFFIXES`` (file suffixes it reads), ``MODES``
(the ``--mode`` names it serves), ``load(path, info, config) -> Subject`` and
``render(explanation, path) -> None`` (the explanation picture). Modes are imported lazily.
A ``.npy`` file (or an array) gets the mode the model's input shape calls for
(:mod:`rex_stream.modes._npy`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError, OutputError
from rex_stream.modes._npy import array_shape, mode_for_array

if TYPE_CHECKING:
    from rex_stream.result import Explanation

__all__ = ["load_subject", "mode_module", "render_explanation"]

#: Mode modules, in the order their suffixes are tried.
MODE_MODULES = ("image", "tabular", "spectral", "voxel", "audio", "text")


def _modules() -> list[ModuleType]:
    found = []
    for name in MODE_MODULES:
        try:
            found.append(importlib.import_module(f"rex_stream.modes.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"rex_stream.modes.{name}":
                raise
    return found


def mode_module(mode: str) -> ModuleType:
    """The module serving ``--mode mode``."""
    for module in _modules():
        if mode in module.MODES:
            return module
    known = sorted(m for module in _modules() for m in module.MODES)
    raise InputError(f"unknown mode {mode!r}; known modes: {', '.join(known)}")


def load_subject(
    source: str | Path | np.ndarray, info: ModelInfo, config: ExplainConfig
) -> Subject:
    """Load ``source`` (a file path or a model-space array) as a Subject for this model."""
    mode = config.image.mode
    if isinstance(source, np.ndarray):
        mode = mode or mode_for_array(info.input_shape, source.shape, "the input array")
        return _checked(mode_module(mode), config).subject_from_array(source, info, config)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give one input file")
    if mode:
        return _checked(mode_module(mode), config).load(path, info, config)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        chosen = mode_for_array(info.input_shape, array_shape(path), str(path))
        return _checked(mode_module(chosen), config).load(path, info, config)
    claimed = [module for module in _modules() if suffix in module.SUFFIXES]
    fitting = [module for module in claimed if _fits(module, info.input_shape)]
    if fitting or claimed:
        return _checked((fitting or claimed)[0], config).load(path, info, config)
    known = sorted({s for module in _modules() for s in module.SUFFIXES})
    raise InputError(
        f"{path}: cannot tell how to read {suffix or 'a file without suffix'!r}; "
        f"known: {', '.join(known)} (or pass --mode)"
    )


#: The mode options each mode reads (the image mode refuses every one itself).
MODE_OPTIONS = {
    "tabular": ("row", "baseline", "baseline_stat", "drop", "groups", "permute"),
    "spectral": ("row", "key", "interpolate", "noise", "resample"),
    "voxel": ("normalise",),
    "audio": ("sample_rate", "baseline", "offset_s", "hop_s"),
    "text": ("unit", "column", "row", "tokenizer", "truncate", "mask_token"),
}


def _checked(module: ModuleType, config: ExplainConfig) -> ModuleType:
    """``module``, once the mode options are ones it reads: a mistyped option would
    otherwise be ignored in silence (``rows=5`` explaining row 0)."""
    name = module.__name__.rsplit(".", 1)[-1]
    known = MODE_OPTIONS.get(name)
    unknown = sorted(set(config.image.mode_options) - set(known or ()))
    if known is not None and unknown:
        raise InputError(
            f"--mode-option {', '.join(unknown)}: the {name} mode has no such option; its "
            f"options: {', '.join(known)}"
        )
    return module


def _fits(module: ModuleType, shape: tuple[int, ...]) -> bool:
    """Whether a model input of ``shape`` suits the mode (to choose between modes that
    read the same suffix; ``.npy`` is settled by :func:`mode_for_array` instead)."""
    name = module.__name__.rsplit(".", 1)[-1]
    if name == "text":  # strings or token ids; every other mode takes numbers
        return len(shape) == 1 and shape[0] == 1
    if name == "spectral":
        return len(shape) == 1 or (len(shape) == 2 and 1 in shape)
    if name == "voxel":
        return len(shape) >= 3
    if name == "tabular":
        return len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)
    return True


def known_suffixes() -> set[str]:
    """Every file suffix some mode reads."""
    return {suffix for module in _modules() for suffix in module.SUFFIXES}


def render_explanation(explanation: Explanation, path: Path) -> None:
    """Draw the explanation picture the subject's mode defines."""
    mode_module(explanation.subject.mode).render(explanation, path)


def has_heatmap(mode: str) -> bool:
    """Whether ``mode`` draws a heatmap distinct from its explanation picture."""
    return hasattr(mode_module(mode), "render_heatmap")


def render_heatmap(explanation: Explanation, path: Path) -> None:
    """Draw the responsibility heatmap (image modes). The other modes' explanation pictures
    already show responsibility: asking them for a heatmap is an error, never a copy."""
    module = mode_module(explanation.subject.mode)
    draw = getattr(module, "render_heatmap", None)
    if draw is None:
        raise OutputError(
            f"--heatmap: the {explanation.subject.mode} mode has no separate heatmap; its "
            "--output picture shows the responsibility"
        )
    draw(explanation, path)


def summary_lines(explanation: Explanation) -> list[str]:
    """Extra lines a mode adds to the human summary (the ranked features of a table row)."""
    module = mode_module(explanation.subject.mode)
    lines = getattr(module, "summary_lines", None)
    return list(lines(explanation)) if lines else []
