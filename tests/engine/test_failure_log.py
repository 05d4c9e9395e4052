"""Failure records beside a store: written whole, read back by name, cleared when the input
is explained later; an object store keeps none."""

from __future__ import annotations

from pathlib import Path

from rex_stream.engine.failure_log import (
    clear_failure,
    failures_folder,
    read_failures,
    record_failure,
)


def test_records_are_kept_and_cleared(tmp_path: Path) -> None:
    store = tmp_path / "runs.zarr"
    store.mkdir()
    record_failure(store, "b.png", "photos/b.png", "photos/b.png is not an image\nmore detail")
    record_failure(store, "input/target", "photos/a.png", "")
    folder = failures_folder(store)
    assert folder == tmp_path / "runs.zarr.failures" and folder.is_dir()
    found = read_failures(store)
    assert [(r["name"], r["input"], r["error"]) for r in found] == [
        ("b.png", "photos/b.png", "photos/b.png is not an image"),
        ("input/target", "photos/a.png", "failed"),
    ]
    (folder / "torn.json").write_text('{"name": ')  # a killed writer's half record
    assert len(read_failures(store)) == 2
    clear_failure(store, "b.png")
    clear_failure(store, "never-failed")
    assert [r["name"] for r in read_failures(store)] == ["input/target"]


def test_an_object_store_keeps_no_records() -> None:
    assert failures_folder("s3://bucket/runs.zarr") is None
    record_failure("s3://bucket/runs.zarr", "b.png", "b.png", "unreadable")  # no error
    assert read_failures("s3://bucket/runs.zarr") == []
