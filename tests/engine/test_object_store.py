"""Stores on object storage (issue 25): S3 through moto's server on 127.0.0.1, memory://, and
the refusals of store URLs that are not stores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import BackendError, explain_sync
from rex_stream.engine import object_lease
from rex_stream.engine.object_store import ObjectGroup
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.engine.store_location import parse_storage_options, parse_store
from rex_stream.errors import ConfigError, StoreError, StoreLocked
from tests.engine.s3_server import FAKE_SECRET, make_bucket, moto_s3, objects_under
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
    command = [sys.executable, "-m", "tests.slow_run", str(tiny_cnn), str(tiny_image), url]
    kill_mid_run(command, lambda: _ledger_objects("killed.zarr"), 3, "iteration", 90,
                 cwd=ROOT, env=dict(os.environ))  # fmt: skip
    before = _ledger_objects("killed.zarr")
    assert 3 <= before < SETTINGS["iters"]
    resumed = explain_sync(
        tiny_image, slow_backend(str(tiny_cnn)), store=url, resume=True, **SETTINGS
    )
    assert resumed.stats.resumed_iterations >= 3
    assert np.array_equal(resumed.responsibility, reference)


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
