"""Multiple explanations: ReX 0.4.1's ``--multi`` against rex-stream's, in one run.

1. The peacock photo, EfficientNet-Lite0, 20 iterations, seed 42, ReX's defaults (10
   spotlights, permitted overlap 0, batch 64 for ReX): ReX runs in its own venv
   (``bench/rex_multi_runner.py``), rex-stream in this process through its ONNX adapter.
   Reported: explanations kept, how many of them are disjoint AND sufficient when checked
   independently (each mask applied to the input, the model queried once through
   onnxruntime here, for both tools alike), model queries, calls and wall time (map +
   extraction; model loading and the target prediction excluded for ReX, included for us);
   for rex-stream also its dependent round trips, mean batch and CPU seconds of this
   process (onnxruntime's threads included), which do not depend on the machine's load.
2. ≥ 10 photos (ReX's sample photos from ../shared/data/images plus scikit-image's bundled
   photos, exported by ReX's venv, which has scikit-image): rex-stream only; the share of
   photos with ≥ 2 disjoint, independently sufficient explanations.

Run with rex-stream's interpreter:
``.venv/bin/python bench/bench_multi.py --rex-python .venv-rex/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import onnxruntime as ort

from rex_stream import BackendSettings, explain, open_backend
from rex_stream.modes import load_subject
from rex_stream.rex_compat.config_file import load_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = next(
    (p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data",
)
MODEL = ROOT / "rex_stream" / "data" / "efficientnet-lite0.onnx"
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")

EXPORT = """
import sys
from pathlib import Path
from PIL import Image
from skimage import data
for name in sys.argv[2:]:
    Image.fromarray(getattr(data, name)()).convert("RGB").save(Path(sys.argv[1]) / f"{name}.png")
"""


def check(
    image: Path, masks: list[np.ndarray], target: int, config: Any, session: ort.InferenceSession
) -> tuple[int, int]:
    """(sufficient, disjoint-and-sufficient) among ``masks``: each mask shown alone on the
    preprocessed input (rest at the mask value), one onnxruntime query each."""
    from rex_stream.engine.backend import ModelInfo

    shape = tuple(session.get_inputs()[0].shape[1:])
    info = ModelInfo(name="check", input_name=session.get_inputs()[0].name, input_shape=shape)
    subject = load_subject(str(image), info, config)
    batch = np.empty((len(masks), *subject.tensor.shape), subject.tensor.dtype)
    for row, mask in zip(batch, masks):
        subject.fill_mask(row, mask)
    name = session.get_inputs()[0].name
    classes = session.run(None, {name: batch})[0].argmax(axis=1) if masks else []
    sufficient = [m for m, c in zip(masks, classes) if int(c) == target]
    overlapping = any((a & b).any() for i, a in enumerate(sufficient) for b in sufficient[i + 1 :])
    return len(sufficient), 0 if overlapping else len(sufficient)


async def ours(image: Path, options: argparse.Namespace, config: Any) -> dict[str, Any]:
    """rex-stream's multi explanation of ``image`` through an already opened ONNX backend."""
    backend = await open_backend(str(options.model), BackendSettings(max_inflight=2))
    try:
        started, cpu = time.perf_counter(), time.process_time()
        result = await explain(str(image), backend, config)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await backend.aclose()
    assert result.multi is not None
    return {
        "target": result.target.classification,
        "kept": [e.mask for e in result.multi.kept],
        "found": len(result.multi.found),
        "queries": result.stats.queries,
        "calls": result.stats.calls,
        "wall_s": wall,
        "cpu_s": cpu,
        "round_trips": result.stats.round_trips,
        "mean_batch": result.stats.mean_batch,
    }


def theirs(image: Path, options: argparse.Namespace, out: Path) -> dict[str, Any]:
    """ReX 0.4.1's multi explanation of ``image`` (its own venv, a subprocess)."""
    command = [
        options.rex_python,
        str(HERE / "rex_multi_runner.py"),
        str(image),
        "--model",
        str(options.model),
        "--config",
        str(options.config),
        "--iters",
        str(options.iters),
        "--seed",
        str(options.seed),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ReX failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    masks = np.load(out)
    record["kept"] = [masks[f"arr_{i}"] for i in record["kept"]]
    return record


def main() -> None:
    """Command line: see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rex-python", required=True, help="python of a ReX 0.4.1 venv")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--config", type=Path, default=HERE / "rex-imagenet.toml")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-rex", action="store_true", help="only rex-stream")
    parser.add_argument("--photos", action="store_true", help="also the ≥ 10-photo share")
    options = parser.parse_args()
    config = load_config(options.config).with_overrides(
        iters=options.iters, seed=options.seed, strategy="multi", spotlights=10
    )
    session = ort.InferenceSession(str(options.model))
    peacock = DATA / "images" / "peacock.jpg"
    work = Path(tempfile.mkdtemp(prefix="bench_multi_"))
    rows = []
    stream = anyio.run(ours, peacock, options, config)
    rows.append(("rex-stream", stream))
    if not options.skip_rex:
        rows.append(("ReX 0.4.1", theirs(peacock, options, work / "rex.npz")))
    print(f"peacock, {options.iters} iterations, seed {options.seed}, 10 spotlights, overlap 0")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    columns = "tool|kept|disjoint & sufficient|queries|calls|round trips|mean batch|CPU s|wall s"
    print(f"| {columns.replace('|', ' | ')} |\n" + "|---" * (columns.count("|") + 1) + "|")
    for name, record in rows:
        _, disjoint = check(peacock, record["kept"], record["target"], config, session)
        cpu = f"{record['cpu_s']:.1f}" if "cpu_s" in record else "-"
        print(
            f"| {name} | {len(record['kept'])} | {disjoint} | {record['queries']} | "
            f"{record['calls']} | {record.get('round_trips', '-')} | "
            f"{record.get('mean_batch', '-')} | {cpu} | {record['wall_s']:.1f} |",
            flush=True,
        )
    if len(rows) == 2:
        us, them = rows[0][1], rows[1][1]
        print(
            f"queries ratio {us['queries'] / them['queries']:.2f}, "
            f"wall ratio {us['wall_s'] / them['wall_s']:.2f}"
        )
    if not options.photos:
        return
    subprocess.run([options.rex_python, "-c", EXPORT, str(work), *SKIMAGE_PHOTOS], check=True)
    photos = sorted((DATA / "images").glob("*.jpg")) + sorted((DATA / "images").glob("*.png"))
    photos += [work / f"{name}.png" for name in SKIMAGE_PHOTOS]
    print("| photo | class | kept | disjoint & sufficient | queries | wall s |")
    print("|---|---|---|---|---|---|")
    with_two = 0
    for photo in photos:
        record = anyio.run(ours, photo, options, config)
        _, disjoint = check(photo, record["kept"], record["target"], config, session)
        with_two += disjoint >= 2
        print(
            f"| {photo.stem} | {record['target']} | {len(record['kept'])} | {disjoint} | "
            f"{record['queries']} | {record['wall_s']:.1f} |",
            flush=True,
        )
    print(f"share with ≥ 2 disjoint sufficient explanations: {with_two}/{len(photos)}")


if __name__ == "__main__":
    sys.exit(main())
