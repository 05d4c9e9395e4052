"""The Triton adapter against real Triton Inference Servers (PyTriton) on 127.0.0.1.

Fixtures come from ``tests/plugins/triton_fixtures.py``; the tests that need a server skip when
``REX_STREAM_TRITON_PYTHON`` is unset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest

import rex_stream
from rex_stream.adapters.security import token_headers
from rex_stream.adapters.triton import TritonBackend, connect, parse_spec
from rex_stream.adapters.triton.options import TritonOptions
from rex_stream.engine.backend import BackendSettings, open_backend
from rex_stream.errors import BackendError, BackendTimeout, ConfigError, InputError
from tests.plugins.triton_fixtures import DEMO_IMAGE as IMAGE
from tests.plugins.triton_fixtures import DEMO_MODEL
from tests.servers.triton_server import TritonProcess, free_port

PROTOCOLS = ["grpc", "http"]
COMPOSE = Path(__file__).resolve().parents[3] / "compose"


def spec_for(server: TritonProcess, protocol: str, model: str | None = None) -> str:
    """The backend spec of a server's model over one protocol."""
    model = model or server.model_name
    if protocol == "grpc":
        return f"triton://{server.grpc_url}/{model}"
    return f"triton+http://{server.http_url}/{model}"


def local_scores(model: Path, batch: np.ndarray) -> np.ndarray:
    """Scores of the same ONNX model through a local onnxruntime session."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def sample_batch(n: int, shape: tuple[int, ...] = (3, 32, 32), seed: int = 0) -> np.ndarray:
    """A seeded float32 batch."""
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


async def infer_once(
    spec: str,
    batch: np.ndarray,
    timeout_s: float = 5.0,
    max_inflight: int = 2,
    input_shape: tuple[int, ...] | None = None,
    options: dict[str, str] | None = None,
) -> np.ndarray:
    """Connect, score one batch, close (positional arguments, for ``anyio.run``)."""
    settings = BackendSettings(timeout_s, max_inflight, input_shape, options or {})
    backend = await open_backend(spec, settings)
    try:
        return await backend.infer(batch)
    finally:
        await backend.aclose()


# ----------------------------------------------------------------------------- no server needed


def test_parse_spec_reads_address_model_version_and_query() -> None:
    target, options = parse_spec("triton://gpu-box:9001/resnet/3?output=probs&ssl=true")
    assert (target.protocol, target.host, target.port) == ("grpc", "gpu-box", 9001)
    assert (target.model, target.version) == ("resnet", "3")
    assert options == {"output": "probs", "ssl": "true"}
    target, _ = parse_spec("triton+http://localhost/resnet")
    assert (target.protocol, target.port, target.version) == ("http", 8000, "")
    assert parse_spec("triton://[::1]/m")[0].address == "[::1]:8001"


@pytest.mark.parametrize(
    "spec",
    ["triton://host:8001", "triton://host:8001/a/b/c", "triton://host:x/m", "triton://h/m/latest"],
)
def test_parse_spec_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"Triton spec|version|port"):
        parse_spec(spec)


def test_auth_headers_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MY_TOKEN", "abc")
    assert token_headers({"token_env": "MY_TOKEN"}, grpc=True) == {"authorization": "Bearer abc"}
    assert token_headers({"token_env": "MY_TOKEN", "auth": "triton"}, grpc=True) == {
        "triton-grpc-protocol-triton-access-token": "abc"
    }
    token_file = tmp_path / "token"
    token_file.write_text("xyz\n")
    assert token_headers({"token_file": str(token_file), "auth": "triton"}) == {
        "triton-access-token": "xyz"
    }
    assert token_headers({"token_file": str(token_file), "auth_header": "X-Key"}) == {
        "x-key": "xyz"
    }
    monkeypatch.delenv("MY_TOKEN")
    with pytest.raises(ConfigError, match=r"MY_TOKEN"):
        token_headers({"token_env": "MY_TOKEN"})
    with pytest.raises(ConfigError, match=r"cannot read"):
        token_headers({"token_file": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("old", "new"),
    [("ssl_ca", "ca_bundle"), ("ssl_cert", "client_cert"), ("ssl_key", "client_key")],
)
def test_tls_options_new_and_deprecated_names(old: str, new: str, tmp_path: Path) -> None:
    """The TLS files are spelled as for the HTTP backend; the old names warn, naming the new."""
    target, _ = parse_spec("triton://gpu-box/m")
    pem = tmp_path / "file.pem"
    pem.write_text("x")
    options = {"ssl": "true", "ca_bundle": str(pem), "client_cert": str(pem)}
    parsed = TritonOptions.parse(target, {**options, new: str(pem)})
    assert parsed.tls and getattr(parsed.tls_files, new) == str(pem)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated; use {new}="):
        parsed = TritonOptions.parse(target, {**{k: v for k, v in options.items() if k != new},
                                              old: str(pem)})  # fmt: skip
    assert parsed.tls and getattr(parsed.tls_files, new) == str(pem)


def test_header_and_tls_options_as_for_http(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``header.NAME=env:VAR`` and ``ca_bundle`` (which turns TLS on) work as over HTTP;
    ``insecure`` is refused over gRPC, which cannot skip verification."""
    monkeypatch.setenv("REX_TEST_KEY", "k3y")
    grpc, _ = parse_spec("triton://gpu-box/m")
    http, _ = parse_spec("triton+http://gpu-box/m")
    assert TritonOptions.parse(grpc, {"header.X-Api-Key": "env:REX_TEST_KEY"}).headers == {
        "x-api-key": "k3y"
    }
    assert TritonOptions.parse(http, {"header.X-Api-Key": "env:REX_TEST_KEY"}).headers == {
        "X-Api-Key": "k3y"
    }
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    assert TritonOptions.parse(grpc, {"ca_bundle": str(pem)}).tls
    assert not TritonOptions.parse(grpc, {"ca_bundle": str(pem), "ssl": "false"}).tls
    assert TritonOptions.parse(http, {"insecure": "true"}).tls_files.insecure
    with pytest.raises(ConfigError, match="gRPC cannot skip certificate verification"):
        TritonOptions.parse(grpc, {"insecure": "true"})


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown Triton backend option"):
        anyio.run(connect, "triton://127.0.0.1:1/m", BackendSettings(options={"outptu": "x"}))


