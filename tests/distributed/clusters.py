"""A real Dask LocalCluster of worker processes, and a client to it, for the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dask.distributed import Client, LocalCluster


@contextmanager
def two_workers(threads: int = 2) -> Iterator[Client]:
    """A client to 2 worker processes of ``threads`` threads each (closed after)."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=threads, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
