"""Meta-evaluation (MetaQuantus' input- or model-perturbation test) of 3 metrics × 10 photos
on the shared EfficientNet-Lite0, uninterrupted and then killed with SIGKILL part way and resumed.

    python bench/bench_meta.py [--iterations 2] [--perturbations 2] [--kill-at 0.4]
    python bench/bench_meta.py --test model [--explainer rex:iters=2] [--photos 4]

With ``--test model`` the methods are one ``--explainer`` re-explaining every photo under every
noisy model (a unit is one photo under one noisy model) instead of the two stored maps.

The 10 photos are the 7 of ``../shared/data/images`` and mirror images of three of them; the
two attributions are a centred Gaussian and its complement (the same maps for every photo).
Every run is ``rex-stream evaluate DIR --meta …`` in a subprocess: first without a store, then
with ``--store`` (killed with SIGKILL once ``--kill-at`` of the noisy copies are committed), then
``--resume``. It prints IAC/IEC/MC per metric, wall times, queries, and whether the resumed run
equals the uninterrupted one exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.exists():
    SHARED = Path("/work/shared/data")
MODEL = SHARED / "models" / "efficientnet-lite0.onnx"
IMAGES = SHARED / "images"
MIRRORED = ("dog.jpg", "ladybird.jpg", "peacock.jpg")
METRICS = "pixel-flipping:features_in_step=6272,selectivity:patch_size=56,faithfulness-correlation:nr_runs=10:subset_size=3136"  # noqa: E501


def prepare(folder: Path, count: int = 10) -> tuple[Path, dict[str, Path]]:
    """The first ``count`` of the 10 photos and the two maps, written into ``folder``."""
    photos = folder / "photos"
    photos.mkdir()
    for path in sorted(p for p in IMAGES.iterdir() if p.suffix in (".jpg", ".png")):
        Image.open(path).convert("RGB").save(photos / f"{path.stem}.png")
    for name in MIRRORED:
        image = Image.open(IMAGES / name).convert("RGB")
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            photos / f"{Path(name).stem}-mirrored.png"
        )
    for extra in sorted(photos.iterdir())[count:]:
        extra.unlink()
    yy, xx = np.mgrid[:224, :224]
    centre = np.exp(-((yy - 111.5) ** 2 + (xx - 111.5) ** 2) / (2 * 40.0**2)).astype(np.float32)
    maps = {"centre": folder / "centre.npy", "ring": folder / "ring.npy"}
    np.save(maps["centre"], centre)
    np.save(maps["ring"], (1.0 - centre).astype(np.float32))
    return photos, maps


def command(photos: Path, maps: dict[str, Path], args: argparse.Namespace) -> list[str]:
    """The rex-stream evaluate command line of the meta-evaluation."""
    line = [sys.executable, "-m", "rex_stream.cli", "evaluate", str(photos), "--model", str(MODEL)]
    line += ["-c", str(ROOT / "docs" / "imagenet.toml"), "--metrics", METRICS, "--meta"]
    if args.test == "model":
        line += ["model", "--explainer", args.explainer]
    else:
        for name, path in maps.items():
            line += ["--attribution", f"{name}={path}"]
    line += [
        "--meta-iterations",
        str(args.iterations),
        "--meta-perturbations",
        str(args.perturbations),
    ]
    return [*line, "--seed", "0", "--json", "-q"]


def committed_copies(store: Path) -> int:
    """Noisy copies whose record was committed, over all photos."""
    return sum(
        '"committed": true' in meta.read_text(errors="ignore")
        for meta in store.glob("*/meta-copy/*/zarr.json")
    )


def timed(line: list[str]) -> tuple[dict, float]:
    """Run a command to the end; its JSON and wall time."""
    started = time.perf_counter()
    done = subprocess.run(line, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout), time.perf_counter() - started


def killed(line: list[str], store: Path, copies: int) -> tuple[int, float]:
    """Run until ``copies`` copies are committed, then SIGKILL; (committed, wall time)."""
    started = time.perf_counter()
    # a SIGKILL leaves temporary files (noisy models) behind: keep them beside the store
    env = {**os.environ, "TMPDIR": str(store.parent)}
    process = subprocess.Popen(line, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
    try:
        while committed_copies(store) < copies:
            if process.poll() is not None:
                raise SystemExit("the run ended before it could be killed: lower --kill-at")
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return committed_copies(store), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--perturbations", type=int, default=2)
    parser.add_argument("--kill-at", type=float, default=0.4, help="share of copies committed")
    parser.add_argument("--test", choices=("input", "model"), default="input")
    parser.add_argument("--explainer", default="rex:iters=2", help="--test model's method")
    parser.add_argument("--photos", type=int, default=10, help="how many of the 10 photos")
    args = parser.parse_args()
    key = f"{args.test}_perturbation_test"
    with tempfile.TemporaryDirectory() as folder:
        photos, maps = prepare(Path(folder), args.photos)
        line = command(photos, maps, args)
        total = len(list(photos.iterdir())) * 2 * args.iterations * args.perturbations
        full, full_s = timed(line)
        store = Path(folder) / "meta.zarr"
        stored = [*line, "--store", str(store)]
        before, killed_s = killed(stored, store, max(1, int(args.kill_at * total)))
        resumed, resumed_s = timed([*stored, "--resume"])
    identical = resumed[key] == full[key]
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"metrics: {METRICS}")
    methods = f"explainer {args.explainer}" if args.test == "model" else "attributions 2"
    units = "photos under noisy models" if args.test == "model" else "noisy copies"
    print(
        f"{key}: photos {args.photos}, {methods}, iterations {args.iterations}, perturbations "
        f"{args.perturbations} ({total} {units})\n"
    )
    print("| metric | IAC_NR | IAC_AR | IEC_NR | IEC_AR | MC | MC_std |")
    print("|---|---|---|---|---|---|---|")
    for label, values in full[key].items():
        shown = " | ".join(f"{values[k]:.3f}" for k in ("IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR"))
        print(f"| {label} | {shown} | {values['MC']:.3f} | {values['MC_std']:.3f} |")
    print(
        f"\nuninterrupted: {full['queries']} queries in {full['calls']} calls, {full_s:.1f} s; "
        f"killed after {killed_s:.1f} s with {before}/{total} copies committed; resumed: "
        f"{resumed['resumed']} units read back, {resumed['queries']} queries, {resumed_s:.1f} s; "
        f"resume identical: {identical}"
    )
    if not identical:
        raise SystemExit("the resumed run differs from the uninterrupted one")


if __name__ == "__main__":
    main()
