"""A small stand-in for the parts of ReX (``rex_xai``) that ReX's ``--script`` tutorial
imports — ``Data`` from ``rex_xai.input.input_data`` (ReX 0.4; ``rex_xai.input_data`` before),
``Prediction`` and ``from_pytorch_tensor`` — so unchanged scripts run without ReX installed.

It is offered only while a script is being loaded (:func:`rex_xai_available`), only when no
real ``rex_xai`` can be imported (an installed ReX always wins), and it is removed from
``sys.modules`` afterwards: nothing else in the process ever sees it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np


class Data:
    """ReX's input holder as scripts use it: ``Data(img, shape, device, mode=…,
    process=False)``, then ``data.data = tensor`` and the ``model_*`` attributes set by
    hand. With ``process=True`` the input becomes a float array in the model's layout
    (channels moved first when ``model_shape`` says so, a batch axis of 1)."""

    def __init__(
        self,
        input: Any,
        model_shape: Any,
        device: Any = "cpu",
        mode: str | None = None,
        process: bool = True,
    ) -> None:
        self.input = input
        self.model_shape = model_shape
        self.device = device
        self.mode = mode
        self.data: Any = None
        self.target: Any = None
        self.mask_value: Any = 0
        self.transposed = False
        self.model_order = "first"
        self.model_height = self.model_width = self.model_channels = None
        if process:
            self.data = _model_array(input, model_shape)

    def set_mask_value(self, value: Any) -> None:
        """ReX's mask value setter (rex-stream takes ``--mask-value`` instead)."""
        self.mask_value = value


@dataclass
class Prediction:
    """A class and its confidence (ReX's ``Prediction``; ``bounding_box`` optional)."""

    classification: int | None = None
    confidence: float | None = None
    bounding_box: Any = None


def from_pytorch_tensor(tensor: Any) -> list[Prediction]:
    """One :class:`Prediction` per row of logits: the softmax's top class and confidence."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    rows = np.asarray(tensor, np.float64).reshape(len(tensor), -1)
    rows = np.exp(rows - rows.max(axis=1, keepdims=True))
    rows /= rows.sum(axis=1, keepdims=True)
    top = rows.argmax(axis=1)
    return [Prediction(int(c), float(row[c])) for c, row in zip(top, rows)]


def _model_array(value: Any, model_shape: Any) -> np.ndarray:
    array = np.asarray(value, np.float32)
    shape = list(model_shape)[1:] if model_shape is not None else []
    if array.ndim == 3 and len(shape) == 3 and shape[0] == array.shape[2] != array.shape[0]:
        array = np.moveaxis(array, -1, 0)  # a picture (H, W, C) for a channels-first model
    return array[None]


#: module name → what it exports (a module with no exports is a package).
_MODULES: dict[str, dict[str, Any]] = {
    "rex_xai": {},
    "rex_xai.input": {},
    "rex_xai.input.input_data": {"Data": Data},
    "rex_xai.input_data": {"Data": Data},
    "rex_xai.responsibility": {},
    "rex_xai.responsibility.prediction": {
        "Prediction": Prediction,
        "from_pytorch_tensor": from_pytorch_tensor,
    },
    "rex_xai.prediction": {"Prediction": Prediction, "from_pytorch_tensor": from_pytorch_tensor},
}


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the stand-in modules, and nothing else."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MODULES:
            return None
        package = not _MODULES[fullname] and fullname != "rex_xai.input_data"
        return importlib.util.spec_from_loader(fullname, self, is_package=package)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__.update(_MODULES[module.__name__])
        module.__dict__["__rex_stream_standin__"] = True


@contextmanager
def rex_xai_available() -> Iterator[bool]:
    """While a script loads, ``import rex_xai.input.input_data`` works; yields whether the
    stand-in is the one used (False when ReX itself is installed)."""
    try:
        real = importlib.util.find_spec("rex_xai") is not None
    except (ImportError, ValueError):
        real = False
    if real:
        yield False
        return
    finder = _StandInFinder()
    sys.meta_path.append(finder)  # last: never in front of a real module
    try:
        yield True
    finally:
        sys.meta_path.remove(finder)
        for name in list(sys.modules):
            module = sys.modules[name]
            if name.split(".")[0] == "rex_xai" and getattr(module, "__rex_stream_standin__", 0):
                del sys.modules[name]
