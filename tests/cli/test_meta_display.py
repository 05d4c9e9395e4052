"""``rex-stream evaluate --meta``'s progress display, on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _run_on_terminal(command: list[str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal; returns (exit code, stdout, what the terminal got)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm", "REX_STREAM_TEST_DELAY_S": "0.01"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=follower, text=True
    )
    os.close(follower)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen.extend(chunk)
    stdout, _ = process.communicate(timeout=300)
    os.close(leader)
    return process.returncode, stdout, seen.decode(errors="ignore")


@pytest.fixture()
def meta_command(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(4)
    folder = tmp_path / "inputs"
    folder.mkdir()
    for n in range(2):
        pixels = np.round(rng.uniform(0.0, 0.2, (24, 24)) * 255).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"p{n}.png")
    np.save(tmp_path / "map.npy", rng.uniform(0, 1, (24, 24)))
    return [
        sys.executable, "-m", "rex_stream.cli", "evaluate", str(folder),
        "--backend", "python:tests.evaluation.slow_patch:score",
        "--attribution", str(tmp_path / "map.npy"), "--metrics", "selectivity:patch_size=4",
        "--meta", "--meta-iterations", "2", "--meta-perturbations", "3",
    ]  # fmt: skip


def test_meta_progress_shows_units_queries_rate_and_eta(meta_command: list[str]) -> None:
    code, stdout, terminal = _run_on_terminal(meta_command)
    assert code == 0, terminal
    assert "IAC_NR" in stdout and "IAC_NR" not in terminal  # results on stdout only
    planned = 2 * (1 + 2 * 2 * 3)
    assert "units (copies)" in terminal and "ETA" in terminal
    assert f"{planned}/{planned}" in terminal
    queries = [int(q) for q in re.findall(r"(\d+) queries, \d+ mutants/s", terminal)]
    assert queries and queries[-1] > 0 and queries == sorted(queries)


@pytest.mark.parametrize("flag", ["--json", "-q"])
def test_meta_progress_is_off_with_json_and_quiet(meta_command: list[str], flag: str) -> None:
    code, stdout, terminal = _run_on_terminal([*meta_command, flag])
    assert code == 0, terminal
    assert "IAC_NR" in stdout and "units (copies)" not in terminal and "queries," not in terminal


def test_model_test_progress_counts_noisy_models(tiny_cnn: Path, tiny_image: Path) -> None:
    command = [
        sys.executable, "-m", "rex_stream.cli", "evaluate", str(tiny_image),
        "--model", str(tiny_cnn), "--metrics", "selectivity:patch_size=8", "--meta", "model",
        "--explainer", "python:tests.evaluation.slow_explainer:explain",
        "--meta-iterations", "1", "--meta-perturbations", "2",
    ]  # fmt: skip
    code, stdout, terminal = _run_on_terminal(command)
    assert code == 0, terminal
    assert "IAC_NR" in stdout and "units (noisy models)" in terminal
    assert "5/5" in terminal  # x, and one unit under each of 2 × 2 noisy models
    assert re.search(r"[1-9]\d* queries, \d+ mutants/s", terminal)
