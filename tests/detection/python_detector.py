"""The planted detector as a ``python:`` callable answering ``boxes`` rows (N, K, 6): the
end-to-end ONNX detector run by onnxruntime inside the function (so its numbers are the other
backends' to the last bit), as a user would wrap a model of their own."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from tests.detection.planted import SIZE, save_detector

input_shape = (3, SIZE, SIZE)


@cache
def _session() -> Any:
    import onnxruntime as ort

    folder = Path(tempfile.mkdtemp(prefix="rex-detector-"))
    model = save_detector(folder / "end2end.onnx", "end2end")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def detect(batch: np.ndarray) -> np.ndarray:
    """Rows x0, y0, x1, y1, score, class per image, zero-padded."""
    return _session().run(None, {"images": np.asarray(batch, np.float32)})[0]


def detect_outputs(batch: np.ndarray) -> dict[str, np.ndarray]:
    """The same rows as a named output (a dict: the python adapter keeps the names)."""
    return {"detections": detect(batch)}


def detect_slowly(batch: np.ndarray) -> np.ndarray:
    """:func:`detect` behind 30 ms per call (a run slow enough to be killed midway)."""
    import time

    time.sleep(0.03)
    return detect(batch)
