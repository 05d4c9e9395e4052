"""An S3-compatible server on 127.0.0.1 for the object-store tests: moto's server mode, as
zarr-python's own tests use it (skipped with a reason when moto or s3fs is not installed)."""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

#: What the tests put in the environment (the standard AWS variables, fake credentials).
FAKE_KEY, FAKE_SECRET = "testing-key-id", "testing-secret-never-shown"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_s3() -> Iterator[str]:
    """Start moto's S3 on a free local port with the AWS environment pointing to it; yields
    the endpoint URL."""
    pytest.importorskip("s3fs", reason="object-store tests need rex-stream[s3] (s3fs)")
    server_module = pytest.importorskip("moto.server", reason="needs moto[server]")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets per process, not per server: start every server empty, so one
    # test module's buckets never meet another's
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    saved = {k: os.environ.get(k) for k in _ENVIRONMENT}
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": FAKE_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)


def make_bucket(name: str) -> None:
    """Create a bucket on the running server."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(name)


def objects_under(prefix: str) -> list[str]:
    """Every object below ``bucket/prefix`` (fresh listing)."""
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    try:
        return sorted(fs.find(prefix))
    except FileNotFoundError:
        return []
    finally:  # a listing left cached would make later reads in this process miss new objects
        fs.invalidate_cache()
