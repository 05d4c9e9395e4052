"""One writer per store group: real processes contend for the lock; stale locks are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from rex_stream.cli.main import main
from rex_stream.engine.lock import GroupLock, StoreLocked
from rex_stream.engine.store import ExplanationStore
from rex_stream.errors import StoreError
from tests.engine.test_store import _committed

ROOT = Path(__file__).resolve().parents[2]

#: A child that takes the lock, says so, and releases it when its stdin closes.
HOLDER = """
import sys
from rex_stream.engine.lock import GroupLock
lock = GroupLock.for_group(sys.argv[1], sys.argv[2], heartbeat_s=0.05)
lock.acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def _holder(store: Path, key: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), key],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_then_waits(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    child = _holder(store, "photo.jpg")
    try:
        lock = GroupLock.for_group(store, "photo.jpg")
        holder = lock.try_acquire()
        assert holder is not None and holder.pid == child.pid
        assert holder.host == socket.gethostname()
        with pytest.raises(StoreLocked) as refused:
            lock.acquire()
        message = str(refused.value)
        assert "\n" not in message
        assert f"{store}/photo.jpg is being written by" in message
        assert f"pid {child.pid}" in message
        other = GroupLock.for_group(store, "other.jpg")  # another group is free
        other.acquire()
        other.release()
        assert child.stdin is not None
        child.stdin.close()  # the holder releases; a waiting writer gets the lock
        lock.acquire(wait_s=30, poll_s=0.02)
        assert lock.held and lock.holder().pid == os.getpid()  # type: ignore[union-attr]
        lock.release()
        assert not (tmp_path / "s.zarr.locks").exists()  # tidied away
    finally:
        child.kill()
        child.wait()


def test_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    child = _holder(store, "k")
    child.kill()  # dies holding the lock
    child.wait()
    lock = GroupLock.for_group(store, "k")
    assert lock.holder() is not None and lock.holder().pid == child.pid  # type: ignore[union-attr]
    lock.acquire()
    assert lock.holder().pid == os.getpid()  # type: ignore[union-attr]
    lock.release()


def test_a_silent_holder_on_another_host_goes_stale(tmp_path: Path) -> None:
    lock = GroupLock.for_group(tmp_path / "s.zarr", "k", stale_after_s=30)
    lock.path.mkdir(parents=True)
    owner = {"host": "elsewhere", "pid": 1, "token": "t", "started": 0.0, "heartbeat": 0.0}
    (lock.path / "owner.json").write_text(json.dumps(owner))
    (lock.path / "beat-t").touch()
    assert lock.try_acquire() is not None  # beating recently: held
    os.utime(lock.path / "beat-t", (time.time() - 31, time.time() - 31))
    assert lock.try_acquire() is None  # silent for longer than stale_after_s: taken over
    assert lock.holder().host == socket.gethostname()  # type: ignore[union-attr]
    lock.release()


def test_a_holder_notices_a_takeover(tmp_path: Path) -> None:
    lock = GroupLock.for_group(tmp_path / "s.zarr", "k", heartbeat_s=0.01)
    lock.acquire()
    lock.check()
    lock.path.rename(tmp_path / "aside")  # what a writer that judged it stale does
    successor = GroupLock.for_group(tmp_path / "s.zarr", "k")
    successor.acquire()
    deadline = time.monotonic() + 10
    while lock.held and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(StoreError, match="lost the lock"):
        lock.check()
    lock.release()  # never removes the successor's lock
    assert successor.held and successor.holder().pid == os.getpid()  # type: ignore[union-attr]
    successor.release()


def test_two_runs_on_one_store_never_interleave(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slow run holds the group; a second CLI run with another seed is refused in one line;
    once the first is killed, a resume takes the lock over and finishes."""
    store = tmp_path / "s.zarr"
    command = [sys.executable, "-m", "tests.slow_run", str(tiny_cnn), str(tiny_image), str(store)]
    first = subprocess.Popen(command, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while _committed(store) < 1:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        args = [str(tiny_image), "--model", str(tiny_cnn), "--store", str(store), "--seed", "99"]
        assert main([*args, "--iters", "2", "--overwrite"]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("rex-stream: error:")
        assert f"{store}/tiny is being written by" in err and f"pid {first.pid}" in err
    finally:
        first.kill()
        first.wait()
    subprocess.run([*command, "--resume"], cwd=ROOT, check=True, timeout=120)
    group = zarr.open_group(str(store), mode="r")["tiny"]
    assert group.attrs["settings"]["seed"] == 21 and group.attrs["complete"]
    assert len(ExplanationStore.attach(store, "tiny", 2).committed("ledger")) == 10
