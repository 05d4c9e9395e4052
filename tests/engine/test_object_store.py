"""Stores on object storage (issue 25): S3 through moto's server on 127.0.0.1, memory://, and
the refusals of store URLs that are not stores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import zarr

from rex_stream import BackendError, explain_sync
from rex_stream.engine import object_lease, object_store
from rex_stream.engine.object_batches import RecordBatcher
from rex_stream.engine.object_store import ObjectGroup, decode_record, unpack_records
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.engine.store_location import parse_storage_options, parse_store
from rex_stream.engine.store_record import pack_records
from rex_stream.errors import ConfigError, StoreError, StoreLocked
from tests.engine.s3_server import FAKE_SECRET, make_bucket, moto_s3, objects_under
from tests.engine.slow_object_run import slower_backend
from tests.engine.test_store_overwrite import _failing_backend
from tests.killing import kill_mid_run
from tests.slow_run import SETTINGS, slow_backend

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"iters": 4, "min_box_size": 4}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_s3() as endpoint:
        make_bucket("runs")
        yield endpoint


def _ledger_objects(prefix: str) -> int:
    return sum(1 for o in objects_under(f"runs/{prefix}.records") if "/ledger/" in o)


def _ledger_names(prefix: str) -> list[str]:
    return [o for o in objects_under(f"runs/{prefix}.records") if "/ledger/" in o]


def _ledger_records(prefix: str) -> int:
    """The whole ledger records written as their own objects or in batches (not in a pack)."""
    import s3fs

    fs = s3fs.S3FileSystem()
    count = 0
    for name in (o for o in objects_under(f"runs/{prefix}.records") if "/ledger/" in o):
        try:
            data = fs.cat_file(name)
        except FileNotFoundError:
            continue  # packed meanwhile
        parts = unpack_records(data) if "/batch-" in name else [data]
        count += sum(1 for part in parts if decode_record(part)[1])
    return count


def test_a_scheme_never_becomes_a_local_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown storage protocol"):
        parse_store("nosuch://bucket/x.zarr")
    with pytest.raises(StoreError, match="prefix inside the bucket"):
        parse_store("s3://bucket")
    with pytest.raises(StoreError, match="credentials in the URL"):
        parse_store("s3://AKIA:secret@bucket/x.zarr")
    assert parse_store("file:///tmp/x.zarr").local_path() == Path("/tmp/x.zarr")
    assert parse_store("runs.zarr").is_local and not parse_store("memory://r.zarr").is_local
    assert parse_storage_options(["endpoint_url=http://h:1", "client_kwargs.region_name=eu"]) == {
        "endpoint_url": "http://h:1",
        "client_kwargs": {"region_name": "eu"},
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


def test_the_cli_refuses_an_unknown_scheme_in_one_line(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    command = [str(Path(sys.executable).with_name("rex-stream")), str(tiny_image), "--model",
               str(tiny_cnn), "--store", "nosuch://b/x.zarr", "--iters", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("rex-stream: error:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # no folder named "nosuch:"


def test_memory_store_resumes_and_compacts() -> None:
    url = "memory://compact.zarr"
    store = ExplanationStore.open(url, "photo", {"seed": 1}, 2)
    for index in range(5):
        store.commit("ledger", Record(index, np.full((2, 6), float(index)), {"i": index}))
    store.close()  # killed before finishing: the records stay, one object each
    again = ExplanationStore.open(url, "photo", {"seed": 1}, 2, resume=True)
    records = again.committed("ledger")
    assert sorted(records) == list(range(5)) and records[3].attributes == {"i": 3}
    again.finish()
    again.close()
    with pytest.raises(StoreError, match="different settings"):
        ExplanationStore.open(url, "photo", {"seed": 2}, 2, resume=True)


def test_explain_to_s3_equals_the_local_store_and_stays_small(
    s3: str, tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    local = explain_sync(tiny_image, str(tiny_cnn), store=tmp_path / "l.zarr", seed=3, **SMALL)
    remote = explain_sync(tiny_image, str(tiny_cnn), store="s3://runs/a.zarr", seed=3, **SMALL)
    assert np.array_equal(local.responsibility, remote.responsibility)
    head = zarr.open_group("s3://runs/a.zarr", mode="r")["tiny"]
    assert head.attrs["complete"] is True and head.attrs["settings"]["seed"] == 3
    stored = head[head.attrs["generation"]]["responsibility"][:]
    assert np.array_equal(stored, local.responsibility)
    assert _ledger_objects("a.zarr") == 0  # compacted into one pack
    assert not objects_under("runs/a.zarr.locks")  # the lease was given back
    assert not any(FAKE_SECRET in o for o in objects_under("runs/a.zarr"))
    resumed = explain_sync(
        tiny_image, str(tiny_cnn), store="s3://runs/a.zarr", resume=True, **SMALL
    )
    assert resumed.stats.resumed_iterations == SMALL["iters"]
    assert np.array_equal(resumed.responsibility, local.responsibility)


def test_resume_after_kill_9_on_s3_gives_the_same_map(
    s3: str, tiny_cnn: Path, tiny_image: Path
) -> None:
    reference = explain_sync(tiny_image, slow_backend(str(tiny_cnn)), **SETTINGS).responsibility
    url = "s3://runs/killed.zarr"
    # records are written in batches (held back up to a second): the kill loses those held
    command = [sys.executable, "-m", "tests.engine.slow_object_run", str(tiny_cnn),
               str(tiny_image), url]  # fmt: skip
    kill_mid_run(command, lambda: _ledger_records("killed.zarr"), 3, "iteration", 90,
                 cwd=ROOT, env=dict(os.environ))  # fmt: skip
    before = _ledger_records("killed.zarr")
    assert 3 <= before < SETTINGS["iters"]
    assert all("/batch-" in o for o in _ledger_names("killed.zarr"))  # coalesced records
    resumed = explain_sync(
        tiny_image, slower_backend(str(tiny_cnn), 0.0), store=url, resume=True, **SETTINGS
    )
    assert resumed.stats.resumed_iterations >= before
    assert np.array_equal(resumed.responsibility, reference)
    assert _ledger_objects("killed.zarr") == 0  # the batches went into the pack


def test_a_damaged_record_in_a_batch_runs_again_alone() -> None:
    url = "memory://damaged-batch.zarr"
    store = ExplanationStore.open(url, "photo", {"seed": 1}, 2)
    for index in range(4):
        store.commit("ledger", Record(index, np.full((2, 6), float(index)), {"i": index}))
    store.close()  # a clean stop writes what was held back: one batch
    fs = fsspec.filesystem("memory")
    (batch,) = [p for p in fs.find("/damaged-batch.zarr.records") if "/batch-" in p]
    blobs = unpack_records(fs.cat_file(batch))
    assert len(blobs) == 4
    blobs[2] = blobs[2][:-8] + np.float64(99.0).tobytes()  # record 2's table, damaged
    fs.pipe_file(batch, pack_records(blobs))
    again = ExplanationStore.open(url, "photo", {"seed": 1}, 2, resume=True)
    try:
        assert sorted(again.committed("ledger")) == [0, 1, 3]
        again.commit("ledger", Record(2, np.full((2, 6), 2.0), {"i": 2}))
        again.finish()
    finally:
        again.close()
    left = fs.find("/damaged-batch.zarr.records")
    assert [p.rsplit("/", 1)[-1] for p in left] == ["ledger.pack"]
    done = ExplanationStore.open(url, "photo", {"seed": 1}, 2, resume=True)
    try:
        records = done.committed("ledger")
        assert sorted(records) == [0, 1, 2, 3] and records[2].table[0, 0] == 2.0
    finally:
        done.close()


def test_records_held_back_are_written_together_within_the_hold_time() -> None:
    written: list[tuple[str, dict[int, bytes]]] = []
    batcher = RecordBatcher(lambda kind, blobs: written.append((kind, dict(blobs))), 0.2)
    try:
        for index in range(3):
            batcher.add("ledger", index, b"r%d" % index)
        assert written == []  # held back
        deadline = time.monotonic() + 10
        while not written and time.monotonic() < deadline:
            time.sleep(0.01)
        assert written == [("ledger", {0: b"r0", 1: b"r1", 2: b"r2"})]
        batcher.add("ledger", 3, b"r3")
    finally:
        batcher.stop()
    assert batcher.held() == 1  # stopped: what is left waits for flush() (or the pack)
    batcher.flush()
    assert written[-1] == ("ledger", {3: b"r3"}) and batcher.held() == 0


def test_a_failed_batch_is_held_again() -> None:
    calls: list[int] = []

    def write(kind: str, blobs: Mapping[int, bytes]) -> None:
        calls.append(len(blobs))
        if len(calls) == 1:
            raise OSError("the store went away")

    batcher = RecordBatcher(write, 60.0)
    batcher.add("ledger", 0, b"x")
    batcher.stop()
    with pytest.raises(StoreError, match="cannot write 1 records"):
        batcher.flush()
    assert batcher.held() == 1
    batcher.flush()
    assert calls == [1, 1] and batcher.held() == 0


def test_a_large_map_is_sent_as_it_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(object_store, "SPILL_BYTES", 1)  # every chunk goes at once
    url = "memory://spilled.zarr"
    values = np.random.default_rng(1).random((600, 300)).astype(np.float32)
    store = ExplanationStore.open(url, "photo", {"seed": 1}, 2)
    try:
        store.write_array("responsibility", values, "float32", chunk_edge=256)
        assert store._objects is not None and store._objects.staged is not None
        assert store._objects.staged.staged_bytes() == 0  # sent, not kept
        store.finish()
    finally:
        store.close()
    head = zarr.open_group(url, mode="r")["photo"]
    assert np.array_equal(head[head.attrs["generation"]]["responsibility"][:], values)


def test_an_input_costs_few_requests_on_s3(
    s3: str, tiny_cnn: Path, tiny_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    sent: list[str] = []
    sending = s3fs.S3FileSystem._call_s3

    async def counted(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{method} {kwargs.get('Key', kwargs.get('Prefix', ''))}")
        return await sending(self, method, *args, **kwargs)

    explain_sync(tiny_image, str(tiny_cnn), store="s3://runs/few.zarr", seed=3, **SMALL)
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    image = tmp_path / "second.png"
    shutil.copy(tiny_image, image)
    explain_sync(image, str(tiny_cnn), store="s3://runs/few.zarr", seed=3, **SMALL)
    # lease (list, create, delete), root + head (read), the generation, its two arrays (a
    # chunk each) and the pack (sent at once), then the head: no zarr probing, no record
    # written alone or read back
    assert len(sent) <= 12, sent
    assert sum(s.startswith("put_object few.zarr/second/zarr.json") for s in sent) == 1, sent
    assert not any(s.startswith("head_object") for s in sent), sent


def test_two_writers_of_one_group_one_is_refused(s3: str) -> None:
    url = "s3://runs/two.zarr"
    first = ExplanationStore.open(url, "photo", {"seed": 1}, 2)
    try:
        with pytest.raises(StoreLocked, match="being written by"):
            ExplanationStore.open(url, "photo", {"seed": 1}, 2, resume=True)
    finally:
        first.close()
    second = ExplanationStore.open(url, "photo", {"seed": 1}, 2, resume=True)
    second.close()


def test_a_failed_overwrite_on_s3_keeps_the_old_result(
    s3: str, tiny_cnn: Path, tiny_image: Path
) -> None:
    url = "s3://runs/over.zarr"
    old = explain_sync(tiny_image, str(tiny_cnn), store=url, seed=1, **SMALL)
    with pytest.raises(BackendError, match="went away"):
        explain_sync(tiny_image, _failing_backend(tiny_cnn, 5), store=url, overwrite=True,
                     seed=2, **SMALL)  # fmt: skip
    head = zarr.open_group(url, mode="r")["tiny"]
    assert head.attrs["settings"]["seed"] == 1 and head.attrs["complete"] is True
    inside = objects_under("runs/over.zarr/tiny")
    generations = {o.split("/")[3] for o in inside if o.count("/") > 3}
    assert generations == {head.attrs["generation"]}  # the half-built one was removed
    stored = head[head.attrs["generation"]]["responsibility"][:]
    assert np.array_equal(stored, old.responsibility)
    new = explain_sync(tiny_image, str(tiny_cnn), store=url, overwrite=True, seed=2, **SMALL)
    head = zarr.open_group(url, mode="r")["tiny"]
    assert head.attrs["settings"]["seed"] == 2
    assert np.array_equal(head[head.attrs["generation"]]["responsibility"][:], new.responsibility)


def _cli(image: Path, model: Path, store: str, env: dict[str, str], *extra: str) -> str:
    """Run the real command; its stderr (it must fail in one line)."""
    command = [str(Path(sys.executable).with_name("rex-stream")), str(image), "--model",
               str(model), "--iters", "1", "--no-extract", "--store", store, *extra]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and FAKE_SECRET not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rex-stream: error:"), done.stderr
    return lines[0]


def test_store_faults_are_one_line_without_secrets(
    s3: str, tiny_cnn: Path, tiny_image: Path
) -> None:
    env = dict(os.environ)
    assert "bucket does not exist" in _cli(tiny_image, tiny_cnn, "s3://nobucket/x.zarr", env)
    unreachable = dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert "Could not connect" in _cli(tiny_image, tiny_cnn, "s3://runs/x.zarr", unreachable)
    partial = ("--storage-option", f"secret={FAKE_SECRET}")
    assert "credentials" in _cli(tiny_image, tiny_cnn, "s3://runs/y.zarr", env, *partial)
    assert "object stores" in _cli(tiny_image, tiny_cnn, "local.zarr", env, *partial)


def test_a_writer_whose_lease_was_taken_over_touches_nothing(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "s3://runs/taken.zarr"
    old = ExplanationStore.open(url, "photo", {"seed": 1}, 2)
    old.commit("ledger", Record(0, np.ones((1, 6))))
    old.finish()
    old.close()
    # every writer judges leases with a zero expiry: the stalled writer's lease is expired
    # at once (as if it had stopped beating a minute ago), and it cannot trust its own beat
    monkeypatch.setattr(object_lease, "STALE_AFTER_S", 0.0)
    stalled = ExplanationStore.open(url, "photo", {"seed": 1}, 2, overwrite=True)
    taker_lease = ObjectGroup.lease_for(parse_store(url), "photo")
    assert taker_lease.try_acquire() is None
    taker_lease.release()
    taker = ExplanationStore.open(url, "photo", {"seed": 1}, 2, overwrite=True)
    taker.commit("ledger", Record(0, np.full((1, 6), 3.0)))
    with pytest.raises(StoreError, match="lost the lease"):
        stalled.finish()
    stalled.close()  # removes nothing of the taker's
    taker.finish()
    taker.close()
    head = zarr.open_group(url, mode="r")["photo"]
    assert head.attrs["complete"] is True
    done = ExplanationStore.open(url, "photo", {"seed": 1}, 2, resume=True)
    try:
        assert np.array_equal(done.committed("ledger")[0].table, np.full((1, 6), 3.0))
    finally:
        done.close()


class _Died(BaseException):
    """Stands for a kill -9 at one step: nothing after it runs."""


def test_a_writer_killed_while_sending_its_result_leaves_no_orphan(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "s3://runs/half.zarr"
    # every writer judges leases with a zero expiry: the dead writer's lease is stale at once
    monkeypatch.setattr(object_lease, "STALE_AFTER_S", 0.0)
    dead = ExplanationStore.open(url, "photo", {"seed": 1}, 2)
    dead.commit("ledger", Record(0, np.ones((1, 6))))
    dead.write_array("responsibility", np.ones((4, 4)), "float32")

    def die(*args: Any, **kwargs: Any) -> None:
        raise _Died

    with monkeypatch.context() as patch:
        patch.setattr(object_store, "write_head", die)
        with pytest.raises(_Died):
            dead.finish()  # the generation and its pack were sent, the head never written
    sent = {o.split("/")[3] for o in objects_under("runs/half.zarr/photo")}
    assert len(sent) == 1 and sent.pop().startswith("g")  # no head: only the generation
    taker = ExplanationStore.open(url, "photo", {"seed": 1}, 2)  # takes the stale lease over
    taker.commit("ledger", Record(0, np.full((1, 6), 2.0)))
    taker.finish()
    taker.close()
    time.sleep(object_lease.RECHECK_S)  # (a writer that stood still this long looks again)
    dead.close()  # its lease was taken over: it writes and removes nothing
    head = zarr.open_group(url, mode="r")["photo"]
    kept = {o.split("/")[3] for o in objects_under("runs/half.zarr/photo")}
    assert kept == {"zarr.json", head.attrs["generation"]}  # the orphan was removed
    records = {o.split("/")[3] for o in objects_under("runs/half.zarr.records/photo")}
    assert records == {head.attrs["generation"]}


def test_evaluation_records_on_s3_resume(
    s3: str, tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    attribution = tmp_path / "map.npy"
    np.save(attribution, np.random.default_rng(0).random((32, 32)))
    store = "s3://runs/eval.zarr"
    command = [str(Path(sys.executable).with_name("rex-stream")), "evaluate", str(tiny_image),
               "--model", str(tiny_cnn), "--attribution", f"rex={attribution}",
               "--metrics", "sparseness,pixel-flipping", "--store", store]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ),
                           timeout=240)  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                           env=dict(os.environ), timeout=240)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "2 resumed" in again.stdout and "2 resumed" not in first.stdout, again.stdout
