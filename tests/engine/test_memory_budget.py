"""The batch size is capped by the memory an in-process model takes per row."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.adapters.python import PythonBackend
from rex_stream.config import SchedulerConfig
from rex_stream.engine.memory import fitting_batch, measure_rows, rss_bytes
from rex_stream.engine.scheduler import Scheduler

ROW_MIB = 8


def hungry(batch: np.ndarray) -> np.ndarray:
    """A model whose activations take ROW_MIB MiB per row (touched, so they are resident)."""
    activations = np.ones((len(batch), ROW_MIB * 2**20 // 8))
    return activations[:, :3].copy() + batch.reshape(len(batch), -1)[:, :1]


def test_fitting_batch_counts_calls_buffers_and_rows() -> None:
    mib = 2**20
    assert fitting_batch(445, 15 * mib, mib, 2, 1000 * mib, 400 * mib) == 15  # 0.8 × 600 MiB
    assert fitting_batch(8, 15 * mib, mib, 2, 1000 * mib, 400 * mib) == 8  # already fits
    assert fitting_batch(445, 15 * mib, mib, 2, 100 * mib, 400 * mib) == 1  # never below 1


def test_measured_cost_per_row_is_the_models() -> None:
    backend = PythonBackend(hungry, (4,), max_inflight=1)
    cost = anyio.run(measure_rows, backend, 16)
    assert 0.7 * ROW_MIB * 2**20 <= cost.per_row <= 1.5 * ROW_MIB * 2**20


def test_batch_is_lowered_to_the_budget_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    backend = PythonBackend(hungry, (4,), max_inflight=2)
    budget_gib = (rss_bytes() + 400 * 2**20) / 2**30
    config = SchedulerConfig(max_batch=200, max_inflight=2, memory_gib=budget_gib)

    async def run() -> tuple[int, np.ndarray]:
        async with Scheduler(backend, config) as scheduler:
            rows = [lambda out, v=v: out.fill(v) for v in range(50)]
            scores = await scheduler.evaluate(rows)  # its batches wait for the measurement
            return scheduler.max_batch, scores

    with caplog.at_level(logging.WARNING, logger="rex_stream"):
        batch, scores = anyio.run(run)
    # 2 calls × batch × 8 MiB must fit in 0.8 × ~400 MiB: about 20 rows, surely not 200
    assert 5 <= batch <= 25
    notices = [r.getMessage() for r in caplog.records if "memory budget" in r.getMessage()]
    assert len(notices) == 1 and notices[0].startswith(f"batch size 200 → {batch}:")
    assert np.array_equal(scores[:, 0], np.arange(50) + 1.0)  # results are unchanged


def test_small_batches_and_remote_models_are_not_measured() -> None:
    calls: list[int] = []

    def model(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch[:, :1]

    backend = PythonBackend(model, (4,), max_inflight=2)

    async def run(config: SchedulerConfig) -> int:
        async with Scheduler(backend, config) as scheduler:
            return scheduler.max_batch

    assert anyio.run(run, SchedulerConfig(max_batch=8, max_inflight=2, memory_gib=0.001)) == 8
    assert calls == []  # 16 rows in flight cannot matter: nothing measured


def test_cli_lowers_a_huge_batch_and_says_so_once(tiny_cnn: Path, tiny_image: Path) -> None:
    cli = [sys.executable, "-m", "rex_stream.cli", str(tiny_image), "--model", str(tiny_cnn)]
    done = subprocess.run(
        [*cli, "--iters", "1", "--batch-size", "445", "--memory-gib", "0.001", "-n"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stderr.splitlines() if "memory budget" in line]
    assert len(notices) == 1 and "batch size 445 → 1:" in notices[0]
    bad = subprocess.run(
        [*cli, "--memory-gib", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == "rex-stream: error: --memory-gib 0: must be > 0"


def test_single_rows_go_on_while_the_model_is_measured() -> None:
    """The measuring calls (1 row, then 16) run beside the run's first single-row call (its
    target prediction) instead of two round trips before it; larger batches wait for them."""
    started: list[tuple[float, int, float]] = []  # (time, rows, first value)

    async def remote(batch: np.ndarray) -> np.ndarray:
        started.append((time.perf_counter(), len(batch), float(batch.flat[0])))
        await anyio.sleep(0.2)
        return batch[:, :1]

    backend = PythonBackend(remote, (4,), max_inflight=8)
    config = SchedulerConfig(max_batch=16, max_inflight=8, memory_gib=64.0)

    async def run() -> None:
        async with Scheduler(backend, config) as scheduler:
            opened = time.perf_counter()
            one = await scheduler.evaluate([lambda out: out.fill(7.0)])
            assert one[0, 0] == 7.0
            assert time.perf_counter() - opened < 0.35  # one round trip, not three
            rows = [lambda out, v=v: out.fill(v) for v in range(1, 41)]  # zeros: measuring
            many = await scheduler.evaluate(rows)
            assert many[:, 0].tolist() == list(range(1, 41))

    anyio.run(run)
    measuring = [rows for _, rows, value in started if value == 0.0][:2]
    assert measuring == [1, 16]
    measured_by = max(t for t, rows, value in started if rows == 16 and value == 0.0) + 0.2
    # every batch of the run's 40 rows started after the measurement ended
    assert all(t >= measured_by - 0.01 for t, rows, v in started if rows > 1 and v != 0.0)
