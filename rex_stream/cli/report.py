"""``rex-stream report STORE… --output report.html``: one self-contained HTML page of every
result in the stores; ``--watch SECONDS`` rewrites it while a job runs."""

from __future__ import annotations

import argparse
import json
import sys

from rex_stream.cli.parser import OneLineParser
from rex_stream.engine.store_location import parse_storage_options, remember_storage_options
from rex_stream.errors import ConfigError
from rex_stream.report import ReportOptions, parse_filters, watch, write_report
from rex_stream.report.reading import RUNNING


def build_parser() -> argparse.ArgumentParser:
    """The ``report`` sub-command's arguments."""
    parser = OneLineParser(
        prog="rex-stream report",
        description="One self-contained HTML page (pictures, scripts and styles inline) of "
        "every result in rex-stream stores: explanations, evaluations, CEM and L2X.",
    )
    parser.add_argument(
        "stores",
        nargs="+",
        help="rex-stream stores (.zarr), any methods: folders, or object store URLs "
        "(s3://bucket/runs.zarr; see docs/object-stores.md)",
    )
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the object stores' filesystem (repeatable; s3fs: endpoint_url=…, "
        "client_kwargs.region_name=…); credentials come from the environment",
    )
    parser.add_argument("--output", "-o", required=True, help="the HTML file to write")
    parser.add_argument("--limit", type=int, help="show at most N inputs (after --filter)")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="class=N|NAME or status=explained|failed|running (repeatable)",
    )
    parser.add_argument(
        "--summary",
        action="append",
        default=[],
        metavar="FILE.json",
        help="a run's --json output: its failed inputs with their reason (for runs that kept "
        "no failure records beside the store)",
    )
    parser.add_argument("--labels", help="class names, one per line (line i names class i)")
    parser.add_argument("--page-size", type=int, default=200, help="cards per page (200)")
    parser.add_argument("--picture-size", type=int, default=224, help="card pictures (px)")
    parser.add_argument("--title", default="", help="the page's title")
    parser.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="rewrite the report every SECONDS until no input is running (Ctrl-C stops)",
    )
    parser.add_argument("--json", action="store_true", help="a summary on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


def remember_options(stores: list[str], pairs: list[str]) -> None:
    """Check every object store's URL (one line for an unknown scheme or a missing library)
    and give each the ``--storage-option`` s; refused when no store is an object store."""
    options = parse_storage_options(pairs)
    remote = [store for store in stores if "://" in store]
    locations = [remember_storage_options(store, options) for store in remote]
    if options and not any(not location.is_local for location in locations):
        raise ConfigError(
            "--storage-option is for object stores (s3://…), not a local folder",
            key="--storage-option",
        )


def run(argv: list[str]) -> int:
    """Write the report (once, or again every ``--watch`` seconds)."""
    args = build_parser().parse_args(argv)
    for name in ("limit", "page_size", "picture_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if args.watch is not None and args.watch <= 0:
        raise ConfigError(f"--watch must be a positive number of seconds, not {args.watch}")
    remember_options(args.stores, args.storage_option)
    options = ReportOptions(
        limit=args.limit,
        filters=parse_filters(args.filter),
        page_size=args.page_size,
        picture_size=args.picture_size,
        title=args.title,
    )
    show = not args.quiet and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show and (done == total or done % 50 == 0):
            end = "\n" if done == total else ""
            print(f"\rreport: {done}/{total} inputs drawn", end=end, file=sys.stderr, flush=True)

    summary = None

    def write() -> None:
        nonlocal summary
        summary = write_report(
            args.stores,
            args.output,
            options,
            summaries=args.summary,
            labels=args.labels,
            progress=progress,
        )
        if not args.quiet:
            counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n)
            print(
                f"rex-stream: report {args.output}: {summary.shown} of {summary.inputs} inputs "
                f"({counts}), {summary.bytes / 1e6:.1f} MB",
                file=sys.stderr,
            )

    def finished() -> bool:
        return summary is not None and summary.counts.get(RUNNING, 0) == 0

    if args.watch is None:
        write()
    else:
        watch(write, args.watch, until=finished)
    if args.json and summary is not None:
        print(json.dumps(summary.__dict__, indent=2))
    return 0
