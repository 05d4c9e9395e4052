"""``--dask``: explain a directory (or one huge input) on a Dask cluster into a shared store.

``add_arguments`` adds the options; ``run`` takes over the run when ``--dask`` is given (and
refuses the cluster-only options without it), returning the exit code, or None to let the
one-process run go on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rex_stream.cli import rex_options
from rex_stream.cli.terminal import TerminalProgress
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError

if TYPE_CHECKING:
    from rex_stream.distributed.cluster import ClusterSpec
    from rex_stream.distributed.driver import Outcome

#: Options that mean something only on a cluster, with their defaults.
_CLUSTER_ONLY = {"dask_threads": None, "split_iterations": 1, "inputs_per_task": 1, "rows": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Dask options."""
    group = parser.add_argument_group("Dask cluster (pip install 'rex-stream[dask]')")
    group.add_argument(
        "--dask",
        metavar="CLUSTER",
        help="run on Dask: local:N (N worker processes here), tcp://host:8786 or "
        "scheduler-file:PATH; maps go to --store, which every worker must see",
    )
    group.add_argument(
        "--dask-threads",
        type=int,
        metavar="T",
        help="local:N only: threads (inputs at once, sharing batches) per worker (default 1)",
    )
    group.add_argument(
        "--split-iterations",
        type=int,
        default=1,
        metavar="K",
        help="spread each input's iterations over K tasks (huge inputs; not adaptive)",
    )
    group.add_argument(
        "--inputs-per-task",
        type=int,
        default=1,
        metavar="N",
        help="tiny inputs: N inputs per task (default 1)",
    )
    group.add_argument(
        "--rows",
        metavar="all|A:B|N",
        help="a table file: every row in the range is an input of its own (group "
        "<file>__row<N>); use with --inputs-per-task",
    )
    group.add_argument(
        "--dask-timeout-s",
        type=float,
        default=10.0,
        help="how long to wait for the Dask scheduler (default 10)",
    )


def run(
    args: argparse.Namespace, spec: str, config: ExplainConfig, settings: BackendSettings
) -> int | None:
    """Run on the cluster ``--dask`` names; None when there is no ``--dask``."""
    if not args.dask:
        for name, default in _CLUSTER_ONLY.items():
            if getattr(args, name) != default:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{flag} needs --dask (it spreads work over a Dask cluster)", key=flag
                )
        return None
    cluster = checked_cluster(args)
    if isinstance(args.filename, list):  # several inputs: named as a directory run names them
        from rex_stream.cli.inputs import named_inputs

        named = named_inputs(args.filename)
        sources, names = [source for source, _ in named], [name for _, name in named]
    else:
        sources, names = _inputs(Path(args.filename), args.rows, config)
    return _run(args, cluster, spec, config, settings, sources, names)


def checked_cluster(args: argparse.Namespace) -> ClusterSpec:
    """The cluster ``--dask`` names, once the flags every cluster run needs are checked
    (a shared ``--store``, no pictures, sane timeouts) and Dask is installed."""
    from rex_stream.distributed.cluster import parse_cluster, require_dask

    cluster = parse_cluster(args.dask)
    if not args.store:
        raise ConfigError(
            "--dask needs --store: the workers write every map to a shared store", key="--dask"
        )
    if args.output or args.heatmap:
        raise ConfigError(
            "--output/--heatmap are not drawn on a cluster: the maps are in --store "
            "(draw them afterwards with a one-process --resume run)",
            key="--output" if args.output else "--heatmap",
        )
    if not 0 < args.dask_timeout_s < float("inf"):
        raise ConfigError(
            f"--dask-timeout-s {args.dask_timeout_s:g}: must be a number > 0",
            key="--dask-timeout-s",
        )
    if args.dask_threads is not None and args.dask_threads < 1:
        raise ConfigError(f"--dask-threads {args.dask_threads}: must be >= 1", key="--dask-threads")
    require_dask()
    return cluster


