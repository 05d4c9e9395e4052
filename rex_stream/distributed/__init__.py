"""Scale-out on Dask distributed (the optional extra ``rex-stream[dask]``).

One engine (backend + scheduler) per worker process, one input (or a shard of tiny inputs) per
task, maps written by the workers into one shared Zarr store, small summaries back to the
driver. Importing this package needs ``dask[distributed]``.
"""

from __future__ import annotations

from rex_stream.distributed.cluster import ClusterError, ClusterSpec, connect, parse_cluster
from rex_stream.distributed.driver import (
    ClusterReport,
    InputSummary,
    explain_on_cluster,
    iteration_ranges,
)

__all__ = [
    "ClusterError",
    "ClusterReport",
    "ClusterSpec",
    "InputSummary",
    "connect",
    "explain_on_cluster",
    "iteration_ranges",
    "parse_cluster",
]
