"""Riding through server faults over HTTP: a real aiohttp server on 127.0.0.1 injects 500s,
503s with Retry-After, 429s and TCP resets; the run ends exactly as a clean run does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import ExplainConfig, Progress, explain
from rex_stream.cli.main import main
from rex_stream.engine.backend import Backend, BackendSettings, open_backend
from rex_stream.errors import BackendError, ConfigError
from tests.servers.http_apps import AppServer, serving_http_apps

pytestmark = pytest.mark.anyio

SHAPE = (3, 32, 32)


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def apps(tiny_onnx_model: Path) -> Iterator[AppServer]:
    """The aiohttp test apps, scoring with the tiny model."""
    session = ort.InferenceSession(str(tiny_onnx_model), providers=["CPUExecutionProvider"])
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0]) as server:
        yield server


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """One seeded input in model space."""
    return np.random.default_rng(7).random(SHAPE, dtype=np.float32)


@asynccontextmanager
async def opened(spec: str, **options: str) -> AsyncIterator[Backend]:
    """An HTTP rows backend with two calls in flight."""
    settings = BackendSettings(timeout_s=20, max_inflight=2, input_shape=SHAPE, options=options)
    backend = await open_backend(spec, settings)
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_injected_faults_end_like_a_clean_run(
    apps: AppServer, image: np.ndarray, request: pytest.FixtureRequest
) -> None:
    """500 every tenth call, a 503 with Retry-After, 429s and resets: retried, same result."""
    config = ExplainConfig().with_overrides(iters=3, seed=11, min_box_size=4)
    async with opened(apps.url("/rows"), max_batch="2") as backend:
        clean = await explain(image, backend, config)
    events: list[Progress] = []
    started = time.perf_counter()
    faulty = apps.url("/faulty") + f"?key={request.node.name}"
    async with opened(faulty, max_batch="2") as backend:
        ridden = await explain(image, backend, config, on_progress=events.append)
    wall = time.perf_counter() - started
    assert set(apps.faults) == {"500", "503", "429", "reset"}, apps.faults
    np.testing.assert_array_equal(ridden.responsibility, clean.responsibility)
    assert ridden.target == clean.target
    assert clean.sufficiency is not None and ridden.sufficiency is not None
    np.testing.assert_array_equal(ridden.sufficiency.mask, clean.sufficiency.mask)
    assert events[-1].retries >= sum(apps.faults.values())
    assert events[-1].fault_note.startswith("retries ")
    assert wall >= 1.0  # the 503's Retry-After: 1 was honoured


async def test_client_errors_fail_at_once(apps: AppServer, image: np.ndarray) -> None:
    """A 400 is the request's fault: no retry, however large the budget."""
    config = ExplainConfig().with_overrides(iters=1, seed=1, retry_s=120)
    started = time.perf_counter()
    with pytest.raises(BackendError, match="400"):
        async with opened(apps.url("/bad-request")) as backend:
            await explain(image, backend, config)
    assert time.perf_counter() - started < 5


async def test_a_server_that_stays_broken_fails_after_the_budget(
    apps: AppServer, image: np.ndarray
) -> None:
    config = ExplainConfig().with_overrides(iters=1, seed=1, retry_s=1.0)
    started = time.perf_counter()
    with pytest.raises(BackendError) as caught:
        async with opened(apps.url("/error500")) as backend:
            await explain(image, backend, config)
    elapsed = time.perf_counter() - started
    message = str(caught.value)
    assert "500" in message and "still failing after" in message and "--retry-s" in message
    assert "\n" not in message
    assert 0.2 < elapsed < 5


def test_retry_budget_and_deadline_are_checked(
    tiny_image: Path, tiny_onnx_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout-s 0`` (no deadline) and negative budgets are one-line errors."""
    common = [str(tiny_image), "--model", str(tiny_onnx_model), "-q", "--iters", "1"]
    for flags in (["--timeout-s", "0"], ["--timeout-s", "-3"], ["--retry-s", "-1"]):
        assert main([*common, *flags]) == ConfigError.exit_code
        error = capsys.readouterr().err.strip()
        assert error.startswith("rex-stream: error: " + flags[0]) and "\n" not in error
    assert main(["cem", *common[:3], "--timeout-s", "0"]) == ConfigError.exit_code  # sub-commands
    assert capsys.readouterr().err.startswith("rex-stream: error: --timeout-s 0")
    with pytest.raises(ConfigError, match="timeout_s"):
        BackendSettings(timeout_s=0)
    with pytest.raises(ConfigError, match="retry_s"):
        ExplainConfig().with_overrides(retry_s=-1)