def _inputs(path: Path, rows: str | None, config: ExplainConfig) -> tuple[list[str], list[str]]:
    """A directory's inputs (named as a directory run names them), the rows of a table, or
    one file."""
    from rex_stream.cli.inputs import directory_inputs
    from rex_stream.distributed.inputs import names_for, row_sources
    from rex_stream.naming import input_name

    if path.is_dir():
        if rows is not None:
            raise ConfigError("--rows takes a table file, not a directory", key="--rows")
        found = directory_inputs(path)
        return [str(p) for p in found], [input_name(p.relative_to(path)) for p in found]
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if rows is None:
        return [str(path)], [input_name(path.stem)]  # as a plain run names it
    from rex_stream.modes.tabular import count_rows

    sources = row_sources(path, rows, count_rows(path, config))
    return sources, names_for(sources)


def _run(
    args: argparse.Namespace,
    cluster: Any,
    spec: str,
    config: ExplainConfig,
    settings: BackendSettings,
    sources: list[str],
    names: list[str],
) -> int:
    from rex_stream.distributed import InputSummary, connect, explain_on_cluster
    from rex_stream.distributed.cluster import has_dashboard

    show = not args.quiet and sys.stderr.isatty()
    if args.verbose < 2:  # Dask's own INFO lines (scheduler, nannies) only with -vv
        logging.getLogger("distributed").setLevel(logging.WARNING)
    failures = 0
    summaries: list[dict[str, Any]] = []

    with connect(cluster, args.dask_threads, args.dask_timeout_s) as client, _quiet_if_stopped():
        if not args.quiet and has_dashboard() and client.dashboard_link:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        with _Bar(show, len(sources)) as bar:

            def report(outcome: Outcome) -> None:
                nonlocal failures
                bar.advance()
                if not isinstance(outcome, InputSummary):
                    failures += 1
                    print(f"rex-stream: error: {outcome.error}", file=sys.stderr)
                    summaries.append({"input": outcome.source, "error": str(outcome.error)})
                    return
                rex_options.name_summary(args, outcome.summary)
                summaries.append(outcome.summary)
                if not args.json:
                    print(_line(outcome.summary))

            report_ = explain_on_cluster(
                client,
                sources,
                spec,
                config,
                store=args.store,
                names=names,
                overwrite=args.overwrite,
                backend_settings=settings,
                inputs_per_task=args.inputs_per_task,
                split_iterations=args.split_iterations,
                on_result=report,
            )
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        skipped = sum(1 for s in summaries if s.get("skipped"))
        note = f" ({skipped} already complete in the store)" if skipped else ""
        print(
            f"{len(sources) - failures} of {len(sources)} inputs explained{note} on "
            f"{len(report_.workers)} Dask workers in {report_.wall_s:.1f} s; store: "
            f"{args.store if '://' in args.store else os.path.abspath(args.store)}"
        )
    return 1 if failures else 0


@contextmanager
def _quiet_if_stopped() -> Iterator[None]:
    """On Ctrl-C or SIGTERM, silence the connection errors of a cluster being torn down: the
    user stopped the run, and the store resumes it."""
    try:
        yield
    except BaseException as stop:
        if not isinstance(stop, Exception):
            for name in ("distributed", "asyncio", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        raise


def _line(summary: dict[str, Any]) -> str:
    target = summary.get("target", {})
    explanation = summary.get("explanation")
    area = f", explanation {explanation['area']:.1%}" if explanation else ""
    queries = 0 if summary.get("skipped") else summary.get("stats", {}).get("queries", 0)
    done = " (already complete)" if summary.get("skipped") else ""
    named = f"{target['label']} ({target.get('class')})" if target.get("label") else ""
    return (
        f"{summary.get('input')}: {named or 'class ' + str(target.get('class'))} "
        f"({float(target.get('confidence', 0.0)):.3f}){area}, {queries} queries{done}"
    )


class _Bar(TerminalProgress):
    """A rich progress bar of finished inputs on stderr."""

    def __init__(self, enabled: bool, total: int) -> None:
        super().__init__(enabled)
        if self.progress is not None:
            self._task = self.progress.add_task("inputs", total=total)

    def columns(self) -> list[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

        return ["inputs on Dask", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self._task)
