"""``rex-stream DIR --dask …``: a real local cluster end to end, and one line per mistake."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("distributed", reason="needs the dask extra: pip install 'rex-stream[dask]'")

from rex_stream.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def rex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture()
def folder(tmp_path: Path, tiny_image: Path) -> Path:
    """Three inputs, one in a sub-directory."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    shutil.copy(tiny_image, tmp_path / "in" / "a.png")
    shutil.copy(tiny_image, tmp_path / "in" / "b.png")
    shutil.copy(tiny_image, tmp_path / "in" / "sub" / "c.png")
    return tmp_path / "in"


@pytest.mark.slow
def test_directory_on_a_local_cluster_then_a_free_rerun(
    folder: Path, tiny_cnn: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    common = ["--model", str(tiny_cnn), "--iters", "4", "--seed", "5", "--min-box-size", "4"]
    done = rex(str(folder), *common, "--store", str(store), "--dask", "local:2", "--json")
    assert done.returncode == 0, done.stderr
    summaries = json.loads(done.stdout)
    assert sorted(s["input"] for s in summaries) == sorted(str(p) for p in folder.rglob("*.png"))
    root = zarr.open_group(str(store), mode="r")
    assert sorted(root.group_keys()) == ["a.png", "b.png", "sub__c.png"]
    maps = [np.asarray(root[k]["responsibility"][:]) for k in root.group_keys()]
    assert maps[0].any() and all(np.array_equal(maps[0], m) for m in maps[1:])
    assert all("complete" in root[k].attrs for k in root.group_keys())

    again = rex(str(folder), *common, "--store", str(store), "--dask", "local:1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("0 queries (already complete)") == 3
    assert "3 of 3 inputs explained (3 already complete in the store)" in again.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dask", "local:0"], "local:N needs a number of workers N >= 1"),
        (["--dask", "yarn://x"], "expected local:N, tcp://host:port or scheduler-file:PATH"),
        (["--dask", "tcp://nohost"], "expected tcp://host:port"),
        (["--dask", "local:1"], "--dask needs --store"),
        (["--split-iterations", "3"], "--split-iterations needs --dask"),
        (["--dask-threads", "2"], "--dask-threads needs --dask"),
        (["--rows", "all"], "--rows needs --dask"),
        (
            ["--dask", "scheduler-file:/nonexistent/s.json", "--store", "s.zarr"],
            "scheduler file /nonexistent/s.json does not exist",
        ),
        (
            ["--dask", "tcp://127.0.0.1:9", "--dask-threads", "2", "--store", "s.zarr"],
            "--dask-threads applies to local:N",
        ),
    ],
)
def test_mistakes_are_one_line(
    extra: list[str],
    message: str,
    tiny_image: Path,
    tiny_cnn: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([str(tiny_image), "--model", str(tiny_cnn), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("rex-stream: error: ") and "\n" not in err
    assert message in err


def test_an_unreachable_scheduler_is_one_line_within_the_timeout(
    tiny_image: Path, tiny_cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tiny_image), "--model", str(tiny_cnn), "--store", str(tmp_path / "s.zarr")]
    code = main([*args, "--dask", "tcp://127.0.0.1:9", "--dask-timeout-s", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 7
    assert err.startswith("rex-stream: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert "\n" not in err
    assert not (tmp_path / "s.zarr").exists()  # nothing half-written


def test_a_missing_dask_extra_is_one_line(
    tiny_image: Path,
    tiny_cnn: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed → ImportError
    args = [str(tiny_image), "--model", str(tiny_cnn), "--store", str(tmp_path / "s.zarr")]
    code = main([*args, "--dask", "local:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    from rex_stream.engine.install_hint import install_command

    assert err == (
        "rex-stream: error: --dask needs Dask distributed (distributed is not installed): "
        f"{install_command('dask')}"
    )
    assert "pip install '" in err and "[dask]'" in err


@pytest.mark.slow
def test_a_stopped_driver_continues_where_it_stopped(tmp_path: Path) -> None:
    """SIGTERM the driver of a local cluster mid-run; the same command then finishes, skipping
    the inputs that were complete, and the store equals one process's."""
    import os
    import signal
    import time

    from PIL import Image

    from tests.distributed.test_dask import assert_same_store

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for number in range(8):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{number}.png")
    store = tmp_path / "dask.zarr"
    command = [
        sys.executable, "-m", "rex_stream.cli", str(folder),
        "--backend", "python:tests.distributed.slow_model:score",
        "--iters", "6", "--seed", "1", "--store", str(store), "--dask", "local:2", "-q",
    ]  # fmt: skip
    env = {**os.environ, "REX_STREAM_TEST_DELAY_S": "0.03", "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and driver.poll() is None:
        if len([g for g in store.glob("*/zarr.json") if '"complete": true' in g.read_text()]) >= 2:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the run ended before it could be stopped"
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(60) == 143
    finished = [g for g in store.glob("*/zarr.json") if '"complete": true' in g.read_text()]
    assert 2 <= len(finished) < 8

    env["REX_STREAM_TEST_DELAY_S"] = "0"
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already complete in the store" in again.stdout
    one = subprocess.run(
        [*command[:-5], "--store", str(tmp_path / "one.zarr"), "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert_same_store(tmp_path / "one.zarr", store)
