"""The HTTP backend against real servers on 127.0.0.1: Triton and MLServer (Open Inference
Protocol v2, JSON and binary) and aiohttp apps (row JSON, custom templates, error replies).

Triton needs ``REX_STREAM_TRITON_PYTHON`` (see tests/servers/triton_server.py), MLServer needs
``REX_STREAM_MLSERVER`` (see tests/servers/mlserver_server.py); tests that need one skip with
that reason when its variable is unset. The aiohttp apps and the TLS tests need nothing extra
(TLS tests need the ``openssl`` command to make a self-signed certificate).
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import ExplainConfig, explain, explain_sync
from rex_stream.adapters.http.backend import HttpBackend
from rex_stream.cli.main import main
from rex_stream.engine.backend import BackendSettings, open_backend
from rex_stream.errors import BackendError, BackendTimeout, ConfigError
from tests.servers.http_apps import AppServer, serving_http_apps
from tests.servers.mlserver_server import ENV_VAR as MLSERVER_ENV
from tests.servers.mlserver_server import MLServerHandle, mlserver_executable, running_mlserver
from tests.servers.triton_server import TritonProcess

pytestmark = pytest.mark.anyio

SHAPE = (3, 32, 32)
TOKEN = "s3cret-token"


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def session(tiny_onnx_model: Path) -> ort.InferenceSession:
    """The local onnxruntime reference for every score comparison."""
    return ort.InferenceSession(str(tiny_onnx_model), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """Ten seeded inputs in model space."""
    return np.random.default_rng(42).random((10, *SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def reference(session: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    """Local onnxruntime scores of ``batch``."""
    return session.run(None, {"input": batch})[0]


@pytest.fixture(scope="module")
def apps(session: ort.InferenceSession) -> Iterator[AppServer]:
    """The aiohttp test apps, scoring with the tiny model."""

    def score(inputs: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": inputs})[0]

    with serving_http_apps(score, token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def mlserver(
    tiny_onnx_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MLServerHandle]:
    """A real MLServer serving the tiny model as ``tiny`` through a custom onnxruntime runtime."""
    if mlserver_executable() is None:
        pytest.skip(f"needs MLServer: set {MLSERVER_ENV} to its venv's mlserver executable")
    with running_mlserver(tiny_onnx_model, tmp_path_factory.mktemp("mlserver")) as handle:
        yield handle


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_apps(session: ort.InferenceSession, tls_files: tuple[Path, Path]) -> Iterator[AppServer]:
    """The test apps behind HTTPS with the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, tls_files))
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0], tls=context) as server:
        yield server


@asynccontextmanager
async def opened(
    spec: str, *, timeout_s: float = 20.0, max_inflight: int = 2, **options: str
) -> AsyncIterator[HttpBackend]:
    """Open an HTTP backend (input shape given, as rows/custom need) and close it afterwards."""
    settings = BackendSettings(
        timeout_s=timeout_s, max_inflight=max_inflight, input_shape=SHAPE, options=options
    )
    backend = await open_backend(spec, settings)
    assert isinstance(backend, HttpBackend)
    try:
        yield backend
    finally:
        await backend.aclose()


async def failure(spec: str, batch: np.ndarray | None = None, **kwargs: Any) -> str:
    """The one-line message of the error opening ``spec`` (and scoring ``batch``) raises."""
    with pytest.raises((BackendError, ConfigError)) as caught:
        async with opened(spec, **kwargs) as backend:
            if batch is not None:
                await backend.infer(batch)
    message = str(caught.value)
    assert message and "\n" not in message and len(message) < 400, message
    return message


def triton_url(server: TritonProcess, model: str = "classifier") -> str:
    """The v2 model URL of a Triton model."""
    return f"http://{server.http_url}/v2/models/{model}"


def write_template(folder: Path, document: Any) -> str:
    """Write a custom-protocol template file and return its path."""
    path = folder / "template.json"
    path.write_text(json.dumps(document))
    return str(path)


