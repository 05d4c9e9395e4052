"""Report of a large store: build time, file size and headless-Chromium load time.

A real directory run (tiny CNN, real photos) gives a few groups; they are copied to N groups
(each keeps its photo as source), then ``write_report`` builds the page and Debian's Chromium
opens it. Prints the ratios to the targets (build ≤ 30 s for 1 000 inputs, file ≤ 50 MB, load
≤ 5 s); load is also given against Chromium opening an empty page.

    .venv/bin/python bench/bench_report.py --inputs 1000 2000
"""

from __future__ import annotations

import argparse
import contextlib
import io
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


def open_s(page: Path) -> float:
    """Seconds Chromium takes to load ``page``, run its script and draw the first screen."""
    started = time.perf_counter()
    shot = page.with_suffix(".png")
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return time.perf_counter() - started


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, nargs="+", default=[1000])
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
        baseline = min(open_s(empty) for _ in range(2))
        for count in args.inputs:
            store = folder / f"n{count}.zarr"
            shutil.copytree(base, store, ignore=shutil.ignore_patterns("*.locks"))
            for number in range(count - len(keys)):
                key = keys[number % len(keys)]
                shutil.copytree(base / key, store / f"copy{number:05d}-{key}")
            page = folder / f"n{count}.html"
            started = time.perf_counter()
            summary = write_report([store], page, ReportOptions())
            build = time.perf_counter() - started
            load = min(open_s(page) for _ in range(2))
            mb = summary.bytes / 1e6
            print(
                f"{count} inputs: build {build:.1f} s (÷ 30 s target = {build / 30:.2f}), "
                f"{mb:.1f} MB (÷ 50 MB = {mb / 50:.2f}), Chromium load {load:.2f} s "
                f"(÷ 5 s = {load / 5:.2f}; "
                f"÷ an empty page's {baseline:.2f} s = {load / baseline:.1f})"
            )


if __name__ == "__main__":
    main_bench()
