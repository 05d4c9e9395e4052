"""A real MLServer (Open Inference Protocol v2) serving an ONNX file, for the HTTP adapter tests.

Why MLServer and not KServe's Python model server: MLServer 1.7 installs from PyPI into a plain
venv (wheels only), starts in about 1.5 s here with ``parallel_workers: 0`` (one process, no
worker pool), and serves any Python class as a model through a *custom runtime*, its documented
extension point, so wrapping onnxruntime is twenty lines. It was tried first and worked the
first time, so KServe was not needed; ``kserve`` 0.21 would also bring the Kubernetes client,
grpcio-tools, pandas and cryptography for the same v2 REST protocol.

MLServer's dependencies (fastapi, pydantic-settings, grpcio, opentelemetry…) are kept out of
the project's environment: it runs as a subprocess from its own venv, named by the environment
variable ``REX_STREAM_MLSERVER`` (the path of that venv's ``mlserver`` executable), e.g.::

    /usr/bin/python3 -m venv /work/mlservervenv
    /work/mlservervenv/bin/pip install 'mlserver==1.7.1' onnxruntime numpy
    export REX_STREAM_MLSERVER=/work/mlservervenv/bin/mlserver

MLServer does not implement the binary tensor data extension (its server metadata lists no
extensions), so it is the peer for v2 JSON only; Triton covers v2 binary.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "REX_STREAM_MLSERVER"
START_TIMEOUT_S = 90.0

# The custom runtime MLServer imports from the model folder: onnxruntime behind MLModel.
RUNTIME_SOURCE = '''
"""MLServer custom runtime: an ONNX file served through onnxruntime (written by the tests)."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    """Runs the ONNX file named by ``parameters.uri`` on the first input tensor."""

    async def load(self) -> bool:
        self._session = ort.InferenceSession(
            self.settings.parameters.uri, providers=["CPUExecutionProvider"]
        )
        self._input_name = self._session.get_inputs()[0].name
        self._output_name = self._session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        batch = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        scores = self._session.run(None, {self._input_name: batch})[0]
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name=self._output_name, payload=scores)],
        )
'''


@dataclass(frozen=True)
class MLServerHandle:
    """Where a running MLServer listens."""

    http_port: int
    model_name: str

    @property
    def model_url(self) -> str:
        """The v2 model URL the HTTP adapter takes as its spec."""
        return f"http://127.0.0.1:{self.http_port}/v2/models/{self.model_name}"


def mlserver_executable() -> str | None:
    """The ``mlserver`` executable named by ``REX_STREAM_MLSERVER``, or None when unset."""
    return os.environ.get(ENV_VAR) or None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tensor_specs(model_path: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Describe the ONNX file's first input and output as v2 metadata (dynamic axes → -1)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def spec(arg: ort.NodeArg) -> dict[str, object]:
        shape = [dim if isinstance(dim, int) else -1 for dim in arg.shape]
        return {"name": arg.name, "datatype": "FP32", "shape": shape}

    return [spec(session.get_inputs()[0])], [spec(session.get_outputs()[0])]


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Poll the v2 readiness endpoint until it answers 200, the process dies, or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"MLServer exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # polling a subprocess's readiness; nothing to await on
    raise RuntimeError(f"MLServer not ready within {START_TIMEOUT_S} s; log: {log_path}")


@contextmanager
def running_mlserver(
    model_path: Path, workdir: Path, model_name: str = "tiny"
) -> Iterator[MLServerHandle]:
    """Run MLServer serving ``model_path`` on 127.0.0.1 until the block ends."""
    executable = mlserver_executable()
    if executable is None:
        raise RuntimeError(f"{ENV_VAR} is not set")
    repo = workdir / "mlserver-repo"
    model_dir = repo / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "onnx_runtime.py").write_text(RUNTIME_SOURCE)
    inputs, outputs = _tensor_specs(model_path)
    model_settings = {
        "name": model_name,
        "implementation": "onnx_runtime.OnnxRuntime",
        "parameters": {"uri": str(model_path)},
        "inputs": inputs,
        "outputs": outputs,
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    http_port = _free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": _free_port(),
        "metrics_port": _free_port(),
        "parallel_workers": 0,
        "debug": False,
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    log_path = workdir / "mlserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, "start", str(repo)], stdout=log, stderr=subprocess.STDOUT, cwd=repo
        )
        try:
            handle = MLServerHandle(http_port=http_port, model_name=model_name)
            _wait_ready(process, handle.model_url + "/ready", log_path)
            yield handle
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
