"""A local ONNX model behind a simulated network: every call first waits a fixed latency.

``latency_onnx_backend`` wraps an onnxruntime session in a :class:`PythonBackend` whose async
function sleeps ``latency_s`` (the round trip, which overlaps across in-flight calls) and then
runs the session in a worker thread. Compute is serialised by a limiter (one model run at a
time, using all intra-op threads), so concurrency hides the latency, not the compute, as a
single-model server would.
"""

from __future__ import annotations

import os

import anyio
import numpy as np
import onnxruntime as ort

from rex_stream.adapters.python import PythonBackend


def onnx_session(model: str, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session configured as rex-stream's ONNX adapter configures its own, except that
    idle worker threads sleep instead of spinning (a server far away spins on its own cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # a simulated server far away: its idle worker threads must not spin on the client's cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def latency_onnx_backend(
    model: str,
    latency_s: float = 0.020,
    *,
    max_batch: int | None = 16,
    max_inflight: int = 8,
    compute_slots: int = 1,
) -> PythonBackend:
    """A backend scoring with ``model`` after ``latency_s`` of simulated network delay."""
    session = onnx_session(model)
    model_input = session.get_inputs()[0]
    input_name = model_input.name
    input_shape = tuple(int(d) for d in model_input.shape[1:])
    compute = anyio.CapacityLimiter(compute_slots)

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {input_name: batch})[0])

    async def remote(batch: np.ndarray) -> np.ndarray:
        await anyio.sleep(latency_s)
        data = np.ascontiguousarray(batch, dtype=np.float32)
        return await anyio.to_thread.run_sync(run, data, limiter=compute)

    return PythonBackend(
        remote,
        input_shape,
        name=f"{os.path.basename(model)}+{latency_s * 1000:g}ms",
        max_batch=max_batch,
        max_inflight=max_inflight,
    )
