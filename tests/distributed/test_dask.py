"""Dask scale-out on a real LocalCluster of 2 worker processes: the store a cluster leaves
equals the one a single process leaves, with splits, a killed worker and reruns."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
import zarr

pytest.importorskip("distributed", reason="needs the dask extra: pip install 'rex-stream[dask]'")

from distributed import Client, LocalCluster

from rex_stream import ExplainConfig, explain_many, explain_many_sync, explain_sync
from rex_stream.distributed import InputSummary, explain_on_cluster
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.errors import ConfigError, RexStreamError
from rex_stream.result import InputFailure
from tests.distributed.clusters import two_workers

pytestmark = pytest.mark.timeout(120)

CONFIG = ExplainConfig().with_overrides(iters=6, seed=11, min_box_size=4)
SLOW_MODEL = "python:tests.distributed.slow_model:score"
#: Statistics a result determines (the others count time, batching and resumed work).
RESULT_STATS = ("passing", "failing", "max_depth", "avg_box_size", "iterations")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with two_workers() as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six 32 × 32 pictures, each with a bright square somewhere else."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    paths = []
    for number in range(6):
        pixels = rng.integers(0, 80, size=(32, 32, 3), dtype=np.uint8)
        row, col = 4 * number % 20, 3 * number % 18
        pixels[row : row + 10, col : col + 10] = 230
        path = folder / f"picture{number}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _one_process(sources: list[Path], model: str, store: Path, config: ExplainConfig) -> None:
    anyio.run(lambda: explain_many(sources, model, config, store=store))


def stored_records(store: Path, key: str) -> dict[int, Record]:
    """The ledger records a local store holds for ``key`` (packed once the input finished),
    read through the store as a resumed run reads them."""
    return ExplanationStore.attach(store, key, 2).committed("ledger")


def assert_same_store(expected: Path, actual: Path) -> None:
    """Same groups, ledgers, maps, masks and results; only run statistics may differ."""
    want, got = zarr.open_group(str(expected), mode="r"), zarr.open_group(str(actual), mode="r")
    assert sorted(want.group_keys()) == sorted(got.group_keys())
    assert len(list(want.group_keys())) > 0
    for key in want.group_keys():
        a, b = want[key], got[key]
        for name in ("responsibility", "explanation"):
            assert np.array_equal(np.asarray(a[name][:]), np.asarray(b[name][:])), (key, name)
            assert a[name].dtype == b[name].dtype
        ledgers, others = stored_records(expected, key), stored_records(actual, key)
        assert sorted(ledgers) == sorted(others) and ledgers, key
        for index, record in ledgers.items():
            assert np.array_equal(record.table, others[index].table), (key, index)
            assert dict(record.attributes) == dict(others[index].attributes), (key, index)
        attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
        for attrs in (attrs_a, attrs_b):
            attrs.pop("fingerprint", None)  # what a Dask task records of its inputs
            attrs["stats"] = {k: attrs["stats"][k] for k in RESULT_STATS}
        assert attrs_a == attrs_b, key


def test_cluster_store_equals_one_process(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    _one_process(images, str(tiny_cnn), tmp_path / "one.zarr", CONFIG)
    report = explain_on_cluster(
        client, images, str(tiny_cnn), CONFIG, store=tmp_path / "dask.zarr", inputs_per_task=2
    )
    assert all(isinstance(o, InputSummary) and not o.skipped for o in report.outcomes)
    assert [o.source for o in report.outcomes] == [str(p) for p in images]
    assert_same_store(tmp_path / "one.zarr", tmp_path / "dask.zarr")
    # both workers served, and each batched the mutants of the inputs it ran at once
    assert all(counters["calls"] > 0 for counters in report.workers.values())

    again = explain_on_cluster(client, images, str(tiny_cnn), CONFIG, store=tmp_path / "dask.zarr")
    assert all(isinstance(o, InputSummary) and o.skipped for o in again.outcomes)
    assert sum(c["calls"] for c in again.workers.values()) == 0


def test_the_api_runs_on_a_client(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    alone = explain_many_sync(images[:2], str(tiny_cnn), CONFIG)
    seen: list[object] = []

    async def main() -> list[object]:
        return await explain_many(
            images[:2], str(tiny_cnn), CONFIG, store=tmp_path / "api.zarr", client=client,
            on_result=seen.append,
        )  # fmt: skip

    outcomes = anyio.run(main)
    assert all(isinstance(o, InputSummary) for o in outcomes) and len(seen) == 2
    root = zarr.open_group(str(tmp_path / "api.zarr"), mode="r")
    for result, image in zip(alone, images):
        stored = np.asarray(root[image.name]["responsibility"][:])
        assert np.array_equal(stored, result.responsibility)  # type: ignore[union-attr]
    again = explain_many_sync(
        images[:2], str(tiny_cnn), CONFIG, store=tmp_path / "api.zarr", client=client
    )
    assert all(isinstance(o, InputSummary) and o.skipped for o in again)


def test_split_iterations_equal_one_process(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    config = CONFIG.with_overrides(iters=7)
    _one_process(images[:2], str(tiny_cnn), tmp_path / "one.zarr", config)
    report = explain_on_cluster(
        client, images[:2], str(tiny_cnn), config, store=tmp_path / "split.zarr",
        split_iterations=3,
    )  # fmt: skip
    assert all(isinstance(o, InputSummary) for o in report.outcomes)
    assert all(o.summary["split_tasks"] == 3 for o in report.outcomes)  # type: ignore[union-attr]
    assert_same_store(tmp_path / "one.zarr", tmp_path / "split.zarr")


def test_split_iterations_keep_a_mask_sweep(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    """ReX's per-iteration ``random`` mask values: each split task masks its iterations with
    their own values, so the store equals a one-process run's (records included)."""
    config = CONFIG.with_overrides(iters=5, mask_value="random")
    _one_process(images[:1], str(tiny_cnn), tmp_path / "one.zarr", config)
    report = explain_on_cluster(
        client, images[:1], str(tiny_cnn), config, store=tmp_path / "split.zarr",
        split_iterations=2,
    )  # fmt: skip
    assert all(isinstance(o, InputSummary) for o in report.outcomes)
    assert_same_store(tmp_path / "one.zarr", tmp_path / "split.zarr")
    records = stored_records(tmp_path / "split.zarr", images[0].name)
    values = [dict(records[k].attributes).get("mask_value") for k in sorted(records)]
    assert len(values) == 5 and len(set(values)) == 5 and None not in values


