"""``rex-stream INPUT… --detections FORMAT --dask CLUSTER``: every input's chosen detection(s)
as a task on a Dask cluster, each target's group written by a worker into ``--store``; one
line per input (or a JSON list), exit code 1 when some input failed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError
from rex_stream.runs.detect import DetectionSettings


def run_dask(
    args: argparse.Namespace,
    spec: str,
    config: ExplainConfig,
    settings: BackendSettings,
    detection: DetectionSettings,
    items: list[str],
) -> int:
    """Run on the cluster ``--dask`` names; the store resumes every target of a rerun."""
    from rex_stream.cli.dask_options import checked_cluster

    cluster = checked_cluster(args)
    for flag, value in (("--split-iterations", args.split_iterations), ("--rows", args.rows)):
        if value not in (None, 1):
            raise ConfigError(f"{flag} does not apply to --detections", key=flag)
    sources, names = _inputs(items)
    if args.verbose < 2:  # Dask's own INFO lines only with -vv
        logging.getLogger("distributed").setLevel(logging.WARNING)
    from rex_stream.distributed import InputSummary, connect
    from rex_stream.distributed.detect_tasks import explain_detections_on_cluster

    summaries: list[dict[str, Any]] = []
    failures = 0

    def report(outcome: Any) -> None:
        nonlocal failures
        if not isinstance(outcome, InputSummary):
            failures += 1
            print(f"rex-stream: error: {outcome.error}", file=sys.stderr)
            summaries.append({"input": outcome.source, "error": str(outcome.error)})
            return
        summaries.append(outcome.summary)
        if not args.json:
            print(line(outcome.summary))

    with connect(cluster, args.dask_threads, args.dask_timeout_s) as client:
        done = explain_detections_on_cluster(
            client,
            sources,
            spec,
            config,
            detection,
            store=args.store,
            names=names,
            overwrite=args.overwrite,
            backend_settings=settings,
            inputs_per_task=args.inputs_per_task,
            on_result=report,
        )
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        store = args.store if "://" in args.store else os.path.abspath(args.store)
        print(
            f"{len(sources) - failures} of {len(sources)} inputs explained on "
            f"{len(done.workers)} Dask workers in {done.wall_s:.1f} s; store: {store}"
        )
    return 1 if failures else 0


#: Options that mean something only on a cluster, with their defaults.
CLUSTER_ONLY = {"dask_threads": None, "inputs_per_task": 1, "split_iterations": 1, "rows": None}


def refuse_cluster_only(args: argparse.Namespace) -> None:
    """Without ``--dask`` the cluster options would do nothing: say so in one line."""
    for name, default in CLUSTER_ONLY.items():
        if getattr(args, name, default) != default:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} needs --dask (it spreads work over a Dask cluster)", key=flag
            )


def _inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """The inputs and their store names: one file named as a one-process run names it, a
    directory's files or several files as a directory run names them."""
    from rex_stream.cli.inputs import named_inputs
    from rex_stream.naming import input_name

    if len(items) == 1 and not Path(items[0]).is_dir():
        path = Path(items[0])
        if not path.exists():
            raise ConfigError(f"{path}: no such file or directory")
        return [str(path)], [input_name(path.stem)]
    pairs = named_inputs(items)
    return [s for s, _ in pairs], [n for _, n in pairs]


def line(summary: dict[str, Any]) -> str:
    """One input's line: its targets, each explanation's size, the queries spent."""
    explained = summary.get("explained", [])
    parts = []
    for target in explained:
        area = (target.get("explanation") or {}).get("area")
        size = f"{area:.1%}" if area is not None else "no explanation"
        parts.append(f"#{target['detection']} class {target['class']} ({size})")
    queries = sum(int(t.get("stats", {}).get("queries", 0)) for t in explained)
    return f"{summary.get('input')}: {'; '.join(parts) or 'nothing explained'}, {queries} queries"
