"""``--dask tcp://host:port`` with an object store: a real Dask scheduler and worker processes
started the way a cluster's operators start them (the ``dask scheduler`` and ``dask worker``
commands), the command line run against the scheduler's address writing to S3 (moto on
127.0.0.1), and the bucket's store equal to a one-process run's local store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="needs the dask extra: pip install 'rex-stream[dask]'")

from tests.distributed.test_dask import images as images
from tests.distributed.test_dask_cli import rex
from tests.distributed.test_dask_object_store import assert_same_as_local
from tests.distributed.test_dask_object_store import s3_server as s3_server
from tests.engine.s3_server import FAKE_SECRET

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


@pytest.fixture(scope="module")
def scheduler(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two single-threaded worker processes (which inherit moto's AWS_*
    environment, as a cluster's workers get their credentials); yields its address."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = folder / "scheduler.json"
    common = {"cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    start_scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                       "--no-dashboard", "--scheduler-file", str(scheduler_file)]  # fmt: skip
    processes = [subprocess.Popen(start_scheduler, **common)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        start_workers = [dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
                         "--no-dashboard", "--local-directory", str(folder)]  # fmt: skip
        processes.append(subprocess.Popen(start_workers, **common))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_tcp_scheduler_writes_to_the_bucket_what_one_process_writes_locally(
    scheduler: str, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    folder = images[0].parent
    common = [str(folder), "--model", str(tiny_cnn), "--iters", "6", "--seed", "11",
              "--min-box-size", "4"]  # fmt: skip
    local = tmp_path / "one.zarr"
    alone = rex(*common, "--store", str(local))
    assert alone.returncode == 0, alone.stderr
    url = "s3://cluster/operators.zarr"  # the bucket of the s3_server fixture
    done = rex(*common, "--store", url, "--dask", scheduler, "--json")
    assert done.returncode == 0, done.stderr
    summaries = json.loads(done.stdout)
    assert sorted(Path(s["input"]).name for s in summaries) == sorted(p.name for p in images)
    assert FAKE_SECRET not in done.stdout + done.stderr
    assert_same_as_local(local, url)
    again = rex(*common, "--store", url, "--dask", scheduler, "--json")
    assert again.returncode == 0, again.stderr
    assert all(s.get("skipped") for s in json.loads(again.stdout)), again.stdout