def _plant_lock(store: Path, key: str, host: str, pid: int, beat_age_s: float) -> None:
    """The lock a writer that died left on group ``key`` (the layout of engine/lock.py)."""
    lock = store.parent / f"{store.name}.locks" / key
    lock.mkdir(parents=True)
    now = time.time()
    owner = {"host": host, "pid": pid, "token": "dead", "started": now - 100, "heartbeat": 0}
    (lock / "owner.json").write_text(json.dumps(owner))
    (lock / "beat-dead").touch()
    os.utime(lock / "beat-dead", (now - beat_age_s, now - beat_age_s))


def test_locks_left_by_dead_workers_are_taken_over(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    store = tmp_path / "dask.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _plant_lock(store, images[0].name, socket.gethostname(), dead.pid, beat_age_s=0)
    # a worker on another host whose heartbeat stopped 57 s ago: stale 3 s from now
    _plant_lock(store, images[1].name, "another-host", 1, beat_age_s=57)
    report = explain_on_cluster(client, images[:2], str(tiny_cnn), CONFIG, store=store)
    assert all(isinstance(o, InputSummary) for o in report.outcomes), report.outcomes
    _one_process(images[:2], str(tiny_cnn), tmp_path / "one.zarr", CONFIG)
    assert_same_store(tmp_path / "one.zarr", store)


class _CountingClient:
    """A client that counts the futures submitted through it."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.submitted = 0

    def submit(self, *args: object, **kwargs: object) -> object:
        self.submitted += 1
        return self._client.submit(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


def test_submission_is_windowed(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    counting = _CountingClient(client)
    seen: list[int] = []
    explain_on_cluster(
        counting, images, str(tiny_cnn), CONFIG.with_overrides(iters=2), store=tmp_path / "w.zarr",
        window=2, on_result=lambda _: seen.append(counting.submitted),
    )  # type: ignore[arg-type]  # fmt: skip
    # never more than 2 inputs in flight: the k-th result arrives with k + 1 submitted
    assert seen == [2, 3, 4, 5, 6, 6]


def test_a_model_missing_on_the_workers_is_one_error(
    client: Client, images: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(RexStreamError, match="on a Dask worker") as caught:
        explain_on_cluster(
            client, images[:2], str(tmp_path / "absent.onnx"), CONFIG, store=tmp_path / "m.zarr"
        )
    assert "absent.onnx" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "m.zarr").exists()  # nothing half-written


def test_a_failing_backend_ends_the_run_with_one_error(
    client: Client, images: list[Path], tmp_path: Path
) -> None:
    from tests.distributed.slow_model import set_failing

    client.run(set_failing, True)
    try:
        with pytest.raises(RexStreamError, match="on a Dask worker") as caught:
            explain_on_cluster(
                client, images[:4], SLOW_MODEL, CONFIG, store=tmp_path / "f.zarr",
                inputs_per_task=2,
            )  # fmt: skip
    finally:
        client.run(set_failing, False)
    assert "the model failed" in str(caught.value) and "\n" not in str(caught.value)


DATA = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"


def test_a_split_volume_equals_one_process(client: Client, tmp_path: Path) -> None:
    """A 3-D volume's 9 iterations over 4 tasks: the same store as one process."""
    volume, model = str(DATA / "voxel-blob-example.npy"), str(DATA / "voxel-blob32.onnx")
    config = ExplainConfig().with_overrides(iters=9, seed=3, mode="voxel")
    _one_process([Path(volume)], model, tmp_path / "one.zarr", config)
    report = explain_on_cluster(
        client, [volume], model, config, store=tmp_path / "split.zarr", split_iterations=4
    )
    (outcome,) = report.outcomes
    assert isinstance(outcome, InputSummary) and outcome.summary["split_tasks"] == 4
    assert_same_store(tmp_path / "one.zarr", tmp_path / "split.zarr")
    assert (
        np.asarray(
            zarr.open_group(str(tmp_path / "split.zarr"))[Path(volume).name]["responsibility"]
        ).ndim
        == 3
    )


def test_table_rows_in_shards_equal_one_process(client: Client, tmp_path: Path) -> None:
    """Six rows of a table, three to a task: each row's group holds the map that explaining
    that row alone gives."""
    from rex_stream.distributed.inputs import row_sources

    table = DATA / "tabular-breast-cancer-test.csv"
    options = {"drop": "label", "baseline": str(DATA / "tabular-breast-cancer-train.csv")}
    settings = {"iters": 6, "seed": 1, "min_box_size": 4, "mode": "tabular"}
    config = ExplainConfig().with_overrides(
        scores="probabilities", mode_options=options, **settings
    )
    sources = row_sources(table, "2:8", 114)
    report = explain_on_cluster(
        client, sources, str(DATA / "tabular-breast-cancer.onnx"), config,
        store=tmp_path / "rows.zarr", inputs_per_task=3,
    )  # fmt: skip
    assert all(isinstance(o, InputSummary) for o in report.outcomes), report.outcomes
    root = zarr.open_group(str(tmp_path / "rows.zarr"), mode="r")
    assert sorted(root.group_keys()) == [f"{table.name}__row{r}" for r in range(2, 8)]
    for row in range(2, 8):
        alone = explain_sync(
            table, str(DATA / "tabular-breast-cancer.onnx"),
            config.with_overrides(mode_options={**options, "row": str(row)}),
        )  # fmt: skip
        stored = np.asarray(root[f"{table.name}__row{row}"]["responsibility"][:])
        assert np.array_equal(stored, alone.responsibility), row


def test_split_refuses_the_adaptive_distribution(
    client: Client, tiny_cnn: Path, images: list[Path], tmp_path: Path
) -> None:
    config = CONFIG.with_overrides(distribution="adaptive")
    with pytest.raises(ConfigError, match="adaptive"):
        explain_on_cluster(
            client, images, str(tiny_cnn), config, store=tmp_path / "s.zarr", split_iterations=2
        )


@pytest.fixture(scope="module")
def slow_client() -> Iterator[Client]:
    """Workers whose model sleeps 40 ms a call; one input at a time per worker; a poisoned
    task fails after its second death."""
    import dask

    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": 1,
            "distributed.scheduler.worker-saturation": 1.0,
        }
    ):
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                env={"REX_STREAM_TEST_DELAY_S": "0.04"},
            ) as cluster,
            Client(cluster) as dask_client,
        ):
            yield dask_client


