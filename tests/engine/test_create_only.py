"""A filesystem that overwrites an object written create-only is refused in one line before
any lease is taken; one that honours it (S3 through moto, memory://) passes, probed once."""

from __future__ import annotations

from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from rex_stream.engine import create_only
from rex_stream.engine.object_lease import ObjectLease
from rex_stream.errors import StoreError
from tests.engine.s3_server import make_bucket, moto_s3


class Overwriting(MemoryFileSystem):
    """A memory filesystem that drops ``mode`` as some fsspec filesystems do."""

    protocol = "overwriting"

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        super().pipe_file(path, value, mode="overwrite", **kw)


def test_a_filesystem_ignoring_create_only_is_refused_before_any_lease() -> None:
    fs = Overwriting()
    lease = ObjectLease(fs, "/runs.zarr.locks/photo", "photo")
    with pytest.raises(StoreError, match="overwrote an object written create-only"):
        lease.acquire()
    assert not fs.find("/runs.zarr.locks")  # no lease taken, the probe removed


def test_honouring_filesystems_pass_and_are_probed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[str] = []
    real = create_only.require_create_only

    def counted(fs: Any, folder: str) -> None:
        before = len(create_only._honoured)
        real(fs, folder)
        if len(create_only._honoured) > before:
            probes.append(folder)

    monkeypatch.setattr("rex_stream.engine.object_lease.require_create_only", counted)
    with moto_s3():
        make_bucket("probe")
        fs = fsspec.filesystem("s3", use_listings_cache=False)
        for key in ("a", "b"):
            lease = ObjectLease(fs, f"probe/runs.zarr.locks/{key}", key)
            lease.acquire()
            lease.release()
        assert [p for p in probes if p.startswith("probe/")] == ["probe/runs.zarr.locks/a"]
        assert not [n for n in fs.find("probe") if ".create-only-" in n]
    memory = fsspec.filesystem("memory")
    lease = ObjectLease(memory, "/probe-memory.zarr.locks/a", "a")
    lease.acquire()
    lease.release()
