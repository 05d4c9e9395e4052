"""Network adapters follow the scheduler's in-flight window: more calls behind latency, fewer
when the server refuses calls for load (HTTP 429, Triton's full queue, RESOURCE_EXHAUSTED).

A real aiohttp server on 127.0.0.1 answers after a fixed latency, counts the requests it holds
at once and, when given a limit, answers 429 to any request beyond it; a real Triton server
(PyTriton) shows, through its dynamic batcher, how many requests arrived together.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np
import pytest
from aiohttp import web

from rex_stream.config import SchedulerConfig
from rex_stream.engine.backend import Backend, BackendSettings, open_backend
from rex_stream.engine.inflight import FollowsInflight, InflightWindow
from rex_stream.engine.scheduler import Scheduler
from rex_stream.errors import TransientBackendError
from tests.servers.triton_server import TritonProcess

SHAPE = (4,)


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp and tritonclient run on asyncio only."""
    return "asyncio"


@dataclass
class LatencyServer:
    """A row-JSON server that answers after ``latency_s``; ``limit``: most requests it serves
    at once (429 beyond)."""

    url: str
    latency_s: float
    limit: int | None = None
    active: int = 0
    max_active: int = 0
    served: int = 0
    refused: int = 0


@contextmanager
def serving_latency(latency_s: float, limit: int | None = None) -> Iterator[LatencyServer]:
    """Run a :class:`LatencyServer` on 127.0.0.1 from a thread of its own."""
    loop = asyncio.new_event_loop()
    state = LatencyServer("", latency_s, limit)
    ready = threading.Event()
    holder: dict[str, web.AppRunner] = {}

    async def rows(request: web.Request) -> web.Response:
        document = await request.json()
        if state.limit is not None and state.active >= state.limit:
            state.refused += 1
            return web.json_response({"error": "too many requests"}, status=429)
        state.active += 1
        state.max_active = max(state.max_active, state.active)
        try:
            await asyncio.sleep(state.latency_s)
        finally:
            state.active -= 1
        batch = np.asarray(document["instances"], dtype=np.float64)
        state.served += 1
        total = batch.sum(axis=1)
        return web.json_response({"predictions": np.stack([total, -total], 1).tolist()})

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/rows", rows)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        state.url = f"http://127.0.0.1:{port}/rows"
        holder["runner"] = runner
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    ready.wait(30)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def fills(count: int) -> list[Callable[[np.ndarray], None]]:
    """``count`` rows, row i all i (its score is 4 i)."""

    def row(value: float) -> Callable[[np.ndarray], None]:
        def fill(out: np.ndarray) -> None:
            out[:] = value

        return fill

    return [row(float(i)) for i in range(count)]


async def open_rows(server: LatencyServer, max_inflight: int) -> Backend:
    settings = BackendSettings(
        timeout_s=30, max_inflight=max_inflight, input_shape=SHAPE, options={"protocol": "rows"}
    )
    return await open_backend(server.url, settings)


@pytest.mark.anyio
@pytest.mark.parametrize("adaptive", [True, False])
async def test_http_calls_in_flight_grow_behind_latency_only_when_adaptive(adaptive: bool) -> None:
    """The pool no longer stops the window at the size the adapter opened with."""
    with serving_latency(0.03) as server:
        backend = await open_rows(server, max_inflight=2)
        assert isinstance(backend, FollowsInflight)
        try:
            config = SchedulerConfig(max_batch=4, max_inflight=2, adaptive_inflight=adaptive)
            async with Scheduler(backend, config) as scheduler:
                scores = await scheduler.evaluate(fills(600))
        finally:
            await backend.aclose()
    assert np.array_equal(scores[:, 0], 4.0 * np.arange(600))
    if adaptive:
        assert server.max_active > 2, server.max_active
        assert server.max_active <= scheduler.window.ceiling
    else:
        assert server.max_active == 2
    assert scheduler.stats.refused == 0


