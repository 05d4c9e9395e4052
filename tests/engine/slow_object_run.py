"""The slow run of :mod:`tests.slow_run`, slower still (150 ms per backend call), for the kill -9
test on an object store: an iteration then takes longer than a batch's hold-back time, so the
kill lands while some records are written in batches and others are held back in memory.
Usage: python -m tests.engine.slow_object_run MODEL IMAGE STORE."""

from __future__ import annotations

import sys

import anyio
import onnxruntime as ort

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from tests.slow_run import SETTINGS


def slower_backend(model: str, delay_s: float = 0.15) -> PythonBackend:
    """The ONNX model behind a delay per call (the same model identity whatever the delay:
    a resume may run faster)."""
    session = ort.InferenceSession(model)

    async def score(batch):
        await anyio.sleep(delay_s)
        return session.run(None, {"input": batch})[0]

    return PythonBackend(score, (3, 32, 32), max_inflight=1)


if __name__ == "__main__":
    model, image, store = sys.argv[1:4]
    explain_sync(image, slower_backend(model), store=store, **SETTINGS)
