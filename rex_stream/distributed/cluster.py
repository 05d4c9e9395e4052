"""Where the Dask cluster is: ``local:N``, ``tcp://host:8786`` or ``scheduler-file:PATH``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rex_stream.engine.install_hint import install_command
from rex_stream.errors import ConfigError, RexStreamError

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

#: How long to wait for a scheduler before saying it is unreachable.
CONNECT_TIMEOUT_S = 10.0


class ClusterError(RexStreamError):
    """The Dask cluster cannot be reached or started."""

    exit_code = 7


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--dask`` value: a local cluster of ``workers`` processes, or an address."""

    workers: int | None = None
    address: str | None = None
    scheduler_file: str | None = None


def require_dask() -> None:
    """Fail with one clear line when the ``dask`` extra is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"--dask needs Dask distributed ({exc.name or exc} is not installed): "
            f"{install_command('dask')}"
        ) from exc


def parse_cluster(text: str) -> ClusterSpec:
    """Parse ``local:N``, ``tcp://host:port`` (or ``tls://``) and ``scheduler-file:PATH``."""
    value = text.strip()
    if value.startswith("local:"):
        count = value.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"--dask {text!r}: local:N needs a number of workers N >= 1")
        return ClusterSpec(workers=int(count))
    if value.startswith(("tcp://", "tls://")):
        host, _, port = value.split("://", 1)[1].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--dask {text!r}: expected tcp://host:port, e.g. tcp://head:8786")
        return ClusterSpec(address=value)
    if value.startswith("scheduler-file:"):
        path = value.split(":", 1)[1]
        if not path:
            raise ConfigError(f"--dask {text!r}: scheduler-file:PATH needs a path")
        return ClusterSpec(scheduler_file=path)
    raise ConfigError(f"--dask {text!r}: expected local:N, tcp://host:port or scheduler-file:PATH")


@contextmanager
def connect(
    spec: ClusterSpec,
    threads_per_worker: int | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> Iterator[Client]:
    """A client of the cluster ``spec`` names (a local one is started here and closed after)."""
    require_dask()
    from distributed import Client, LocalCluster

    if spec.workers is None and threads_per_worker is not None:
        raise ConfigError(
            "--dask-threads applies to local:N; a remote cluster's workers set their own "
            "threads (dask worker --nthreads T)"
        )
    if spec.workers is not None:
        cluster = LocalCluster(
            n_workers=spec.workers,
            threads_per_worker=threads_per_worker or 1,
            processes=True,
            dashboard_address=":0",
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if spec.scheduler_file is not None and not Path(spec.scheduler_file).is_file():
        raise ClusterError(f"Dask scheduler file {spec.scheduler_file} does not exist")
    where = spec.address or f"the scheduler in {spec.scheduler_file}"
    try:
        client = Client(spec.address, scheduler_file=spec.scheduler_file, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {where} within {timeout_s:g} s ({exc})"
        ) from exc
    except ValueError as exc:
        raise ClusterError(f"cannot use the Dask scheduler at {where}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


def has_dashboard() -> bool:
    """Whether Dask's dashboard can be served here (it needs bokeh)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True
