"""What the HTTP backend refuses from a server, against real aiohttp servers on 127.0.0.1:
endless replies (the reply cap) and redirects that would carry secrets to another origin or
downgrade https to http."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from yarl import URL

from rex_stream.adapters.http.transport import REPLY_FLOOR_BYTES, reply_limit
from rex_stream.engine.backend import Backend, BackendSettings, open_backend
from rex_stream.errors import BackendError
from tests.servers.http_apps import AppServer, serving_http_apps

pytestmark = pytest.mark.anyio

SHAPE = (3, 32, 32)
SECRET = "k3y-value-never-forwarded"


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def session(tiny_onnx_model: Path) -> ort.InferenceSession:
    """The tiny model, scoring for the servers and as the reference."""
    return ort.InferenceSession(str(tiny_onnx_model), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def apps(session: ort.InferenceSession) -> Iterator[AppServer]:
    """The test apps on one port (the origin the backend is configured with)."""
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0]) as server:
        yield server


@pytest.fixture(scope="module")
def elsewhere(session: ort.InferenceSession) -> Iterator[AppServer]:
    """The same apps on another port: another origin."""
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0]) as server:
        yield server


@pytest.fixture(scope="module")
def tls_apps(
    session: ort.InferenceSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppServer, Path]]:
    """The apps behind HTTPS with a self-signed certificate, and that certificate."""
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
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0], tls=context) as server:
        yield server, cert


@pytest.fixture(scope="module")
def batch(session: ort.InferenceSession) -> tuple[np.ndarray, np.ndarray]:
    """Three seeded inputs and their local scores."""
    inputs = np.random.default_rng(3).random((3, *SHAPE), dtype=np.float32)
    return inputs, session.run(None, {"input": inputs})[0]


@asynccontextmanager
async def opened(spec: str, **options: str) -> AsyncIterator[Backend]:
    """A rows backend that sends the secret header ``X-Api-Key``."""
    options = {"header.X-Api-Key": SECRET, **options}
    settings = BackendSettings(timeout_s=20, max_inflight=2, input_shape=SHAPE, options=options)
    backend = await open_backend(spec, settings)
    try:
        yield backend
    finally:
        await backend.aclose()


def redirect_to(server: AppServer, target: str, status: int = 307) -> str:
    """A URL on ``server`` that redirects to ``target``."""
    return str(URL(server.url("/redirect")).with_query(to=target, status=str(status)))


# ----------------------------------------------------------------------------- reply cap


def test_reply_limit_follows_the_expected_scores() -> None:
    assert reply_limit(1, 10) == REPLY_FLOOR_BYTES  # small replies: the floor
    assert reply_limit(256, 1000) == 256 * 1000 * 128 > REPLY_FLOOR_BYTES
    assert reply_limit(4, None) > reply_limit(4, 1000)  # unknown classes: roomier, still bounded


async def test_an_endless_reply_fails_in_one_line(
    apps: AppServer, batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """A chunked reply without end is cut at the cap, not buffered until memory runs out."""
    started = time.perf_counter()
    with pytest.raises(BackendError) as caught:
        async with opened(apps.url("/endless")) as backend:
            await backend.infer(batch[0])
    message = str(caught.value)
    limit = reply_limit(len(batch[0]), None)  # the rows protocol knows no class count yet
    assert f"/endless sent a reply over {limit / 2**20:.0f} MiB" in message
    assert "\n" not in message and time.perf_counter() - started < 20
    # The client stopped reading at the cap: the server wrote little more than that.
    assert limit < apps.streamed < 2 * limit


# ----------------------------------------------------------------------------- redirects


async def test_same_origin_redirect_keeps_the_headers(
    apps: AppServer, batch: tuple[np.ndarray, np.ndarray]
) -> None:
    inputs, expected = batch
    async with opened(redirect_to(apps, "/rows")) as backend:
        np.testing.assert_array_equal(await backend.infer(inputs), expected)
    assert "x-api-key" in apps.received[-1].header_names


@pytest.mark.parametrize("status", [307, 308, 302])
async def test_cross_origin_redirect_never_carries_the_secret(
    apps: AppServer, elsewhere: AppServer, batch: tuple[np.ndarray, np.ndarray], status: int
) -> None:
    """A redirect to another port is followed, but without the configured headers."""
    inputs, expected = batch
    before = len(elsewhere.received)
    async with opened(redirect_to(apps, elsewhere.url("/rows"), status)) as backend:
        np.testing.assert_array_equal(await backend.infer(inputs), expected)
    assert "x-api-key" in apps.redirected[-1]  # the configured origin got it
    arrived = elsewhere.received[before:]
    assert arrived and all("x-api-key" not in r.header_names for r in arrived)
    assert not any(r.had_authorization for r in arrived)


async def test_https_to_http_redirect_is_refused_unless_allowed(
    tls_apps: tuple[AppServer, Path], elsewhere: AppServer, batch: tuple[np.ndarray, np.ndarray]
) -> None:
    server, cert = tls_apps
    inputs, expected = batch
    spec = redirect_to(server, elsewhere.url("/rows"))
    before = len(elsewhere.received)
    with pytest.raises(BackendError) as caught:
        async with opened(spec, ca_bundle=str(cert)) as backend:
            await backend.infer(inputs)
    message = str(caught.value)
    assert "refusing the downgrade" in message and "allow_insecure_redirect=true" in message
    assert len(elsewhere.received) == before  # nothing was sent over plain http
    allowed = {"ca_bundle": str(cert), "allow_insecure_redirect": "true"}
    async with opened(spec, **allowed) as backend:
        np.testing.assert_array_equal(await backend.infer(inputs), expected)
    arrived = elsewhere.received[before:]
    assert arrived and all("x-api-key" not in r.header_names for r in arrived)


async def test_redirect_loops_end(apps: AppServer, batch: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(BackendError, match="more than 5 redirects"):
        async with opened(apps.url("/redirect")) as backend:
            await backend.infer(batch[0])