def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    for spec in (f"triton://127.0.0.1:{port}/m", f"triton+http://127.0.0.1:{port}/m"):
        with pytest.raises(BackendError, match=r"cannot reach a Triton server.*is it running"):
            anyio.run(infer_once, spec, sample_batch(1))


def test_compose_model_config_parses_with_tritons_protobuf() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repository = COMPOSE / "model_repository"
    configs = sorted(repository.glob("*/config.pbtxt"))
    assert configs, f"no model configs under {repository}"
    for path in configs:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert config.name == path.parent.name  # Triton requires name == directory
        assert config.backend == "onnxruntime"
        assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
        assert all(
            g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in config.instance_group
        )
        assert len(config.input) == 1 and len(config.output) == 1
        assert (path.parent / "1").is_dir()  # version directory that receives model.onnx


# ----------------------------------------------------------------------------- real server


@pytest.mark.triton
@pytest.mark.parametrize("shared_memory", [False, True], ids=["socket", "shm"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scores_equal_local_onnxruntime(
    triton_server: TritonProcess,
    tiny_onnx_model: Path,
    triton_token_env: str,
    protocol: str,
    shared_memory: bool,
) -> None:
    batch = sample_batch(11, seed=1)
    expected = local_scores(tiny_onnx_model, batch)
    options = {"token_env": triton_token_env, "auth": "triton"}
    if shared_memory:
        options["shared_memory"] = "system"

    async def run() -> list[np.ndarray]:
        backend = await open_backend(
            spec_for(triton_server, protocol), BackendSettings(max_inflight=3, options=options)
        )
        try:
            assert isinstance(backend, TritonBackend)
            assert backend.uses_shared_memory is shared_memory
            info = backend.info
            assert (info.input_name, info.output_name) == ("input", "logits")
            assert (info.input_shape, info.num_classes, info.max_batch) == ((3, 32, 32), 10, 4)
            results: list[np.ndarray] = [np.empty(0)] * 6

            async def one(i: int) -> None:  # concurrent calls, as the scheduler makes them
                results[i] = await backend.infer(batch[i:] if i % 2 else batch)

            async with anyio.create_task_group() as group:
                for i in range(len(results)):
                    group.start_soon(one, i)
            return results
        finally:
            await backend.aclose()

    before = len(triton_server.batch_sizes())
    results = anyio.run(run)
    for i, scores in enumerate(results):
        np.testing.assert_allclose(scores, expected[i:] if i % 2 else expected, atol=1e-5)
    executed = triton_server.batch_sizes()[before:]
    assert sum(executed) == sum(len(r) for r in results)
    assert max(executed) <= 4  # the model's max_batch_size, whatever the caller sends


@pytest.mark.triton
@pytest.mark.parametrize("shared_memory", [False, True], ids=["socket", "shm"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_without_batching_gets_one_input_per_call(
    triton_server_unbatched: TritonProcess,
    tiny_onnx_model: Path,
    triton_token_env: str,
    protocol: str,
    shared_memory: bool,
) -> None:
    batch = sample_batch(3, seed=2)
    options = {"token_env": triton_token_env, "auth": "triton"}
    if shared_memory:
        options["shared_memory"] = "system"

    async def run() -> tuple[int | None, np.ndarray]:
        settings = BackendSettings(max_inflight=2, options=options)
        backend = await open_backend(spec_for(triton_server_unbatched, protocol), settings)
        try:
            return backend.info.max_batch, await backend.infer(batch)
        finally:
            await backend.aclose()

    before = len(triton_server_unbatched.batch_sizes())
    max_batch, scores = anyio.run(run)
    assert max_batch == 1
    np.testing.assert_allclose(scores, local_scores(tiny_onnx_model, batch), atol=1e-5)
    assert triton_server_unbatched.batch_sizes()[before:] == [1, 1, 1]


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_missing_model_names_what_the_server_has(
    triton_server: TritonProcess, triton_token_env: str, protocol: str
) -> None:
    spec = spec_for(triton_server, protocol, model="resnet")
    not_found = r"model 'resnet' not found on the server.*unknown model"
    # PyTriton loads models through the API, so its repository index is empty: the message
    # rests on the server's own answer about the model.
    with pytest.raises(BackendError, match=not_found):
        anyio.run(
            infer_once, spec, sample_batch(1), 5.0, 2, None,
            {"token_env": triton_token_env, "auth": "triton"},
        )  # fmt: skip
    with pytest.raises(BackendError, match=not_found):
        anyio.run(infer_once, spec, sample_batch(1))


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_side_failure_carries_the_servers_message(
    triton_server: TritonProcess, protocol: str
) -> None:
    spec = spec_for(triton_server, protocol, model="failing")
    with pytest.raises(BackendError, match=r"failed on the server.*synthetic server-side failure"):
        anyio.run(infer_once, spec, sample_batch(2))


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_answer_is_a_timeout(triton_server: TritonProcess, protocol: str) -> None:
    spec = spec_for(triton_server, protocol, model="slow")
    with pytest.raises(BackendTimeout, match=r"no answer within 0.5 s"):
        anyio.run(infer_once, spec, sample_batch(1), 0.5)


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shape_dtype_and_option_mismatches(triton_server: TritonProcess, protocol: str) -> None:
    spec = spec_for(triton_server, protocol)
    with pytest.raises(InputError, match=r"does not fit the model input \(n, 3, 32, 32\)"):
        anyio.run(infer_once, spec, sample_batch(2, shape=(3, 16, 16)))
    with pytest.raises(InputError, match=r"cannot be sent as the model's FP32"):
        anyio.run(infer_once, spec, sample_batch(2).astype(np.complex64))
    with pytest.raises(ConfigError, match=r"input shape \(3, 64, 64\) does not fit"):
        anyio.run(infer_once, spec, sample_batch(1), 5.0, 2, (3, 64, 64))
    with pytest.raises(ConfigError, match=r"output='probs'.*\['logits'\]"):
        anyio.run(infer_once, spec, sample_batch(1), 5.0, 2, None, {"output": "probs"})


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_guarded_shared_memory_without_token_asks_for_one(
    triton_server: TritonProcess, protocol: str
) -> None:
    spec = spec_for(triton_server, protocol)
    with pytest.raises(BackendError, match=r"refused.*token_env=NAME or token_file=PATH"):
        anyio.run(infer_once, spec, sample_batch(1), 5.0, 2, None, {"shared_memory": "system"})


@pytest.mark.triton
def test_wrong_protocol_port_is_reported(triton_server: TritonProcess) -> None:
    with pytest.raises(BackendError, match=r"cannot reach a Triton server.*gRPC, default 8001"):
        anyio.run(infer_once, f"triton://{triton_server.http_url}/classifier", sample_batch(1))


@pytest.mark.triton
def test_server_stopped_mid_run_then_back(
    triton_process_factory: Callable[..., TritonProcess], tiny_onnx_model: Path
) -> None:
    """A stopped server fails the next call with a clear error; the same backends (one client
    each for the run) work again once the server is back on its address."""
    server = triton_process_factory(max_batch_size=4)
    server.start()
    batch = sample_batch(4, seed=3)
    expected = local_scores(tiny_onnx_model, batch)

    async def run() -> None:
        settings = BackendSettings(timeout_s=10)
        backends = [await open_backend(spec_for(server, p), settings) for p in PROTOCOLS]
        try:
            for backend in backends:
                np.testing.assert_allclose(await backend.infer(batch), expected, atol=1e-5)
            await anyio.to_thread.run_sync(server.stop)
            for backend in backends:
                with pytest.raises(BackendError, match=r"cannot reach the server.*is it running"):
                    await backend.infer(batch)
            await anyio.to_thread.run_sync(server.start)
            for backend in backends:
                np.testing.assert_allclose(await backend.infer(batch), expected, atol=1e-5)
        finally:
            for backend in backends:
                await backend.aclose()

    anyio.run(run)


@pytest.mark.triton
@pytest.mark.parametrize("ca_option", ["ca_bundle", "ssl_ca"])
def test_grpc_over_tls(
    triton_server_tls: TritonProcess,
    tls_certificate: tuple[Path, Path],
    tiny_onnx_model: Path,
    ca_option: str,
) -> None:
    """TLS with the server's CA as ``ca_bundle`` (or ``ssl_ca``, its deprecated name)."""
    spec = f"triton://{triton_server_tls.grpc_url}/classifier"
    batch = sample_batch(5, seed=5)
    tls = {"ssl": "true", ca_option: str(tls_certificate[0])}
    if ca_option == "ssl_ca":
        with pytest.warns(DeprecationWarning, match="use ca_bundle="):
            scores = anyio.run(infer_once, spec, batch, 5.0, 2, None, tls)
    else:
        scores = anyio.run(infer_once, spec, batch, 5.0, 2, None, tls)
    np.testing.assert_allclose(scores, local_scores(tiny_onnx_model, batch), atol=1e-5)
    # Plain text to a TLS port, and TLS without trusting the self-signed certificate, fail.
    with pytest.raises(BackendError, match=r"cannot reach a Triton server"):
        anyio.run(infer_once, spec, batch, 5.0)
    with pytest.raises(BackendError, match=r"cannot reach a Triton server"):
        anyio.run(infer_once, spec, batch, 5.0, 2, None, {"ssl": "true"})


@pytest.mark.triton
def test_cli_explains_through_triton(
    triton_server: TritonProcess, tiny_onnx_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rex_stream.cli.main import main

    common = ["--iters", "2", "--seed", "3", "--no-extract", "--json", "--quiet"]
    assert main([str(IMAGE), "--model", str(tiny_onnx_model), *common]) == 0
    local = json.loads(capsys.readouterr().out)
    spec = spec_for(triton_server, "http")
    assert main([str(IMAGE), "--backend", spec, *common]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["target"] == pytest.approx(local["target"])
    assert remote["stats"]["passing"] == local["stats"]["passing"]
    assert remote["stats"]["failing"] == local["stats"]["failing"]
    code = main([str(IMAGE), "--backend", f"triton://127.0.0.1:{free_port()}/m", "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == BackendError.exit_code
    assert error.startswith("rex-stream: error: cannot reach a Triton server")
    assert "\n" not in error


@pytest.mark.triton
def test_demo_model_through_triton_equals_local(triton_server_demo: TritonProcess) -> None:
    batch = sample_batch(3, shape=(3, 224, 224), seed=4)
    expected = local_scores(DEMO_MODEL, batch)
    for protocol in PROTOCOLS:
        scores = anyio.run(infer_once, spec_for(triton_server_demo, protocol), batch)
        assert scores.shape == (3, 1000)
        np.testing.assert_allclose(scores, expected, atol=1e-4)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.triton
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_explanation_through_triton_equals_local_onnx(
    triton_server: TritonProcess, tiny_onnx_model: Path, protocol: str
) -> None:
    settings = {"iters": 3, "seed": 7, "min_box_size": 4}
    # batches of 32 here, of at most 4 on the server: extraction must not care
    local = rex_stream.explain_sync(IMAGE, str(tiny_onnx_model), max_batch=32, **settings)
    remote = rex_stream.explain_sync(IMAGE, spec_for(triton_server, protocol), **settings)
    assert remote.target.classification == local.target.classification
    assert remote.target.confidence == pytest.approx(local.target.confidence, abs=1e-5)
    searched = (local.stats.passing, local.stats.failing)
    assert (remote.stats.passing, remote.stats.failing) == searched and sum(searched) > 14
    assert np.count_nonzero(local.responsibility) > 0
    np.testing.assert_allclose(remote.responsibility, local.responsibility, atol=1e-5)
    # the same explanation, whatever batch the server prefers
    assert local.sufficiency is not None and remote.sufficiency is not None
    assert np.array_equal(remote.mask, local.mask)
    assert remote.sufficiency.queries == local.sufficiency.queries


@pytest.mark.triton
def test_server_stopped_mid_explanation_leaves_a_store_that_resumes(
    triton_process_factory: Callable[..., TritonProcess], tiny_onnx_model: Path, tmp_path: Path
) -> None:
    """Stopping Triton mid-run ends the run with a clear error; the Zarr store keeps the
    finished iterations, and once the server is back the run resumes to the same map."""
    server = triton_process_factory(max_batch_size=4)
    server.start()
    config = rex_stream.ExplainConfig().with_overrides(
        iters=6, seed=11, min_box_size=4, max_concurrent_searches=1, max_inflight=1, retry_s=0
    )
    store = tmp_path / "run.zarr"
    spec = f"triton://{server.grpc_url}/classifier"

    def stop_after_two(progress: rex_stream.Progress) -> None:
        # Synchronous on purpose: the run cannot go on until the server is really gone.
        if progress.phase == "iteration" and progress.iterations_done == 2:
            server.stop()

    async def interrupted() -> None:
        await rex_stream.explain(IMAGE, spec, config, store=store, on_progress=stop_after_two)

    with pytest.raises(BackendError, match=r"cannot reach the server.*is it running"):
        anyio.run(interrupted)
    server.start()
    resumed = rex_stream.explain_sync(IMAGE, spec, config, store=store, resume=True)
    uninterrupted = rex_stream.explain_sync(IMAGE, str(tiny_onnx_model), config)
    assert resumed.stats.resumed_iterations == 2
    np.testing.assert_allclose(resumed.responsibility, uninterrupted.responsibility, atol=1e-5)
