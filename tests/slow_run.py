"""A run that is slow on purpose, for the kill -9 / resume test: one search at a time, 30 ms
per backend call. Usage: python -m tests.slow_run MODEL IMAGE STORE [--resume]."""

from __future__ import annotations

import sys

import anyio
import onnxruntime as ort

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend

SETTINGS = {"iters": 10, "seed": 21, "min_box_size": 4, "max_concurrent_searches": 1}


def slow_backend(model: str) -> PythonBackend:
    """The ONNX model behind a 30 ms delay per call."""
    session = ort.InferenceSession(model)

    async def score(batch):
        await anyio.sleep(0.03)
        return session.run(None, {"input": batch})[0]

    return PythonBackend(score, (3, 32, 32), max_inflight=1)


if __name__ == "__main__":
    model, image, store = sys.argv[1:4]
    resume = "--resume" in sys.argv
    explain_sync(image, slow_backend(model), store=store, resume=resume, **SETTINGS)