def _committed(group: Path) -> int:
    """Iterations the store holds committed for one input (read from the files: the test
    must not open what a worker is writing through zarr's caches)."""
    import json

    count = 0
    for meta in (group / "ledger").glob("*/zarr.json"):
        try:
            attributes = json.loads(meta.read_text()).get("attributes", {})
            if attributes.get("committed"):  # one record, or a pack of them
                count += len(attributes.get("records", [None]))
        except (OSError, ValueError):
            continue
    return count


def test_a_killed_worker_leaves_the_same_store(
    slow_client: Client, images: list[Path], tmp_path: Path
) -> None:
    config = CONFIG.with_overrides(iters=8, max_concurrent_searches=1)
    sources = images[:4]
    _one_process(sources, SLOW_MODEL, tmp_path / "one.zarr", config)
    store = tmp_path / "dask.zarr"
    finished: list[object] = []
    run = threading.Thread(
        target=lambda: finished.append(
            explain_on_cluster(slow_client, sources, SLOW_MODEL, config, store=store)
        )
    )
    run.start()
    pids = slow_client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and run.is_alive():
        for position, source in enumerate(sources):
            if 2 <= _committed(store / source.name) < 8:
                running = slow_client.processing()
                for address, keys in running.items():
                    if any(str(k).startswith(f"rex-explain-{position}-") for k in keys):
                        victim = (position, address)
        time.sleep(0.02)
    assert victim is not None, "no input reached 2 committed iterations"
    os.kill(pids[victim[1]], signal.SIGKILL)
    run.join(90)
    assert finished, "the cluster run did not end"
    report = finished[0]
    outcomes = report.outcomes  # type: ignore[attr-defined]
    assert all(isinstance(o, InputSummary) for o in outcomes), outcomes
    assert outcomes[victim[0]].summary["stats"]["resumed_iterations"] >= 2
    assert_same_store(tmp_path / "one.zarr", store)


