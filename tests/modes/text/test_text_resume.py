"""A text run killed with SIGKILL partway resumes exactly: the rows of a ``.jsonl`` file,
each its own store group, end with the maps an uninterrupted run makes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import zarr

from rex_stream.cli.main import main
from tests.killing import kill_mid_run
from tests.modes.text.lexicon import TEXTS

ROOT = Path(__file__).resolve().parents[3]
SLOW = "python:tests.modes.text.score_module:slow_score"
ITERS = 12


def committed(store: Path) -> int:
    """Iterations committed so far, over every row's group."""
    count = 0
    for meta in store.glob("*/ledger/*/zarr.json"):
        if '"committed": true' in meta.read_text(errors="ignore"):
            count += 1
    return count


def maps(store: Path) -> dict[str, bytes]:
    root = zarr.open_group(str(store), mode="r")
    return {name: group["responsibility"][:].tobytes() for name, group in root.groups()}


def test_a_killed_text_run_resumes_to_the_same_maps(tmp_path: Path, capsys) -> None:
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    args = [str(reviews), "--backend", SLOW, "--mode", "text", "--min-box-size", "4"]
    args += ["--chunk-size", "1", "--iters", str(ITERS), "--seed", "5", "--batch-size", "4"]
    args += ["--concurrent-inputs", "2", "-q"]
    reference = tmp_path / "reference.zarr"
    assert main([*args, "--store", str(reference)]) == 0
    capsys.readouterr()

    store = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "rex_stream.cli", *args, "--store", str(store)]
    kill_mid_run(command, lambda: committed(store), 6, "iteration", 120, cwd=ROOT)
    before = committed(store)
    assert 6 <= before < ITERS * len(TEXTS)

    assert main([*args, "--store", str(store), "--resume", "--json"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert sum(s["stats"]["resumed_iterations"] for s in summaries) >= before
    assert maps(store) == maps(reference)
    assert len(maps(store)) == len(TEXTS)
