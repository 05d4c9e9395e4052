"""ReX's ``--script FILE.py`` contract as a backend, so ReX scripts run unchanged.

A script module defines ``model_shape`` (a function or a list such as ``["N", 3, 224, 224]``;
``"N"`` is the batch axis, ``"H"``/``"W"``/``"D"`` take the preprocessed input's extent),
``preprocess(path, shape, device, mode)`` (returns ReX's ``Data`` or anything with a ``data``
attribute, or an array) and ``prediction_function(mutants, target=None, raw=False,
binary_threshold=None)``. Mutants go in as a torch tensor when torch is installed, else as a
numpy array. With ``raw=True`` the function returns probability rows (a tensor or array);
a script that only returns ReX ``Prediction`` objects (class and confidence) still works,
each one becoming a row with its confidence at its class.

The spec is ``script://path/to/file.py`` (the CLI's ``--script FILE.py`` makes it).
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import numpy as np

from rex_stream.adapters.rex_xai_standin import rex_xai_available
from rex_stream.engine.backend import BackendSettings, ModelInfo, score_rows
from rex_stream.errors import BackendError, ConfigError

#: Width of the rows built from ``Prediction`` objects (class, confidence only).
PREDICTION_ROW_WIDTH = 1000

_LOADED: dict[Path, ModuleType] = {}


def load_script(path: str | Path) -> ModuleType:
    """Import a ReX script (once per path) and check it defines the contract."""
    resolved = Path(path).resolve()
    if resolved in _LOADED:
        return _LOADED[resolved]
    if not resolved.is_file():
        raise ConfigError(f"--script {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"rex_script_{resolved.stem}", resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--script {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        with rex_xai_available():  # ReX's tutorial imports rex_xai.input.input_data.Data
            spec.loader.exec_module(module)
    except Exception as exc:  # the script's own code failed: report it, never a traceback
        raise ConfigError(f"--script {path}: failed to load ({_first_line(exc)})") from exc
    missing = [
        name
        for name in ("prediction_function", "model_shape")
        if not hasattr(module, name) and not (name == "model_shape" and hasattr(module, "model"))
    ]
    if missing:
        raise ConfigError(
            f"--script {path}: does not define {' and '.join(missing)} (ReX's script contract: "
            "model_shape, preprocess(path, shape, device, mode), prediction_function(mutants, "
            "target=None, raw=False, binary_threshold=None))"
        )
    if not callable(module.prediction_function):
        raise ConfigError(f"--script {path}: prediction_function is not a function")
    _LOADED[resolved] = module
    return module


def model_shape(module: ModuleType, path: str | Path) -> list[Any]:
    """The script's model shape (batch axis first), as ReX reads it (``["N"]`` plus free
    axes when the script gives only a ``model``)."""
    shape = getattr(module, "model_shape", None)
    if shape is None:
        return ["N", "C", "H", "W"]
    try:
        value = shape() if callable(shape) else shape
    except Exception as exc:
        raise ConfigError(f"--script {path}: model_shape() failed ({_first_line(exc)})") from exc
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ConfigError(
            f"--script {path}: model_shape gave {value!r}, expected e.g. [N, 3, 224, 224]"
        )
    return list(value)


def preprocess_input(
    path: str | Path, source: str | Path, mode: str | None, *, processed: bool = False
) -> np.ndarray:
    """The input as the model takes it (no batch axis): the script's ``preprocess`` output,
    or, with ``processed`` (ReX's ``--processed``), the file itself (``.npy``) as it is."""
    module = load_script(path)
    shape = model_shape(module, path)
    if processed:
        try:
            array = np.load(source, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ConfigError(
                f"--processed {source}: expected a preprocessed .npy array ({_first_line(exc)})"
            ) from exc
    else:
        preprocess = getattr(module, "preprocess", None)
        if not callable(preprocess):
            raise ConfigError(f"--script {path}: does not define preprocess (or pass --processed)")
        try:
            if len(inspect.signature(preprocess).parameters) >= 4:
                data = preprocess(str(source), shape, "cpu", mode or "RGB")
            else:
                data = preprocess(str(source), shape, "cpu")
        except Exception as exc:
            raise ConfigError(
                f"--script {path}: preprocess failed on {source} ({_first_line(exc)})"
            ) from exc
        array = _to_numpy(getattr(data, "data", data))
    array = np.asarray(array, np.float32)
    fixed = list(shape[1:])
    if array.ndim == len(shape) and array.shape[0] == 1:
        array = array[0]
    if array.ndim != len(fixed):
        raise ConfigError(
            f"--script {path}: the preprocessed input has shape {array.shape}, but "
            f"model_shape is {shape}"
        )
    for want, got in zip(fixed, array.shape):
        if isinstance(want, int) and want != got:
            raise ConfigError(
                f"--script {path}: the preprocessed input has shape {array.shape}, but "
                f"model_shape is {shape}"
            )
    return array


def target_box(path: str | Path, tensor: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box ``(x0, y0, x1, y1)`` of the script's prediction on the unmodified
    input, as ReX's ``use_bounding_box`` takes it (the first ``Prediction``'s
    ``bounding_box``)."""
    module = load_script(path)
    try:
        predictions = module.prediction_function(_to_tensor(tensor[None]))
    except Exception as exc:
        raise BackendError(
            f"--script {path}: prediction_function failed ({_first_line(exc)})"
        ) from exc
    first = predictions[0] if isinstance(predictions, (list, tuple)) and predictions else None
    box = getattr(first, "bounding_box", None)
    if box is None:
        raise ConfigError(
            f"--script {path}: use_bounding_box needs the box of the prediction, but "
            "prediction_function returns no Prediction with a bounding_box; give "
            "--bounding-box X0,Y0,X1,Y1"
        )
    values = _to_numpy(box).reshape(-1)
    if values.size != 4:
        raise ConfigError(
            f"--script {path}: the prediction's bounding_box {values.tolist()} is not "
            "[x0, y0, x1, y1]"
        )
    x0, y0, x1, y1 = (int(float(v)) for v in values)  # ReX: int(box[i])
    return x0, y0, x1, y1


class ScriptBackend:
    """Scores batches with a ReX script's ``prediction_function``."""

    def __init__(self, path: str | Path, input_shape: tuple[int, ...], max_batch: int | None):
        self._path = path
        self._module = load_script(path)
        self._function = self._module.prediction_function
        self._raw: bool | None = None  # whether raw=True gives rows; settled on the first call
        self._limiter = anyio.CapacityLimiter(1)
        self._info = ModelInfo(
            name=Path(path).stem,
            input_name="mutants",
            input_shape=tuple(int(d) for d in input_shape),
            max_batch=max_batch,
            preferred_inflight=1,
            in_process=True,
        )

    @property
    def info(self) -> ModelInfo:
        """The script's model: input shape from the preprocessed input."""
        return self._info

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """One call of the prediction function (in a worker thread)."""
        return await anyio.to_thread.run_sync(self._score, batch, limiter=self._limiter)

    def _score(self, batch: np.ndarray) -> np.ndarray:
        mutants = _to_tensor(batch)
        try:
            if self._raw is not False:
                rows = self._function(mutants, raw=True)
                if isinstance(rows, (list, tuple)):
                    self._raw = False
                else:
                    self._raw = True
                    return _rows(rows, len(batch), self._path)
            return _prediction_rows(self._function(mutants), len(batch), self._path)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                f"--script {self._path}: prediction_function failed ({_first_line(exc)})"
            ) from exc

    async def aclose(self) -> None:
        """Nothing to release."""


async def connect(spec: str, settings: BackendSettings) -> ScriptBackend:
    """Open ``script://path.py``; the input shape is ``--input-shape`` or the script's fixed
    model shape."""
    path = spec.split("://", 1)[1]
    module = load_script(path)
    if settings.input_shape is not None:
        shape = tuple(settings.input_shape)
    else:
        declared = model_shape(module, path)[1:]
        if not all(isinstance(d, int) for d in declared):
            raise ConfigError(
                f"--script {path}: model_shape {declared} has free axes; give --input-shape"
            )
        shape = tuple(int(d) for d in declared)
    first = model_shape(module, path)[0]
    return ScriptBackend(path, shape, first if isinstance(first, int) else None)


def _to_tensor(batch: np.ndarray) -> Any:
    try:
        import torch
    except ImportError:
        return batch
    return torch.from_numpy(np.ascontiguousarray(batch))


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _rows(value: Any, count: int, path: str | Path) -> np.ndarray:
    rows = _to_numpy(value).astype(np.float64)
    if rows.ndim == 1:
        rows = rows[:, None] if rows.size == count else rows[None, :]
    if rows.shape[0] != count:
        raise BackendError(
            f"--script {path}: prediction_function(raw=True) gave {rows.shape[0]} rows "
            f"for {count} mutants"
        )
    return score_rows(rows, count, f"--script {path}: prediction_function(raw=True)")


def _prediction_rows(predictions: Any, count: int, path: str | Path) -> np.ndarray:
    """Rows from ReX ``Prediction`` objects: the confidence at the class, the rest spread."""
    predictions = list(predictions)
    if len(predictions) != count:
        raise BackendError(
            f"--script {path}: prediction_function gave {len(predictions)} predictions for "
            f"{count} mutants"
        )
    rows = np.zeros((count, PREDICTION_ROW_WIDTH))
    for row, prediction in zip(rows, predictions):
        cls, confidence = prediction.classification, prediction.confidence
        if cls is None or confidence is None or not 0 <= int(cls) < PREDICTION_ROW_WIDTH:
            raise BackendError(f"--script {path}: unusable prediction {prediction!r}")
        row[:] = (1.0 - float(confidence)) / (PREDICTION_ROW_WIDTH - 1)
        row[int(cls)] = float(confidence)
    return rows


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