def test_a_poison_input_fails_alone(
    slow_client: Client, images: list[Path], tmp_path: Path
) -> None:
    from PIL import Image

    poison = tmp_path / "white.png"
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(poison)
    sources = [images[0], poison, images[1]]
    config = CONFIG.with_overrides(iters=3)
    report = explain_on_cluster(slow_client, sources, SLOW_MODEL, config, store=tmp_path / "p.zarr")
    first, failed, last = report.outcomes
    assert isinstance(first, InputSummary) and isinstance(last, InputSummary)
    assert isinstance(failed, InputFailure)
    assert "died" in str(failed.error) and failed.source == str(poison)


def test_an_abandoned_run_frees_the_worker_threads(
    slow_client: Client, images: list[Path], tmp_path: Path
) -> None:
    """A driver that stops mid-run (here its callback raises) removes its runtime; the inputs
    still running on the workers end, instead of holding the workers' only threads."""
    config = CONFIG.with_overrides(iters=8, max_concurrent_searches=1)
    slow_client.wait_for_workers(2, timeout=30)  # the poison test's workers are back

    def stop(_: object) -> None:
        raise RuntimeError("the driver stops")

    with pytest.raises(RuntimeError, match="the driver stops"):
        explain_on_cluster(
            slow_client, images, SLOW_MODEL, config, store=tmp_path / "a.zarr", on_result=stop
        )
    for address in slow_client.nthreads():
        probe = slow_client.submit(os.getpid, workers=[address], pure=False)
        assert probe.result(timeout=30) > 0


@pytest.mark.parametrize(
    ("version", "atomic"),
    [("3.1.3", True), ("3.1.6", True), ("3.2.0rc1", True), ("4.0", True), ("3.1.2", False),
     ("3.0.10", False), ("2.18.3", False)],
)  # fmt: skip
def test_workers_need_a_zarr_with_atomic_writes(version: str, atomic: bool) -> None:
    from rex_stream.distributed.shared_store import atomic_zarr

    assert atomic_zarr(version) is atomic