# ----------------------------------------------------------------------------- v2: Triton


@pytest.mark.parametrize(
    ("options", "resolved"),
    [
        ({}, "v2-binary"),
        ({"protocol": "v2-json"}, "v2-json"),
        ({"protocol": "v2-binary"}, "v2-binary"),
        ({"protocol": "v2-binary", "gzip": "true"}, "v2-binary"),
        ({"protocol": "v2-json", "gzip": "true"}, "v2-json"),
    ],
)
async def test_triton_v2_scores_equal_onnxruntime(
    triton_server: TritonProcess,
    batch: np.ndarray,
    reference: np.ndarray,
    options: dict[str, str],
    resolved: str,
) -> None:
    """Triton advertises binary tensors, so plain ``v2`` picks them; JSON, binary and gzipped
    requests all give the local scores exactly."""
    async with opened(triton_url(triton_server), **options) as backend:
        assert backend.protocol == resolved
        info = backend.info
        assert (info.input_name, info.input_shape, info.num_classes) == ("input", SHAPE, 10)
        assert info.max_batch == 4  # read from Triton's model config
        scores = await backend.infer(batch)
    np.testing.assert_array_equal(scores, reference)


async def test_triton_batches_never_exceed_max_batch(
    triton_server: TritonProcess, batch: np.ndarray, reference: np.ndarray
) -> None:
    """Ten inputs reach a max_batch_size 4 model as requests of at most 4."""
    before = len(triton_server.batch_sizes())
    async with opened(triton_url(triton_server), protocol="v2-binary") as backend:
        scores = await backend.infer(batch)
    np.testing.assert_array_equal(scores, reference)
    executed = triton_server.batch_sizes()[before:]
    assert sum(executed) == len(batch) and max(executed) <= 4


async def test_triton_too_large_reply_halves_batch(
    triton_server: TritonProcess, batch: np.ndarray, reference: np.ndarray
) -> None:
    """Triton answers 400 "batch-size must be <= 4" to a larger batch: halve until it fits."""
    async with opened(triton_url(triton_server), max_batch="10") as backend:
        scores = await backend.infer(batch)
        assert backend.info.max_batch == 2  # 10 → 5 → 2, and the smaller limit sticks
    np.testing.assert_array_equal(scores, reference)


async def test_triton_unbatched_model_gets_one_input_per_request(
    triton_server_unbatched: TritonProcess, batch: np.ndarray, reference: np.ndarray
) -> None:
    """A model without batching (shape (1, 3, 32, 32), max_batch_size 0) gets single inputs."""
    async with opened(triton_url(triton_server_unbatched, "single")) as backend:
        assert backend.info.max_batch == 1 and backend.info.input_shape == SHAPE
        scores = await backend.infer(batch[:3])
    np.testing.assert_array_equal(scores, reference[:3])


async def test_triton_errors_are_one_line(triton_server: TritonProcess, batch: np.ndarray) -> None:
    """Unknown model → 404; a model that raises → the server's message; a slow one → timeout."""
    assert "404" in await failure(triton_url(triton_server, "nope"))
    message = await failure(triton_url(triton_server, "failing"), batch[:2])
    assert "synthetic server-side failure" in message
    with pytest.raises(BackendTimeout, match=r"within 0\.5 s"):
        async with opened(triton_url(triton_server, "slow"), timeout_s=0.5) as backend:
            await backend.infer(batch[:1])


# ----------------------------------------------------------------------------- v2: MLServer


@pytest.mark.parametrize(("protocol", "resolved"), [(None, "v2-json"), ("v2-json", "v2-json")])
async def test_mlserver_v2_scores_equal_onnxruntime(
    mlserver: MLServerHandle,
    batch: np.ndarray,
    reference: np.ndarray,
    protocol: str | None,
    resolved: str,
) -> None:
    """MLServer lists no binary extension, so plain ``v2`` falls back to JSON tensors."""
    options = {"protocol": protocol} if protocol else {}
    async with opened(mlserver.model_url, **options) as backend:
        assert backend.protocol == resolved
        assert backend.info.input_shape == SHAPE and backend.info.max_batch is None
        scores = await backend.infer(batch)
    np.testing.assert_array_equal(scores, reference)


