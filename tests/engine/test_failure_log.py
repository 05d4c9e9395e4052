"""Failure records beside a store: written whole, read back by name, cleared when the input
is explained later; on a local store and on an object store (S3 through moto)."""

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


def test_an_object_store_keeps_its_records_beside_it(tmp_path: Path, tiny_cnn: Path) -> None:
    import anyio

    from rex_stream.config import ExplainConfig
    from rex_stream.runs.many import explain_many
    from tests.engine.s3_server import make_bucket, moto_s3, objects_under

    with moto_s3():
        make_bucket("fails")
        store = "s3://fails/runs.zarr"
        assert failures_folder(store) is None  # no local folder for it
        record_failure(store, "input/target", "photos/a.png", "")
        assert objects_under("fails/runs.zarr.failures") == [
            "fails/runs.zarr.failures/input%2Ftarget.json"
        ]
        # a directory run to the bucket records the input it could not read
        good, bad = tmp_path / "good.png", tmp_path / "bad.png"
        _picture(good)
        bad.write_bytes(b"not a picture")
        config = ExplainConfig().with_overrides(iters=2, seed=1, min_box_size=8)
        anyio.run(lambda: explain_many([good, bad], str(tiny_cnn), config, store=store))
        found = {r["name"]: r for r in read_failures(store)}
        assert sorted(found) == ["bad.png", "input/target"]
        assert found["bad.png"]["input"] == str(bad) and found["bad.png"]["error"]
        clear_failure(store, "bad.png")
        clear_failure(store, "never-failed")
        assert [r["name"] for r in read_failures(store)] == ["input/target"]


def _picture(path: Path) -> None:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
