"""Dask workers write straight to an object store (S3 through moto on 127.0.0.1): the store
they leave equals one process's, split inputs included, and a rerun skips finished inputs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("distributed", reason="needs the dask extra: pip install 'rex-stream[dask]'")

from distributed import Client, LocalCluster

from rex_stream.distributed import InputSummary, explain_on_cluster
from rex_stream.engine.object_store import GENERATION, ObjectGroup
from rex_stream.engine.store_location import parse_store
from tests.distributed.clusters import two_workers
from tests.distributed.test_dask import (
    CONFIG,
    RESULT_STATS,
    SLOW_MODEL,
    _one_process,
    stored_records,
)
from tests.distributed.test_dask import images as images
from tests.engine.s3_server import make_bucket, moto_s3, objects_under

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    with moto_s3() as endpoint:
        make_bucket("cluster")
        yield endpoint


@pytest.fixture(scope="module")
def s3_client(s3_server: str) -> Iterator[Client]:
    """moto first (its AWS_* environment), then worker processes that inherit it."""
    with two_workers() as client:
        yield client


def assert_same_as_local(expected: Path, url: str) -> None:
    """The object store holds the local store's maps, masks, records and results."""
    want, got = zarr.open_group(str(expected), mode="r"), zarr.open_group(url, mode="r")
    # the group names of a plain and a Dask run may differ by the file suffix (issue 27,
    # item 18, someone else's): compare by stem
    local_keys = {Path(k).stem: k for k in want.group_keys()}
    assert sorted(local_keys) == sorted(Path(k).stem for k in got.group_keys()) and local_keys
    where = parse_store(url)
    for key in got.group_keys():
        local, head = want[local_keys[Path(key).stem]], got[key]
        generation = head.attrs[GENERATION]
        result = head[generation]
        for name in ("responsibility", "explanation"):
            assert np.array_equal(local[name][:], result[name][:]), (key, name)
        records = ObjectGroup(where, key, generation, None).committed("ledger")
        ledger = stored_records(expected, local_keys[Path(key).stem])
        seen = objects_under(f"{where.path}.records/{key}")
        assert sorted(records) == sorted(ledger) and records, (key, seen)
        for index, record in records.items():
            assert np.array_equal(record.table, ledger[index].table), (key, index)
        attrs_a = dict(local.attrs)
        attrs_b = {k: v for k, v in head.attrs.items() if k != GENERATION}
        for attrs in (attrs_a, attrs_b):
            attrs.pop("fingerprint", None)
            attrs["stats"] = {k: attrs["stats"][k] for k in RESULT_STATS}
        assert attrs_a == attrs_b, key


def test_cluster_on_s3_equals_one_process(
    s3_client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    _one_process(images, str(tiny_cnn), tmp_path / "one.zarr", CONFIG)
    url = "s3://cluster/dask.zarr"
    report = explain_on_cluster(s3_client, images, str(tiny_cnn), CONFIG, store=url,
                                inputs_per_task=2)  # fmt: skip
    assert all(isinstance(o, InputSummary) and not o.skipped for o in report.outcomes)
    assert_same_as_local(tmp_path / "one.zarr", url)
    assert not objects_under("cluster/dask.zarr.locks")
    again = explain_on_cluster(s3_client, images, str(tiny_cnn), CONFIG, store=url)
    assert all(isinstance(o, InputSummary) and o.skipped for o in again.outcomes)
    assert sum(c["calls"] for c in again.workers.values()) == 0


def test_split_iterations_on_s3_equal_one_process(
    s3_client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    config = CONFIG.with_overrides(iters=7)
    _one_process(images[:2], str(tiny_cnn), tmp_path / "one.zarr", config)
    url = "s3://cluster/split.zarr"
    report = explain_on_cluster(s3_client, images[:2], str(tiny_cnn), config, store=url,
                                split_iterations=3)  # fmt: skip
    assert all(isinstance(o, InputSummary) for o in report.outcomes), report.outcomes
    assert_same_as_local(tmp_path / "one.zarr", url)


@pytest.fixture(scope="module")
def slow_s3_client(s3_server: str) -> Iterator[Client]:
    """Workers whose model sleeps 100 ms a call (slow enough to be caught mid-input while each
    listing of the bucket takes tens of ms), one input at a time each."""
    import dask

    settings = {"distributed.scheduler.allowed-failures": 1,
                "distributed.scheduler.worker-saturation": 1.0}  # fmt: skip
    with (
        dask.config.set(settings),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"REX_STREAM_TEST_DELAY_S": "0.1"},
        ) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        yield client


def _committed_on_s3(prefix: str) -> dict[str, int]:
    """Committed ledger records per input (by the stem of its group's name), from a listing."""
    counts: dict[str, int] = {}
    for name in objects_under(f"{prefix}.records"):
        parts = name.split("/")
        if "ledger" in parts[3:]:
            stem = Path(parts[2]).stem
            counts[stem] = counts.get(stem, 0) + 1
    return counts


def test_a_killed_worker_on_s3_leaves_the_same_store(
    slow_s3_client: Client,
    images: list[Path],
    tmp_path: Path,
) -> None:
    config = CONFIG.with_overrides(iters=8, max_concurrent_searches=1)
    sources = images[:4]
    _one_process(sources, SLOW_MODEL, tmp_path / "one.zarr", config)
    url = "s3://cluster/killed.zarr"
    finished: list[object] = []
    run = threading.Thread(
        target=lambda: finished.append(
            explain_on_cluster(slow_s3_client, sources, SLOW_MODEL, config, store=url)
        )
    )
    run.start()
    pids = slow_s3_client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 90
    while victim is None and time.monotonic() < deadline and run.is_alive():
        counts = _committed_on_s3("cluster/killed.zarr")
        for position, source in enumerate(sources):
            if 2 <= counts.get(source.stem, 0) < 8:
                for address, keys in slow_s3_client.processing().items():
                    if any(str(k).startswith(f"rex-explain-{position}-") for k in keys):
                        victim = (position, address)
        time.sleep(0.05)
    assert victim is not None, "no input reached 2 committed iterations"
    os.kill(pids[victim[1]], signal.SIGKILL)
    run.join(150)
    assert finished, "the cluster run did not end"
    outcomes = finished[0].outcomes  # type: ignore[attr-defined]
    assert all(isinstance(o, InputSummary) for o in outcomes), outcomes
    assert outcomes[victim[0]].summary["stats"]["resumed_iterations"] >= 2
    assert_same_as_local(tmp_path / "one.zarr", url)