async def test_mlserver_unknown_model_is_404(mlserver: MLServerHandle) -> None:
    """A model name the server does not serve."""
    url = mlserver.model_url.rsplit("/", 1)[0] + "/missing"
    assert "404" in await failure(url)


# ----------------------------------------------------------------------------- rows and custom


@pytest.mark.parametrize("route", ["/rows", "/torchserve"])
async def test_rows_scores_equal_onnxruntime(
    apps: AppServer, batch: np.ndarray, reference: np.ndarray, route: str
) -> None:
    """TF Serving ``predictions`` and TorchServe bare lists both decode to the local scores."""
    async with opened(apps.url(route)) as backend:
        assert backend.protocol == "rows"
        scores = await backend.infer(batch)
    np.testing.assert_allclose(scores, reference, rtol=0, atol=0)


async def test_max_batch_option_splits_requests(apps: AppServer, batch: np.ndarray) -> None:
    """``max_batch=3`` sends ten inputs as 3 + 3 + 3 + 1."""
    before = len(apps.batch_sizes("/rows"))
    async with opened(apps.url("/rows"), max_batch="3") as backend:
        await backend.infer(batch)
    assert apps.batch_sizes("/rows")[before:] == [3, 3, 3, 1]


async def test_gzip_requests(apps: AppServer, batch: np.ndarray, reference: np.ndarray) -> None:
    """``gzip=true`` compresses request bodies; the server still reads the same batch."""
    async with opened(apps.url("/rows"), gzip="true") as backend:
        scores = await backend.infer(batch)
    np.testing.assert_array_equal(scores, reference)
    assert apps.received[-1].content_encoding == "gzip"


