"""Cases that ended in a traceback (issue 27, item 19), each now one line or handled, through
the real command: URL credentials with an Authorization header, stdout closed early (``| head``)
or on a full disk (``> /dev/full``) in every sub-command, and a store's records meddled with or
torn by ``kill -9`` on ``--resume``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream.engine.store import ExplanationStore
from tests.cli.test_cli import ROOT, _one_line_error, rex

MODELS = ROOT / "rex_stream" / "data" / "models"
CEM = ("cem", str(MODELS / "spectral-markers-A.npy"), "--model",
       str(MODELS / "spectral-markers.onnx"), "--region-size", "20", "--steps", "5")  # fmt: skip


def test_url_credentials_and_an_authorization_header_are_one_line(tiny_image: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", str(tiny_image), "--backend",
         "http://user:pw@127.0.0.1:9/rows", "--backend-option", "header.Authorization=env:TOK",
         "--input-shape", "3,32,32", "-q"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "TOK": "t"},
    )  # fmt: skip
    _one_line_error(out, "the URL carries credentials (user:password@) and an Authorization")
    assert "pw" not in out.stderr and "ValueError" not in out.stderr


def _commands(tiny_cnn: Path, tiny_image: Path) -> dict[str, list[str]]:
    """One command per sub-command that prints to stdout."""
    return {
        "explain": [str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "-n", "--json"],
        "evaluate": ["evaluate", "--list-metrics"],
        "cem": [*CEM, "--json", "-q"],
    }


@pytest.mark.parametrize("command", ["explain", "evaluate", "cem"])
def test_stdout_closed_early_is_not_an_error(
    command: str, tiny_cnn: Path, tiny_image: Path
) -> None:
    """``rex-stream … --json | head -3``: the reader leaves before the output is written."""
    args = _commands(tiny_cnn, tiny_image)[command]
    process = subprocess.Popen(
        [sys.executable, "-m", "rex_stream.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything is printed
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception" not in stderr


@pytest.mark.parametrize("command", ["explain", "evaluate", "cem"])
def test_stdout_on_a_full_disk_is_one_line(command: str, tiny_cnn: Path, tiny_image: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    args = _commands(tiny_cnn, tiny_image)[command]
    with open("/dev/full", "w") as full:
        out = subprocess.run(
            [sys.executable, "-m", "rex_stream.cli", *args, "-q"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
    lines = [line for line in out.stderr.splitlines() if not line.startswith("WARNING")]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0] == "rex-stream: error: cannot write: No space left on device"


# ----------------------------------------------------------------------------- store records


@pytest.fixture
def stored(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A finished 4-iteration store and the command that made it (add --iters, --resume)."""
    runs = tmp_path / "runs.zarr"
    common = [str(tiny_image), "--model", str(tiny_cnn), "--seed", "2", "--store", str(runs),
              "-n", "-q", "--json"]  # fmt: skip
    out = rex(*common, "--iters", "4")
    assert out.returncode == 0, out.stderr
    # a finished input's records are packed (engine/store_pack.py): back to one record per
    # iteration, as a killed run leaves them, through the store's own writes
    attached = ExplanationStore.attach(runs, "tiny", 2)
    for record in attached.committed("ledger").values():
        attached.commit("ledger", record)
    for pack in (runs / "tiny" / "ledger").glob("pack-*"):
        shutil.rmtree(pack)
    return runs, common


def _resume_to_six(common: list[str]) -> tuple[dict[str, object], str]:
    out = rex(*common, "--iters", "6", "--resume")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)["stats"], out.stderr


def _map(runs: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(runs), mode="r")["tiny/responsibility"][...])


def test_a_stray_member_among_the_records_is_left_alone(stored: tuple[Path, list[str]]) -> None:
    runs, common = stored
    ledger = runs / "tiny" / "ledger"
    (ledger / "notes").mkdir()
    shutil.copytree(ledger / "000001", ledger / "abc")  # a valid array under a non-index name
    stats, stderr = _resume_to_six(common)
    assert stats["resumed_iterations"] == 4
    assert "ledger/abc is no record of rex-stream; left alone" in stderr
    assert (ledger / "abc" / "zarr.json").exists()


def test_a_file_in_place_of_a_record_is_replaced(stored: tuple[Path, list[str]]) -> None:
    runs, common = stored
    record = runs / "tiny" / "ledger" / "000002"
    shutil.rmtree(record)
    record.write_text("not a record")
    stats, stderr = _resume_to_six(common)
    assert stats["resumed_iterations"] == 3  # the others are kept; #2 runs again
    assert "a file stood where ledger 2 goes" in stderr
    assert not record.is_file()  # replaced by the record, now in the finished input's pack
    assert 2 in ExplanationStore.attach(runs, "tiny", 2).committed("ledger")


def test_a_record_torn_by_kill_is_run_again_without_a_warning(
    stored: tuple[Path, list[str]], tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """kill -9 while zarr writes a record's metadata leaves its folder with only
    ``zarr.<hex>.partial`` (zarr writes there, then renames); a stale partial in the group's
    folder is what plain zarr readers warn about."""
    runs, common = stored
    record = runs / "tiny" / "ledger" / "000002"
    (record / "zarr.json").rename(record / "zarr.5f2c9e0d.partial")
    stale = runs / "tiny" / "zarr.9a8b7c6d.partial"
    stale.write_text("{")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    stats, stderr = _resume_to_six(common)
    assert stats["resumed_iterations"] == 3
    assert "WARNING" not in stderr and "unreadable" not in stderr, stderr
    assert not stale.exists() and not list(record.glob("*.partial"))
    # the resumed map equals an uninterrupted 6-iteration run's
    fresh = tmp_path / "fresh.zarr"
    whole = rex(*common[:5], "--store", str(fresh), "-n", "-q", "--iters", "6")
    assert whole.returncode == 0, whole.stderr
    np.testing.assert_array_equal(_map(runs), _map(fresh))
