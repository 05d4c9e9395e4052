"""Riding through a Triton restart: a real Triton server (PyTriton) stopped mid-run and started
again within the retry budget; the run ends exactly as an uninterrupted one."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import numpy as np
import pytest
from aiohttp import web

import rex_stream
from tests.plugins.triton_fixtures import DEMO_IMAGE as IMAGE
from tests.servers.triton_server import TritonProcess

PROTOCOLS = ["grpc", "http"]


def spec_for(server: TritonProcess, protocol: str) -> str:
    """The backend spec of the server's model over one protocol."""
    if protocol == "grpc":
        return f"triton://{server.grpc_url}/{server.model_name}"
    return f"triton+http://{server.http_url}/{server.model_name}"


@pytest.mark.triton
@pytest.mark.parametrize("protocol", [*PROTOCOLS, "grpc-shm"])
def test_triton_restarted_mid_run_is_ridden_through(
    triton_process_factory: Callable[..., TritonProcess], triton_token_env: str, protocol: str
) -> None:
    """Also with shared memory: the restarted server has forgotten the regions, which are
    registered again."""
    server = triton_process_factory(max_batch_size=4)
    server.start()
    spec = spec_for(server, protocol.removesuffix("-shm"))
    if protocol.endswith("-shm"):
        spec += f"?shared_memory=system&token_env={triton_token_env}&auth=triton"
    config = rex_stream.ExplainConfig().with_overrides(
        iters=5, seed=11, min_box_size=4, max_inflight=2, retry_s=60
    )
    uninterrupted = rex_stream.explain_sync(IMAGE, spec, config)
    restarts: list[threading.Thread] = []
    events: list[rex_stream.Progress] = []

    def restart_after_two(progress: rex_stream.Progress) -> None:
        events.append(progress)
        if progress.phase == "iteration" and progress.iterations_done == 2 and not restarts:
            server.stop()  # synchronous: the next calls find no server at all
            restarts.append(threading.Thread(target=server.start))
            restarts[0].start()

    async def interrupted() -> rex_stream.Explanation:
        return await rex_stream.explain(IMAGE, spec, config, on_progress=restart_after_two)

    started = time.perf_counter()
    ridden = anyio.run(interrupted)
    wall = time.perf_counter() - started
    restarts[0].join(timeout=120)
    assert server.running
    assert events[-1].retries > 0
    assert ridden.target == uninterrupted.target
    assert (ridden.responsibility == uninterrupted.responsibility).all()
    assert ridden.sufficiency is not None and uninterrupted.sufficiency is not None
    assert (ridden.sufficiency.mask == uninterrupted.sufficiency.mask).all()
    assert wall < 60


@pytest.mark.triton
def test_grpc_replies_are_capped(
    triton_server: TritonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply larger than the scores could need fails in one line, without a retry (the cap is
    lowered here so that the tiny model's real replies exceed it)."""
    from rex_stream.adapters.triton import client
    from rex_stream.engine.backend import BackendSettings, open_backend
    from rex_stream.errors import BackendError, TransientBackendError

    monkeypatch.setattr(client, "REPLY_FLOOR_BYTES", 100)
    monkeypatch.setattr(client, "REPLY_BYTES_PER_SCORE", 1)  # 4 rows × 10 scores: 40 bytes

    async def infer() -> None:
        backend = await open_backend(spec_for(triton_server, "grpc"), BackendSettings())
        try:
            await backend.infer(np.zeros((4, 3, 32, 32), dtype=np.float32))
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as caught:
        anyio.run(infer)
    assert not isinstance(caught.value, TransientBackendError)
    message = str(caught.value)
    assert "reply is larger than" in message and "\n" not in message


@asynccontextmanager
async def _recording_app(redirect_to: str | None) -> AsyncIterator[tuple[str, list[set[str]]]]:
    """An aiohttp app on 127.0.0.1 that records each request's header names and answers every
    path with a 307 to ``redirect_to`` + path (or a 404 when None)."""
    seen: list[set[str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({name.lower() for name in request.headers})
        if redirect_to is None:
            return web.Response(status=404, text="nothing here")
        return web.Response(status=307, headers={"Location": redirect_to + request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


def test_triton_http_redirects_never_carry_the_token(triton_token_env: str) -> None:
    """A triton+http server redirecting to another origin: followed without a token, refused
    with one (the other origin never sees it)."""
    from rex_stream.engine.backend import BackendSettings, open_backend
    from rex_stream.errors import BackendError

    async def run() -> None:
        async with _recording_app(None) as (elsewhere, seen_elsewhere):
            async with _recording_app(f"http://{elsewhere}") as (front, seen_front):
                spec = f"triton+http://{front}/classifier"
                with pytest.raises(BackendError):  # followed: the other origin answers 404
                    await open_backend(spec, BackendSettings(timeout_s=5))
                assert seen_elsewhere and seen_front
                before = len(seen_elsewhere)
                options = {"token_env": triton_token_env, "auth": "triton"}
                with pytest.raises(BackendError) as caught:
                    await open_backend(spec, BackendSettings(timeout_s=5, options=options))
                message = str(caught.value)
                assert "refusing to send the token there" in message and "\n" not in message
                assert "triton-access-token" in seen_front[-1]
                assert len(seen_elsewhere) == before  # nothing was sent there

    anyio.run(run)


def test_triton_http_header_options_are_secrets_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``header.NAME=env:VAR`` (spelled as for the HTTP backend) is sent to the configured
    origin and, being a secret, never carried along a redirect to another one."""
    from rex_stream.engine.backend import BackendSettings, open_backend
    from rex_stream.errors import BackendError

    monkeypatch.setenv("REX_TEST_API_KEY", "k3y-value")

    async def run() -> None:
        async with _recording_app(None) as (elsewhere, seen_elsewhere):
            async with _recording_app(f"http://{elsewhere}") as (front, seen_front):
                spec = f"triton+http://{front}/classifier"
                options = {"header.X-Api-Key": "env:REX_TEST_API_KEY"}
                with pytest.raises(BackendError) as caught:
                    await open_backend(spec, BackendSettings(timeout_s=5, options=options))
                message = str(caught.value)
                assert "refusing to send the token there" in message
                assert "k3y-value" not in message
                assert "x-api-key" in seen_front[-1]
                assert not seen_elsewhere  # nothing was sent there

    anyio.run(run)