@pytest.mark.parametrize("flat", [False, True])
async def test_custom_template_scores_equal_onnxruntime(
    apps: AppServer, batch: np.ndarray, reference: np.ndarray, tmp_path: Path, flat: bool
) -> None:
    """A template fills in the batch and its size and finds the scores by path."""
    template = {
        "request": {
            "model": "tiny",
            "flat": flat,
            "payload": {"pixels": "{{batch}}", "n": "{{batch_size}}"},
        },
        "scores": "result.scores",
        "flat": flat,
    }
    spec = apps.url("/custom")
    async with opened(spec, template=write_template(tmp_path, template)) as backend:
        assert backend.protocol == "custom"
        scores = await backend.infer(batch)
    np.testing.assert_array_equal(scores, reference)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"request": {"x": "{{batch}}"}}, "needs the keys"),
        ({"request": {"x": 1}, "scores": "a"}, "no {{batch}} placeholder"),
        ({"request": {"x": "{{batch}}"}, "scores": "a", "colour": 1}, "unknown keys: colour"),
        ("not json", "not valid JSON"),
    ],
)
async def test_bad_templates_are_config_errors(
    apps: AppServer, tmp_path: Path, document: Any, expected: str
) -> None:
    """Template mistakes are reported at connect time, naming the file and the problem."""
    path = tmp_path / "template.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ConfigError, match=r"template=.*" + expected.replace("{", r"\{")):
        async with opened(apps.url("/custom"), template=str(path)):
            pass


async def test_custom_scores_path_missing(
    apps: AppServer, batch: np.ndarray, tmp_path: Path
) -> None:
    """A path that the reply does not have names the part that is missing."""
    template = {
        "request": {"model": "m", "payload": {"pixels": "{{batch}}", "n": "{{batch_size}}"}},
        "scores": "result.logits",
    }
    message = await failure(
        apps.url("/custom"), batch[:2], template=write_template(tmp_path, template)
    )
    assert "nothing at result.logits" in message


async def test_rows_need_input_shape(apps: AppServer) -> None:
    """Without metadata the shape must come from --input-shape."""
    settings = BackendSettings(options={"protocol": "rows"})
    with pytest.raises(ConfigError, match="--input-shape"):
        await open_backend(apps.url("/rows"), settings)


# ----------------------------------------------------------------------------- batch limits


async def test_413_halves_batch_and_remembers(
    apps: AppServer, batch: np.ndarray, reference: np.ndarray
) -> None:
    """413 for batches over 3: 10 → 5 → 2 fits; later calls start at 2."""
    route = "/limited"
    before = len(apps.batch_sizes(route))
    async with opened(apps.url(route) + "?limit=3") as backend:
        scores = await backend.infer(batch)
        assert backend.info.max_batch == 2
        again = await backend.infer(batch[:4])
    np.testing.assert_array_equal(scores, reference)
    np.testing.assert_array_equal(again, reference[:4])
    assert apps.batch_sizes(route)[before:] == [10, 5, 2, 2, 2, 2, 2, 2, 2]


async def test_413_for_a_single_input(apps: AppServer, batch: np.ndarray) -> None:
    """When even one input is too large there is nothing left to halve."""
    message = await failure(apps.url("/limited") + "?limit=0", batch[:4])
    assert "even a single input" in message


async def test_connection_pool_follows_the_inflight_window(apps: AppServer) -> None:
    """One session per backend; max_inflight requests at once, a number the scheduler's window
    moves (the pool opens the connections they need: tests/adapters/test_inflight_network.py)."""
    async with opened(apps.url("/rows"), max_inflight=3) as backend:
        assert backend.transport.max_inflight == 3
        backend.follow_inflight(5)
        assert backend.transport.max_inflight == 5
        connector = backend.transport.session.connector
        assert connector is not None and connector.limit == 0  # the gate above bounds it


# ----------------------------------------------------------------------------- error replies


async def test_auth_header_from_env_and_file(
    apps: AppServer,
    batch: np.ndarray,
    reference: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Header values come from the environment or a file."""
    monkeypatch.setenv("REX_TEST_TOKEN", f"Bearer {TOKEN}")
    async with opened(apps.url("/auth"), **{"header.Authorization": "env:REX_TEST_TOKEN"}) as b:
        np.testing.assert_array_equal(await b.infer(batch[:2]), reference[:2])
    (tmp_path / "token").write_text(f"Bearer {TOKEN}\n")
    source = f"file:{tmp_path / 'token'}"
    async with opened(apps.url("/auth"), **{"header.Authorization": source}) as b:
        np.testing.assert_array_equal(await b.infer(batch[:2]), reference[:2])


async def test_401_names_the_header_not_its_value(
    apps: AppServer, batch: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected token: the message names the header it came in, never the value."""
    monkeypatch.setenv("REX_TEST_TOKEN", "Bearer wrong-value-123")
    message = await failure(
        apps.url("/auth"), batch[:2], **{"header.Authorization": "env:REX_TEST_TOKEN"}
    )
    assert "401" in message and "Authorization" in message
    assert "wrong-value-123" not in message
    assert "header.Authorization=env:" in await failure(apps.url("/auth"), batch[:2])


async def test_auth_header_source_missing(apps: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset variable is a configuration error naming the header and the variable."""
    monkeypatch.delenv("REX_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="header X-Api-Key: environment variable REX_TEST_UNSET"):
        async with opened(apps.url("/rows"), **{"header.X-Api-Key": "env:REX_TEST_UNSET"}):
            pass


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("/forbidden", "403 (forbidden)"),
        ("/error500", "500 (server error): model crashed: CUDA out of memory"),
        ("/bad-request", "400 (request rejected): input rejected expected uint8 pixels"),
        ("/malformed", "not valid JSON (Expecting"),
        ("/not-utf8", "not valid JSON (not UTF-8 text)"),
        ("/wrong-shape", "scores of shape (1, 10) for a batch of 2"),
        ("/nan", "NaN or infinite scores for 1 of 2 inputs"),
        ("/nowhere", "404"),
    ],
)
async def test_error_replies_are_one_line(
    apps: AppServer, batch: np.ndarray, route: str, expected: str
) -> None:
    """Each misbehaviour gives a single actionable line quoting what the server said."""
    message = await failure(apps.url(route), batch[:2])
    assert expected in message
    assert apps.base_url in message


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("no-inputs", "metadata lacks 'inputs'/'outputs'"),
        ("no-outputs", "reply has no output 'logits' (it has: none)"),
        ("other-output", "reply has no output 'logits' (it has: probs)"),
        ("short-binary", "output 'logits' binary data is truncated"),
        ("bad-size", "output 'logits' holds 19 values but declares shape [2, 10]"),
    ],
)
async def test_malformed_v2_replies_are_one_line(
    apps: AppServer, batch: np.ndarray, model: str, expected: str
) -> None:
    """v2 metadata or replies that break the protocol's promises."""
    message = await failure(apps.url(f"/v2/models/{model}"), batch[:2], protocol="v2-json")
    assert expected in message


async def test_slow_reply_times_out(apps: AppServer, batch: np.ndarray) -> None:
    """A server that never answers trips the per-call deadline."""
    with pytest.raises(BackendTimeout, match=r"did not answer within 0\.3 s"):
        async with opened(apps.url("/slow"), timeout_s=0.3) as backend:
            await backend.infer(batch[:1])


async def test_connection_refused_and_dns_failure(batch: np.ndarray) -> None:
    """Nothing listening, and a host name that does not resolve."""
    with anyio.fail_after(30):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # the port is now closed: connecting is refused
        message = await failure(f"http://127.0.0.1:{port}/rows", batch[:1])
        assert f"cannot connect to 127.0.0.1:{port}" in message
        message = await failure("http://rex-stream-test.invalid/v2/models/m")
        assert "DNS failure" in message and "rex-stream-test.invalid" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"protocol": "grpc"}, "choose one of v2, v2-json"),
        ({"protocol": "v2"}, "needs a model URL such as"),
        ({"colour": "red"}, "unknown HTTP backend option(s) colour"),
        ({"max_batch": "0"}, "max_batch='0': expected a positive integer"),
        ({"gzip": "maybe"}, "gzip='maybe' must be true or false"),
        ({"protocol": "custom"}, "needs template=PATH"),
    ],
)
async def test_bad_options_are_config_errors(
    apps: AppServer, options: dict[str, str], expected: str
) -> None:
    """Option mistakes are caught before any request."""
    with pytest.raises(ConfigError) as caught:
        async with opened(apps.url("/rows"), **options):
            pass
    assert expected in str(caught.value)


