"""A real Triton Inference Server (PyTriton) serving an ONNX classifier, for tests and benchmarks.

Two halves in one file:

- run as a script with the PyTriton environment's Python (``REX_STREAM_TRITON_PYTHON``; PyTriton
  needs numpy<2, so it cannot live in the project's environment), it serves an ONNX file through
  onnxruntime inside a PyTriton-bound function, with dynamic batching, on the ports it is given;
- imported from the project's environment, :func:`running_triton` / :class:`TritonProcess` pick
  free ports, start that script as a subprocess, poll readiness against a deadline, and stop it.

The helper uses only the standard library, so any test (Triton, Open Inference Protocol over HTTP)
can use it. Besides the main model the server can bind a *failing* model (every request raises,
to test server-side error reporting) and a *slow* model (sleeps before answering, to test
timeouts). With ``batch_log`` every executed batch size is appended to a file, the server-side
record that tests use to check that batches never exceed ``max_batch_size``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

TRITON_PYTHON_ENV = "REX_STREAM_TRITON_PYTHON"
TOKEN_ENV = "REX_STREAM_TRITON_SERVER_TOKEN"  # passed to the server through its environment
SCRIPT = Path(__file__).resolve()

# Endpoints PyTriton guards with an access token by default; "inference" etc. can be added.
DEFAULT_RESTRICTED = ("shared-memory", "model-repository", "statistics", "trace", "logging")


# --------------------------------------------------------------------------- client-side helper


def triton_python() -> str | None:
    """The interpreter of the PyTriton environment, or ``None`` when it is not configured."""
    value = os.environ.get(TRITON_PYTHON_ENV, "").strip()
    return value or None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class TritonProcess:
    """A Triton server subprocess on 127.0.0.1; ``start``/``stop`` may be called repeatedly.

    The ports are chosen once, so a stopped server comes back at the same address (for
    tests that stop a server mid-run and resume against it).
    """

    model_path: Path
    model_name: str = "classifier"
    max_batch_size: int = 8
    queue_delay_us: int = 0
    failing_model: str | None = None
    slow_model: str | None = None
    slow_ms: int = 0
    batch_log: Path | None = None
    access_token: str | None = None
    restricted: Sequence[str] = DEFAULT_RESTRICTED
    grpc_tls: tuple[Path, Path] | None = None  # (certificate, key): gRPC over TLS
    python: str | None = None
    ready_timeout_s: float = 90.0
    http_port: int = dataclasses.field(default_factory=free_port)
    grpc_port: int = dataclasses.field(default_factory=free_port)
    metrics_port: int = dataclasses.field(default_factory=free_port)
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC frontend."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP/REST frontend (KServe v2 / Open Inference Protocol)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        """Whether the subprocess is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        python = self.python or triton_python()
        if python is None:
            raise RuntimeError(f"set {TRITON_PYTHON_ENV} to the PyTriton environment's python")
        cmd = [
            python,
            str(SCRIPT),
            "--model",
            str(self.model_path),
            "--name",
            self.model_name,
            "--max-batch-size",
            str(self.max_batch_size),
            "--queue-delay-us",
            str(self.queue_delay_us),
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--restricted",
            ",".join(self.restricted),
        ]
        if self.failing_model:
            cmd += ["--failing-model", self.failing_model]
        if self.slow_model:
            cmd += ["--slow-model", self.slow_model, "--slow-ms", str(self.slow_ms)]
        if self.batch_log is not None:
            cmd += ["--batch-log", str(self.batch_log)]
        if self.grpc_tls is not None:
            cmd += [
                "--grpc-tls-cert",
                str(self.grpc_tls[0]),
                "--grpc-tls-key",
                str(self.grpc_tls[1]),
            ]
        return cmd

    def start(self) -> None:
        """Start the server and return once it and its models are ready (or raise)."""
        if self.running:
            return
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="triton-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        env = dict(os.environ)
        if self.access_token:
            env[TOKEN_ENV] = self.access_token
        with open(self.log_path, "ab") as log:
            # A session of its own, so stopping it also reaches tritonserver and the stubs.
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def models(self) -> list[str]:
        """The models the server is expected to serve."""
        return [m for m in (self.model_name, self.failing_model, self.slow_model) if m]

    def wait_ready(self) -> None:
        """Poll ``/v2/health/ready`` and each model's ready endpoint until they answer 200."""
        deadline = time.monotonic() + self.ready_timeout_s
        pending = ["/v2/health/ready"] + [f"/v2/models/{m}/ready" for m in self.models()]
        while pending:
            if not self.running:
                raise RuntimeError(f"Triton server exited during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Triton server not ready within {self.ready_timeout_s:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            if _http_status(self.http_port, pending[0]) == 200:
                pending.pop(0)
                continue
            time.sleep(0.1)  # polling a subprocess from sync code; no event to wait on

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server: SIGINT to its session, then SIGKILL if it outlives ``timeout_s``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        # Children (tritonserver, python-backend stubs) share the session; make sure none linger.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def batch_sizes(self) -> list[int]:
        """Every batch size the main model executed so far (needs ``batch_log``)."""
        if self.batch_log is None or not self.batch_log.exists():
            return []
        return [int(line) for line in self.batch_log.read_text().split()]


def _http_status(port: int, path: str) -> int | None:
    """Status of a GET on 127.0.0.1, or ``None`` when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


@contextlib.contextmanager
def running_triton(
    model_path: str | os.PathLike[str],
    *,
    max_batch_size: int = 8,
    model_name: str = "classifier",
    **kwargs: object,
) -> Iterator[TritonProcess]:
    """Run a Triton server for the duration of a ``with`` block; yields its :class:`TritonProcess`.

    Extra keyword arguments are :class:`TritonProcess` fields (``failing_model``, ``slow_model``,
    ``slow_ms``, ``batch_log``, ``access_token``, ``restricted``, ``queue_delay_us``, ``grpc_tls``,
    ``python``).
    """
    server = TritonProcess(
        model_path=Path(model_path), model_name=model_name, max_batch_size=max_batch_size,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if server.log_path is not None:
            server.log_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- server-side script


def _serve(args: argparse.Namespace) -> None:  # pragma: no cover - runs in the PyTriton venv
    """Bind the ONNX model (and the optional failing/slow models) and serve until signalled."""
    import logging

    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    logging.basicConfig(level=logging.WARNING)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    onnx_input = session.get_inputs()[0]
    onnx_outputs = session.get_outputs()
    sample_shape = tuple(int(d) for d in onnx_input.shape[1:])
    batching = args.max_batch_size > 0
    # A non-batching model declares its full shape, batch axis of 1 included, as Triton
    # users do for ONNX files exported with a fixed batch of one.
    input_shape = sample_shape if batching else (1, *sample_shape)
    batch_log = open(args.batch_log, "a", buffering=1) if args.batch_log else None

    def run_onnx(x: np.ndarray) -> dict[str, np.ndarray]:
        if batch_log is not None:
            batch_log.write(f"{x.shape[0]}\n")
        results = session.run(None, {onnx_input.name: x.astype(np.float32, copy=False)})
        return {o.name: r for o, r in zip(onnx_outputs, results)}

    def output_tensors() -> list[Tensor]:
        tensors = []
        for o in onnx_outputs:
            shape = tuple(int(d) for d in o.shape[1:])
            tensors.append(
                Tensor(name=o.name, dtype=np.float32, shape=shape if batching else (1, *shape))
            )
        return tensors

    if batching:

        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            return run_onnx(inputs[onnx_input.name])

        @batch
        def fail(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            raise ValueError("synthetic server-side failure for testing")

        @batch
        def slow(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            time.sleep(args.slow_ms / 1000)
            return run_onnx(inputs[onnx_input.name])

    else:

        def infer(requests):  # type: ignore[no-untyped-def]
            return [run_onnx(r[onnx_input.name]) for r in requests]

        def fail(requests):  # type: ignore[no-untyped-def]
            raise ValueError("synthetic server-side failure for testing")

        def slow(requests):  # type: ignore[no-untyped-def]
            time.sleep(args.slow_ms / 1000)
            return [run_onnx(r[onnx_input.name]) for r in requests]

    model_config = ModelConfig(
        batching=batching,
        max_batch_size=max(args.max_batch_size, 1),
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
    )
    inputs = [Tensor(name=onnx_input.name, dtype=np.float32, shape=input_shape)]
    restricted = [e for e in args.restricted.split(",") if e]
    security = TritonSecurityConfig(
        access_token=os.environ.get(TOKEN_ENV) or None, restricted_endpoints=restricted
    )
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        allow_metrics=False,
        exit_timeout_secs=2,
        grpc_use_ssl=bool(args.grpc_tls_cert),
        grpc_server_cert=args.grpc_tls_cert,
        grpc_server_key=args.grpc_tls_key,
    )
    with Triton(config=config, security_config=security) as triton:
        binds = [(args.name, infer)]
        if args.failing_model:
            binds.append((args.failing_model, fail))
        if args.slow_model:
            binds.append((args.slow_model, slow))
        for name, func in binds:
            triton.bind(
                model_name=name, infer_func=func, inputs=inputs, outputs=output_tensors(),
                config=model_config, strict=True,
            )  # fmt: skip
        signal.signal(signal.SIGTERM, _interrupt)
        triton.serve()


def _interrupt(signum: int, frame: object) -> None:  # pragma: no cover
    """Treat SIGTERM like SIGINT, which PyTriton's ``serve`` handles by shutting down."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - a script entry point
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file to serve")
    parser.add_argument("--name", default="classifier")
    parser.add_argument("--max-batch-size", type=int, default=8, help="0: no batching")
    parser.add_argument("--queue-delay-us", type=int, default=0)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--failing-model", default=None)
    parser.add_argument("--slow-model", default=None)
    parser.add_argument("--slow-ms", type=int, default=0)
    parser.add_argument("--batch-log", default=None)
    parser.add_argument("--grpc-tls-cert", default=None, help="PEM certificate: gRPC over TLS")
    parser.add_argument("--grpc-tls-key", default=None, help="PEM key of --grpc-tls-cert")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument("--restricted", default=",".join(DEFAULT_RESTRICTED))
    _serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
