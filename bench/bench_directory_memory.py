"""Peak RSS of directory mode against the number of inputs, and of reading a large CSV.

    python bench/bench_directory_memory.py [--counts 100 900] [--iters 2] [--csv-mb 100]

Each count runs in its own process: ``rex-stream DIR --model fast.onnx --iters N -q`` over a
directory of that many 224 × 224 photos (crops of the shared photos), through the fast
ImageNet-shaped model of ``bench/fast_model.py``; its peak RSS comes from ``getrusage``.
The ratio peak(largest count) ÷ peak(smallest count) is the number to read (target ≤ 1.2).
With ``--csv-mb``, a CSV of that size is read as tabular mode reads it (``read_table``) in a
process of its own, and its peak RSS is printed next to the table's own size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PHOTOS = (
    next(p / "shared" / "data" for p in HERE.parents if (p / "shared" / "data").is_dir()) / "images"
)

CHILD = r"""
import resource, sys
from rex_stream.cli.main import main
code = main(sys.argv[1:])
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(0 if code in (0, None) else code)
"""

CSV_CHILD = r"""
import resource, sys
from pathlib import Path
from rex_stream.modes._table_io import read_table
table = read_table(Path(sys.argv[1]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("SHAPE", table.values.shape, "PEAK", peak)
"""


def make_photos(directory: Path, count: int) -> None:
    """``count`` different 224 × 224 crops of the shared photos."""
    from PIL import Image

    sources = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = sources[i % len(sources)]
        x = int(rng.integers(0, max(1, photo.width - 224)))
        y = int(rng.integers(0, max(1, photo.height - 224)))
        photo.crop((x, y, x + 224, y + 224)).save(directory / f"photo{i:05d}.jpg", quality=90)


def run_directory(model: Path, count: int, iters: int) -> float:
    """Peak RSS (MiB) of one directory run over ``count`` photos."""
    with tempfile.TemporaryDirectory() as tmp:
        make_photos(Path(tmp), count)
        command = [sys.executable, "-c", CHILD, tmp, "--model", str(model), "--iters", str(iters)]
        command += ["--seed", "0", "-q", "--means", "0.485,0.456,0.406"]
        command += ["--stds", "0.229,0.224,0.225"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    peak = [line for line in done.stdout.splitlines() if line.startswith("PEAK")]
    if done.returncode != 0 or not peak:
        raise RuntimeError(f"directory run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return float(peak[0].split()[1])


def run_csv(megabytes: float) -> tuple[float, float]:
    """(file MiB, peak RSS MiB) of reading a CSV of about ``megabytes``."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        columns = 20
        rows = int(megabytes * 2**20 / (columns * 10))
        with open(path, "w") as handle:
            handle.write(",".join(f"c{i}" for i in range(columns)) + "\n")
            for start in range(0, rows, 100_000):
                block = rng.random((min(100_000, rows - start), columns))
                np.savetxt(handle, block, fmt="%.6f", delimiter=",")
        size = path.stat().st_size / 2**20
        done = subprocess.run(
            [sys.executable, "-c", CSV_CHILD, str(path)], capture_output=True, text=True
        )
    line = [x for x in done.stdout.splitlines() if x.startswith("SHAPE")]
    if done.returncode != 0 or not line:
        raise RuntimeError(done.stderr[-2000:])
    return size, float(line[0].split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[100, 900])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--csv-mb", type=float, default=0.0)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from fast_model import save_fast_model

    model = save_fast_model(Path(tempfile.mkdtemp(prefix="fastmodel")) / "fast.onnx")
    peaks = {count: run_directory(model, count, args.iters) for count in args.counts}
    result: dict[str, object] = {f"peak_rss_mib_{c}_inputs": round(p) for c, p in peaks.items()}
    low, high = min(args.counts), max(args.counts)
    result["ratio_largest_over_smallest"] = round(peaks[high] / peaks[low], 3)
    if args.csv_mb > 0:
        size, peak = run_csv(args.csv_mb)
        result["csv_mib"] = round(size)
        result["csv_read_peak_rss_mib"] = round(peak)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
