"""Pytest fixtures that run real Triton Inference Servers (PyTriton) on 127.0.0.1.

The servers run from the PyTriton environment named by ``REX_STREAM_TRITON_PYTHON``; every
fixture that needs one skips, with that reason, when the variable is unset. Servers are shared
per session because each takes a few seconds to start.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers.triton_server import TRITON_PYTHON_ENV, TritonProcess, triton_python

DATA = Path(__file__).resolve().parents[2] / "rex_stream" / "data"
DEMO_MODEL = DATA / "efficientnet-lite0.onnx"  # the bundled demo model (ImageNet)
DEMO_IMAGE = DATA / "ladybird.jpg"
TRITON_TOKEN = "test-token-d41d8cd98f00"  # guards shared memory, statistics, model repository
TINY_INPUT_SHAPE = (3, 32, 32)
TINY_CLASSES = 10


def _require_triton() -> str:
    python = triton_python()
    if python is None:
        pytest.skip(f"needs a PyTriton environment: set {TRITON_PYTHON_ENV} to its python")
    if not Path(python).exists():
        pytest.fail(f"{TRITON_PYTHON_ENV}={python} does not exist")
    return python


def build_tiny_classifier(path: Path, seed: int = 0) -> Path:
    """Write a small seeded ONNX classifier: (N, 3, 32, 32) → GlobalAveragePool → Gemm → 10."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    # A 3×3 convolution first, so the logits depend on where things are, not only on means.
    conv = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    weights = rng.normal(size=(TINY_CLASSES, 8)).astype(np.float32)
    bias = rng.normal(size=TINY_CLASSES).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *TINY_INPUT_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", TINY_CLASSES])],
        [
            numpy_helper.from_array(conv, "conv"),
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny seeded ONNX classifier (input 'input' (N, 3, 32, 32), output 'logits' (N, 10))."""
    return build_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def triton_token() -> str:
    """The access token of the session's Triton servers (for shared memory, model listing)."""
    return TRITON_TOKEN


@pytest.fixture
def triton_token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Name of an environment variable holding the servers' token (for ``token_env=``)."""
    monkeypatch.setenv("REX_STREAM_TEST_TRITON_TOKEN", TRITON_TOKEN)
    return "REX_STREAM_TEST_TRITON_TOKEN"


def _serve(**fields: object) -> Iterator[TritonProcess]:
    _require_triton()
    server = TritonProcess(**fields)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if server.log_path is not None:
            server.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def triton_server(
    tiny_onnx_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonProcess]:
    """A Triton server with the tiny model ``classifier`` (max_batch_size 4, dynamic batching),
    a ``failing`` model (every request raises) and a ``slow`` one (answers after 3 s); every
    executed batch size of ``classifier`` is logged (``server.batch_sizes()``)."""
    yield from _serve(
        model_path=tiny_onnx_model,
        model_name="classifier",
        max_batch_size=4,
        failing_model="failing",
        slow_model="slow",
        slow_ms=3000,
        batch_log=tmp_path_factory.mktemp("triton") / "batches.log",
        access_token=TRITON_TOKEN,
    )


@pytest.fixture(scope="session")
def triton_server_unbatched(
    tiny_onnx_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonProcess]:
    """A Triton server with the tiny model ``single`` without batching (max_batch_size 0)."""
    yield from _serve(
        model_path=tiny_onnx_model,
        model_name="single",
        max_batch_size=0,
        batch_log=tmp_path_factory.mktemp("triton") / "batches.log",
        access_token=TRITON_TOKEN,
    )


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (PEM files)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def triton_server_tls(
    tiny_onnx_model: Path, tls_certificate: tuple[Path, Path]
) -> Iterator[TritonProcess]:
    """A Triton server whose gRPC frontend speaks TLS only (tiny model ``classifier``)."""
    yield from _serve(
        model_path=tiny_onnx_model, model_name="classifier", max_batch_size=4,
        grpc_tls=tls_certificate, access_token=TRITON_TOKEN,
    )  # fmt: skip


@pytest.fixture(scope="session")
def triton_server_demo() -> Iterator[TritonProcess]:
    """A Triton server with the demo ImageNet model (EfficientNet-Lite0) as ``efficientnet``."""
    if not DEMO_MODEL.exists():
        pytest.skip(f"demo model {DEMO_MODEL} is missing")
    yield from _serve(
        model_path=DEMO_MODEL, model_name="efficientnet", max_batch_size=8,
        access_token=TRITON_TOKEN,
    )  # fmt: skip


@pytest.fixture
def triton_process_factory(tiny_onnx_model: Path) -> Iterator[Callable[..., TritonProcess]]:
    """Make (unstarted) Triton servers of the tiny model that the test starts and stops itself;
    all are stopped at teardown."""
    _require_triton()
    made: list[TritonProcess] = []

    def make(**fields: object) -> TritonProcess:
        fields.setdefault("model_path", tiny_onnx_model)
        fields.setdefault("access_token", TRITON_TOKEN)
        server = TritonProcess(**fields)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()
        if server.log_path is not None:
            server.log_path.unlink(missing_ok=True)
