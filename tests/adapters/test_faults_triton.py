"""Riding through a Triton restart: a real Triton server (PyTriton) stopped mid-run and started
again within the retry budget; the run ends exactly as an uninterrupted one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
import numpy as np
import pytest

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
    from rex_stream.adapters import triton

    from rex_stream.engine.backend import BackendSettings, open_backend
    from rex_stream.errors import BackendError, TransientBackendError

    monkeypatch.setattr(triton, "REPLY_FLOOR_BYTES", 100)
    monkeypatch.setattr(triton, "REPLY_BYTES_PER_SCORE", 1)  # 4 rows × 10 scores: 40 bytes

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