# ----------------------------------------------------------------------------- TLS


async def test_tls_verification_is_on_by_default(
    tls_apps: AppServer, batch: np.ndarray, tls_files: tuple[Path, Path], reference: np.ndarray
) -> None:
    """A self-signed server fails verification; its CA bundle makes it work."""
    message = await failure(tls_apps.url("/rows"), batch[:2])
    assert "TLS failure" in message and "ca_bundle=PATH" in message
    async with opened(tls_apps.url("/rows"), ca_bundle=str(tls_files[0])) as backend:
        np.testing.assert_array_equal(await backend.infer(batch[:2]), reference[:2])


async def test_insecure_skips_verification_with_a_warning(
    tls_apps: AppServer,
    batch: np.ndarray,
    reference: np.ndarray,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``insecure=true`` talks to the self-signed server and says so in the log."""
    with caplog.at_level(logging.WARNING, logger="rex_stream.adapters.http.backend"):
        async with opened(tls_apps.url("/rows"), insecure="true") as backend:
            np.testing.assert_array_equal(await backend.infer(batch[:2]), reference[:2])
    assert "TLS certificate verification is OFF" in caplog.text


@pytest.fixture(scope="module")
def mtls_apps(session: ort.InferenceSession, tls_files: tuple[Path, Path]) -> Iterator[AppServer]:
    """The test apps behind HTTPS that require a client certificate (the same self-signed one)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, tls_files))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(tls_files[0]))
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0], tls=context) as server:
        yield server


