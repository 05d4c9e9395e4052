"""Report of a large store: build time, file size and headless-Chromium load time.

A real directory run (tiny CNN, real photos) gives a few groups; they are copied to N groups
(each keeps its photo as source), then ``write_report`` builds the page and Debian's Chromium
opens it. One line per N: build seconds, file MB and Chromium load seconds side by side, each
with its ratio to the target (build ≤ 30 s for 1 000 inputs, file ≤ 50 MB, load ≤ 5 s).

Load is given two ways: the page's own time from the start of navigation to its first page of
rows and cards drawn by its script (``performance.now()``, logged with ``#timing=1``), and the
whole Chromium process (start, load, script, screenshot) beside the same for an empty page.
The load average (``uptime``) is printed with every line: times on a busy machine are inflated.

    .venv/bin/python bench/bench_report.py --inputs 1000 2000
    .venv/bin/python bench/bench_report.py --inputs 300 --profile   # cProfile of the build
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rex_stream.cli.main import main  # noqa: E402
from rex_stream.report import ReportOptions, write_report  # noqa: E402
from tests.onnx_models import save_tiny_cnn  # noqa: E402

PHOTOS = [
    ROOT / "rex_stream" / "data" / "ladybird.jpg",
    *sorted(Path("/work/shared/data/images").glob("*.jpg")),
]


def open_s(page: Path) -> tuple[float, float | None]:
    """(seconds the Chromium process takes to load ``page``, run its script and draw the first
    screen; milliseconds the page's script says it was ready after, None for a page without
    the report's script)."""
    started = time.perf_counter()
    shot = page.with_suffix(".png")
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri() + "#timing=1",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    wall = time.perf_counter() - started
    found = re.search(r"report ready after (\d+) ms", done.stderr)
    return wall, float(found.group(1)) if found else None


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (the drawing processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_average() -> str:
    """The 1-minute load average, as ``uptime`` gives it."""
    return f"{os.getloadavg()[0]:.1f}"


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, nargs="+", default=[1000])
    parser.add_argument("--workers", type=int, help="drawing processes (default: one per core)")
    parser.add_argument("--profile", action="store_true", help="cProfile the build (top 25)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder_text:
        folder = Path(folder_text)
        photos = folder / "photos"
        photos.mkdir()
        for photo in PHOTOS:
            if photo.is_file():
                shutil.copy(photo, photos)
        model = save_tiny_cnn(folder / "tiny.onnx", size=32, classes=10)
        base = folder / "base.zarr"
        with contextlib.redirect_stdout(io.StringIO()):
            main(
                [
                    str(photos),
                    "--model",
                    str(model),
                    "--iters",
                    "2",
                    "--multi",
                    "3",
                    "--store",
                    str(base),
                    "-q",
                ]
            )
        keys = sorted(zarr.open_group(str(base), mode="r").group_keys())
        empty = folder / "empty.html"
        empty.write_text("<!DOCTYPE html><html><body>x</body></html>")
        baseline = min(open_s(empty)[0] for _ in range(2))
        for count in args.inputs:
            store = folder / f"n{count}.zarr"
            shutil.copytree(base, store, ignore=shutil.ignore_patterns("*.locks"))
            for number in range(count - len(keys)):
                key = keys[number % len(keys)]
                shutil.copytree(base / key, store / f"copy{number:05d}-{key}")
            page = folder / f"n{count}.html"
            before = load_average()
            profile = cProfile.Profile() if args.profile else None
            started, cpu = time.perf_counter(), cpu_s()
            if profile is not None:
                profile.enable()
            summary = write_report([store], page, ReportOptions(workers=args.workers))
            build, cpu = time.perf_counter() - started, cpu_s() - cpu
            if profile is not None:
                profile.disable()
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
            during = load_average()
            opened = [open_s(page) for _ in range(2)]
            load = min(wall for wall, _ in opened)
            ready = min((ms for _, ms in opened if ms is not None), default=float("nan")) / 1e3
            mb = summary.bytes / 1e6
            print(
                f"{count} inputs: build {build:.1f} s (÷ 30 s = {build / 30:.2f}; "
                f"{cpu:.1f} CPU s) | "
                f"{mb:.1f} MB (÷ 50 MB = {mb / 50:.2f}) | Chromium load: page ready "
                f"{ready:.2f} s (÷ 5 s = {ready / 5:.2f}), process {load:.2f} s (empty page "
                f"{baseline:.2f} s) | load average {before} before the build, {during} after, "
                f"{load_average()} after loading"
            )


if __name__ == "__main__":
    main_bench()
