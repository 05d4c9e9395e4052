"""Item 4 of issue 27: iterations are searched a few at a time and committed as they end, so
the share of iterations a killed run keeps follows the share of the work it had done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import ExplainConfig, explain, explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.progress import Progress
from rex_stream.runs.rex_search import iterations_in_flight
from tests.killing import kill_mid_run

ITERS = 20
SETTINGS = {"iters": ITERS, "seed": 5, "min_box_size": 2, "max_batch": 32, "max_inflight": 2}


def _committed_at_half(model: Path, image: Path, **overrides: object) -> tuple[float, np.ndarray]:
    """Run with a backend that notes, at every call, how many iterations were done; return the
    share done once half of all the run's mutants had been scored, and the map."""
    session = ort.InferenceSession(str(model))
    done = [0]
    trace: list[tuple[int, int]] = []  # (rows scored before this call, iterations done)
    scored = [0]

    def score(batch: np.ndarray) -> np.ndarray:
        trace.append((scored[0], done[0]))
        scored[0] += len(batch)
        return session.run(None, {"input": batch})[0]

    def progress(event: Progress) -> None:
        if event.phase == "iteration":
            done[0] = max(done[0], event.iterations_done)

    backend = PythonBackend(score, (3, 32, 32))
    config = ExplainConfig().with_overrides(extract=False, **{**SETTINGS, **overrides})
    result = anyio.run(partial(explain, image, backend, config, on_progress=progress))
    half = scored[0] / 2
    at_half = max(d for rows, d in trace if rows <= half)
    return at_half / ITERS, result.responsibility


def test_half_the_work_commits_at_least_forty_percent(tiny_cnn: Path, tiny_image: Path) -> None:
    # the count of iterations done is read at each call from progress events, which may lag
    # the commit of the iteration that just ended by one iteration (5 % of 20): the mean of a
    # few runs is held to the 40 % target less that one step of lag
    shares, maps = zip(*(_committed_at_half(tiny_cnn, tiny_image) for _ in range(5)), strict=True)
    share, windowed = float(np.mean(shares)), maps[0]
    old_share, everything_at_once = _committed_at_half(
        tiny_cnn, tiny_image, max_concurrent_searches=64
    )
    assert share >= 0.4 - 1 / ITERS, f"only {shares} of the iterations were done at half the work"
    assert all(np.array_equal(m, windowed) for m in maps)
    assert old_share < share  # all iterations at once: almost nothing done by then
    assert np.array_equal(windowed, everything_at_once)


@pytest.mark.parametrize(
    ("batch", "inflight", "searches"), [(1, 1, None), (7, 3, 2), (64, 8, None)]
)
def test_the_map_does_not_depend_on_the_window(
    tiny_cnn: Path, tiny_image: Path, batch: int, inflight: int, searches: int | None
) -> None:
    settings = {"iters": 8, "seed": 3, "min_box_size": 4, "extract": False}
    reference = explain_sync(
        tiny_image, str(tiny_cnn), max_concurrent_searches=64, **settings
    ).responsibility
    candidate = explain_sync(
        tiny_image,
        str(tiny_cnn),
        max_batch=batch,
        max_inflight=inflight,
        max_concurrent_searches=searches,
        **settings,
    ).responsibility
    assert np.array_equal(candidate, reference)


def test_the_adaptive_distribution_is_the_same_in_a_window(
    tiny_cnn: Path, tiny_image: Path
) -> None:
    settings = {"iters": 10, "seed": 3, "min_box_size": 4, "extract": False}
    settings["distribution"] = "adaptive"
    narrow = explain_sync(tiny_image, str(tiny_cnn), max_batch=14, max_inflight=1, **settings)
    wide = explain_sync(tiny_image, str(tiny_cnn), max_concurrent_searches=64, **settings)
    assert np.array_equal(narrow.responsibility, wide.responsibility)


def test_window_fills_the_calls() -> None:
    assert iterations_in_flight(14, 1) == 2
    assert iterations_in_flight(64, 1) == 6
    assert iterations_in_flight(64, 3) == 3
    assert iterations_in_flight(1, None) == 2


def test_kill_at_half_the_mutants_resumes_most_iterations(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """Through the real command: count the mutants of a whole run, kill -9 a second run once it
    has sent half as many, resume it, and find at least 40 % of the iterations kept."""
    counter = tmp_path / "rows.txt"
    env = {**os.environ, "SLOW_ROWS_FILE": str(counter), "SLOW_MODEL": str(tiny_cnn)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "rex_stream.cli",
        str(tiny_image),
        "--backend",
        "python:tests.runs.counted_model:score",
        "--input-shape",
        "3,32,32",
        "--iters",
        str(ITERS),
        "--seed",
        "5",
        "--min-box-size",
        "2",
        "--batch-size",
        "32",
        "--max-inflight",
        "2",
        "-n",
        "-q",
        "--json",
    ]
    whole = subprocess.run(
        [*command, "--store", str(tmp_path / "whole.zarr")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    total = int(counter.read_text())
    counter.unlink()
    env["SLOW_DELAY_S"] = "0.02"
    store = tmp_path / "killed.zarr"

    def rows_sent() -> int:
        try:
            return int(counter.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    kill_mid_run(
        [*command, "--store", str(store)],
        lambda: 1 if rows_sent() >= total // 2 else 0,
        1,
        "mutant",
        120,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env.pop("SLOW_DELAY_S")
    resumed = subprocess.run(
        [*command, "--store", str(store), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    kept = summary["stats"]["resumed_iterations"]
    assert kept >= 0.4 * ITERS, f"only {kept} of {ITERS} iterations survived half the work"
    assert json.loads(whole.stdout)["stats"]["resumed_iterations"] == 0
    assert np.array_equal(_stored_map(store), _stored_map(tmp_path / "whole.zarr"))


def _stored_map(store: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(store), mode="r")["tiny/responsibility"][...])