async def test_deprecated_ssl_ca_still_works_and_names_ca_bundle(
    tls_apps: AppServer, batch: np.ndarray, tls_files: tuple[Path, Path], reference: np.ndarray
) -> None:
    """``ssl_ca`` (the Triton backend's old spelling) is ``ca_bundle``, with a warning."""
    with pytest.warns(DeprecationWarning, match=r"ssl_ca is deprecated; use ca_bundle="):
        async with opened(tls_apps.url("/rows"), ssl_ca=str(tls_files[0])) as backend:
            np.testing.assert_array_equal(await backend.infer(batch[:2]), reference[:2])
    message = await failure(tls_apps.url("/rows"), ssl_ca="a", ca_bundle="b")
    assert "give ca_bundle= only" in message


async def test_client_certificate_new_and_deprecated_names(
    mtls_apps: AppServer, batch: np.ndarray, tls_files: tuple[Path, Path], reference: np.ndarray
) -> None:
    """``client_cert``/``client_key`` present a client certificate; ``ssl_cert``/``ssl_key``
    (deprecated) do the same with a warning naming the new options; without one the server
    refuses the connection."""
    cert, key = map(str, tls_files)
    with pytest.raises((BackendError, ConfigError)):
        async with opened(mtls_apps.url("/rows"), ca_bundle=cert) as backend:
            await backend.infer(batch[:2])
    async with opened(
        mtls_apps.url("/rows"), ca_bundle=cert, client_cert=cert, client_key=key
    ) as backend:
        np.testing.assert_array_equal(await backend.infer(batch[:2]), reference[:2])
    with pytest.warns(DeprecationWarning) as warned:
        async with opened(mtls_apps.url("/rows"), ca_bundle=cert, ssl_cert=cert, ssl_key=key) as b:
            np.testing.assert_array_equal(await b.infer(batch[:2]), reference[:2])
    texts = " ".join(str(w.message) for w in warned)
    assert "use client_cert=" in texts and "use client_key=" in texts
    message = await failure(mtls_apps.url("/rows"), client_cert="/no/such/cert.pem")
    assert "client_cert=/no/such/cert.pem: cannot read it" in message