@pytest.mark.anyio
@pytest.mark.parametrize("adaptive", [True, False])
async def test_http_429s_lower_the_window_to_what_the_server_takes(adaptive: bool) -> None:
    """A server that takes 3 requests at once: the 429s cap the window at 3 (below the
    configured 8 too), the run ends with every score right and only a few refusals."""
    with serving_latency(0.03, limit=3) as server:
        backend = await open_rows(server, max_inflight=8)
        try:
            config = SchedulerConfig(
                max_batch=4, max_inflight=8, adaptive_inflight=adaptive, retry_s=30
            )
            async with Scheduler(backend, config) as scheduler:
                scores = await scheduler.evaluate(fills(800))
        finally:
            await backend.aclose()
    assert np.array_equal(scores[:, 0], 4.0 * np.arange(800))
    assert server.refused > 0
    assert scheduler.stats.refused == server.refused
    # the cap is what the server takes (3), or one more when the run ended while a probe of
    # the cap (raised by one every 8 x cap calls) had not been refused yet
    assert scheduler.window.server_cap is not None and scheduler.window.server_cap <= 3 + 1
    assert scheduler.window.size <= 3 + 1
    # once capped, refusals are rare: the cap is probed again only now and then
    assert server.refused < server.served / 4, (server.refused, server.served)


def test_window_respects_a_server_cap_and_probes_it_again() -> None:
    window = InflightWindow(8, 64)
    window.overloaded(at_server=5)
    assert window.size == 4 and window.server_cap == 4  # below the configured floor of 8
    for _ in range(20):
        window.observe(0.02, backlog=True)
    assert window.size == 4  # the cap holds while it is fresh
    window.observe(0.2, backlog=True)
    assert window.size == 4  # a slow call does not push it under the cap's floor
    for _ in range(8 * 4 * 4):  # after quiet stretches the cap rises again, one call at a time
        window.observe(0.02, backlog=True)
    assert window.server_cap is None or window.server_cap > 4
    assert window.size > 4


@pytest.mark.anyio
async def test_triton_queue_full_and_resource_exhausted_are_overload() -> None:
    """The one error mapping marks a server's refusal for load as overload, not as gone."""
    pytest.importorskip("tritonclient")
    from tritonclient.utils import InferenceServerException

    from rex_stream.adapters.triton.client import TritonClient
    from rex_stream.adapters.triton.options import TritonOptions
    from rex_stream.adapters.triton.spec import parse_spec

    target, _ = parse_spec("triton://127.0.0.1:1/model")
    settings = BackendSettings(max_inflight=2)
    client = TritonClient(target, TritonOptions.parse(target, {}), settings)
    for status, message in [
        ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size"),
        ("StatusCode.RESOURCE_EXHAUSTED", "too many requests"),
        ("429", "Too Many Requests"),
    ]:
        error = client._server_error("inference", InferenceServerException(message, status))
        assert isinstance(error, TransientBackendError)
        assert error.overloaded and not error.unreachable, (status, message)
    gone = client._server_error(
        "inference", InferenceServerException("Socket closed", "UNAVAILABLE")
    )
    assert isinstance(gone, TransientBackendError) and gone.unreachable and not gone.overloaded
    await client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["triton", "triton+http"])
async def test_triton_backend_lets_as_many_calls_through_as_the_window(
    triton_process_factory: Callable[..., TritonProcess],
    tmp_path: Path,
    protocol: str,
) -> None:
    """Four concurrent calls to a model that takes 300 ms a batch: one at a time while the
    window is 1 (the server executes four batches of one), together once it is 4 (its dynamic
    batcher sees several queued at once)."""
    log = tmp_path / "batches.log"
    server = triton_process_factory(
        max_batch_size=8, slow_model="slow", slow_ms=300, batch_log=log, access_token=None
    )
    server.start()
    port = server.grpc_port if protocol == "triton" else server.http_port
    settings = BackendSettings(timeout_s=60, max_inflight=1)
    backend = await open_backend(f"{protocol}://127.0.0.1:{port}/slow", settings)
    row = np.zeros((1, *backend.info.input_shape), np.float32)

    async def four_at_once() -> list[int]:
        before = len(server.batch_sizes())
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(backend.infer, row)
        return server.batch_sizes()[before:]

    try:
        assert isinstance(backend, FollowsInflight)
        assert await four_at_once() == [1, 1, 1, 1]
        backend.follow_inflight(4)
        together = await four_at_once()
    finally:
        await backend.aclose()
    assert sum(together) == 4 and max(together) > 1, together