async def test_token_env_works_over_http_too(
    apps: AppServer,
    batch: np.ndarray,
    reference: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``token_env``/``token_file`` (as for Triton) send ``Authorization: Bearer <token>``."""
    monkeypatch.setenv("REX_TEST_BARE_TOKEN", TOKEN)
    async with opened(apps.url("/auth"), token_env="REX_TEST_BARE_TOKEN") as backend:
        np.testing.assert_array_equal(await backend.infer(batch[:2]), reference[:2])
    (tmp_path / "bare-token").write_text(f"{TOKEN}\n")
    async with opened(apps.url("/auth"), token_file=str(tmp_path / "bare-token")) as backend:
        np.testing.assert_array_equal(await backend.infer(batch[:2]), reference[:2])
    monkeypatch.setenv("REX_TEST_BARE_TOKEN", "wrong-value-456")
    message = await failure(apps.url("/auth"), batch[:2], token_env="REX_TEST_BARE_TOKEN")
    assert "401" in message and "authorization" in message and "wrong-value-456" not in message


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """One seeded input in model space."""
    return np.random.default_rng(7).random(SHAPE, dtype=np.float32)


async def _map_through(spec_or_backend: Any, image: np.ndarray) -> np.ndarray:
    """The responsibility map of a small seeded explanation (two iterations)."""
    config = ExplainConfig().with_overrides(iters=2, seed=11)
    result = await explain(image, spec_or_backend, config)
    return np.asarray(result.responsibility)


@pytest.mark.parametrize("server", ["triton-json", "triton-binary", "mlserver", "rows"])
async def test_explanations_through_http_equal_local_onnx(
    request: pytest.FixtureRequest, tiny_onnx_model: Path, image: np.ndarray, server: str
) -> None:
    """The same seed gives the same map through HTTP as through the local ONNX file."""
    if server.startswith("triton"):
        url = triton_url(request.getfixturevalue("triton_server"))
        options = {"protocol": "v2-json" if server == "triton-json" else "v2-binary"}
    elif server == "mlserver":
        url, options = request.getfixturevalue("mlserver").model_url, {}
    else:
        url, options = request.getfixturevalue("apps").url("/rows"), {}
    local = await _map_through(str(tiny_onnx_model), image)
    assert local.any()
    async with opened(url, max_inflight=4, **options) as backend:
        remote = await _map_through(backend, image)
    np.testing.assert_array_equal(remote, local)


async def test_server_dying_mid_run_leaves_the_store_resumable(
    apps: AppServer, image: np.ndarray, tmp_path: Path
) -> None:
    """A server that starts failing mid-run: a one-line error, and resuming the store against
    a healthy server ends with the map of an uninterrupted run."""
    config = ExplainConfig().with_overrides(
        iters=4, seed=11, max_concurrent_searches=1, retry_s=0.5
    )
    async with opened(apps.url("/rows"), max_batch="1") as backend:
        full = await explain(image, backend, config, store=tmp_path / "full.zarr")
    # One mutant per request, iterations one after another: failing after half the requests
    # leaves some iterations committed and some not.
    flaky = apps.url("/flaky") + f"?after={full.stats.calls // 2}&key={tmp_path.name}"
    store = tmp_path / "interrupted.zarr"
    with pytest.raises(BackendError) as caught:
        async with opened(flaky, max_batch="1") as backend:
            await explain(image, backend, config, store=store)
    message = str(caught.value)
    assert "503" in message and "server is shutting down" in message and "\n" not in message
    healed = apps.url("/flaky") + f"?after={10**9}&key={tmp_path.name}-back"  # same model name
    async with opened(healed, max_batch="1") as backend:
        resumed = await explain(image, backend, config, store=store, resume=True)
    assert 0 < resumed.stats.resumed_iterations < 4
    np.testing.assert_array_equal(resumed.responsibility, full.responsibility)


def test_cli_explains_through_http_and_reports_errors_in_one_line(
    apps: AppServer,
    tiny_onnx_model: Path,
    tiny_image: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``rex-stream IMAGE --backend http://… --backend-option …`` matches the local model."""
    common = [str(tiny_image), "--iters", "2", "--seed", "5", "--json", "-q", "-n"]
    assert main([*common, "--model", str(tiny_onnx_model)]) == 0
    local = json.loads(capsys.readouterr().out)
    remote_flags = ["--backend", apps.url("/rows"), "--backend-option", "protocol=rows"]
    assert main([*common, *remote_flags, "--input-shape", "3,32,32"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["target"] == local["target"]
    assert remote["stats"]["queries"] == local["stats"]["queries"]
    broken = ["--backend", apps.url("/error500"), "--input-shape", "3,32,32", "--retry-s", "0"]
    code = main([*common, *broken])
    error = capsys.readouterr().err.strip()
    assert code == BackendError.exit_code
    assert error.startswith("rex-stream: error:") and "model crashed" in error
    assert "\n" not in error


def test_explain_sync_with_a_v2_url_spec(
    triton_server: TritonProcess, tiny_onnx_model: Path, image: np.ndarray
) -> None:
    """The plain URL is a complete spec for v2: metadata supplies shape, batch limit, protocol."""
    local = explain_sync(image, str(tiny_onnx_model), iters=2, seed=3)
    remote = explain_sync(image, triton_url(triton_server), iters=2, seed=3)
    assert remote.target.classification == local.target.classification
    np.testing.assert_array_equal(remote.responsibility, local.responsibility)
