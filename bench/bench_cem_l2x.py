"""CEM and L2X benchmark: queries and wall time per input, fidelity on held-out data.

    python bench/bench_cem_l2x.py [--rows 20] [--latency-ms 20] [--parts cem,spectral,…]

(a) CEM pertinent positives and negatives of held-out breast-cancer rows (tabular model):
    queries and wall time per input, how often the model keeps the class on the PP alone and
    changes it with the PN added, and whether the PP's top-k features beat k random features;
    the query count against MAX-I's black-box estimator at its tutorial settings (≈ 102 k);
(b) CEM on the three bundled spectra (markers model): where the PP's largest interval lies;
(c) latency hiding: rows × 4 penalty constants behind a backend with ``latency-ms`` per call
    ÷ the same job with no added latency;
(d) L2X on the tabular model and on synthetic spectra: training queries and time, held-out
    post-hoc accuracy against k random regions, and explaining time per input (0 queries);
(f) the issue's digits targets: CEM PP/PN on 50 test digits (PP keeps the class, its top-k
    pixels against k random present pixels, PN flips it, queries); L2X at k = 8 trained on the
    1 257 training digits, post-hoc accuracy on the 540 test digits;
(g) block fills (``--parts blocks``): the scheduler's Python time per row with a no-op backend,
    the scheduler before block fills (loaded from git, ``--before-commit``) with one fill per
    row against one vectorised block write per request; then CEM PP on 50 test digits, before
    (old scheduler, each step's rows one fill each) and after (one block per step), side by
    side in one run;
(h) L2X on voxel blob volumes (``--parts voxel``): one MLP over all blocks against
    region-shared networks, held-out fidelity;
(e) L2X on its paper's synthetic sets (XOR, orange skin, nonlinear additive, switch; the true
    class probabilities as the black box): median rank of the true features on held-out rows.
Everything is asked of the model itself through onnxruntime; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency_backend import latency_onnx_backend  # noqa: E402

from rex_stream import explain_cem_sync, train_l2x_sync  # noqa: E402
from rex_stream.cem import CemConfig  # noqa: E402
from rex_stream.config import ExplainConfig, ScoreKind  # noqa: E402
from rex_stream.engine.backend import ModelInfo  # noqa: E402
from rex_stream.l2x import L2xConfig  # noqa: E402
from rex_stream.runs.l2x import load_inputs  # noqa: E402
from tests.l2x.spectra import make_set  # noqa: E402

MODELS = ROOT / "rex_stream" / "data" / "models"
TABULAR = MODELS / "tabular-breast-cancer.onnx"
TRAIN = MODELS / "tabular-breast-cancer-train.csv"
HELD_OUT = MODELS / "tabular-breast-cancer-test.csv"
SPECTRAL = MODELS / "spectral-markers.onnx"
MAXI_QUERIES = 102_002  # MAX-I URV batch mode: (100 samples + 2) × 1 000 steps


def classify(model: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch.astype(np.float32)})[0].argmax(1)


def tabular_config(batch: int | None = None) -> ExplainConfig:
    config = ExplainConfig()
    return replace(
        config,
        image=replace(config.image, mode="tabular", mode_options={"baseline": str(TRAIN)}),
        scoring=replace(config.scoring, scores=ScoreKind.PROBABILITIES),
        scheduler=replace(config.scheduler, max_batch=batch),
    )


def masked(subject, keep: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    base = np.broadcast_to(np.asarray(subject.baseline, np.float32), subject.tensor.shape)
    return np.where(subject.expand(keep), subject.tensor, base)


def bench_cem_tabular(rows: int) -> None:
    table = np.loadtxt(HELD_OUT, delimiter=",", skiprows=1, dtype=np.float32)[:rows, :-1]
    inputs = list(table)
    for kind in ("pp", "pn"):
        started = time.perf_counter()
        results = explain_cem_sync(inputs, str(TABULAR), CemConfig(kind=kind), tabular_config())
        wall = time.perf_counter() - started
        queries = np.array([r.queries for r in results])
        found = [r for r in results if r.found]
        classes = classify(TABULAR, np.stack([r.solution for r in found])) if found else []
        targets = np.array([r.target.classification for r in found])
        wanted = (classes == targets) if kind == "pp" else (classes != targets)
        print(
            f"CEM {kind.upper()} tabular, {rows} held-out rows: found {len(found)}/{rows}, "
            f"model agrees on {int(np.sum(wanted))}/{len(found)}; queries per input median "
            f"{int(np.median(queries))} (max {queries.max()}) = "
            f"{np.median(queries) / MAXI_QUERIES:.1%} of MAX-I's ≈102 k; wall {wall:.1f} s for "
            f"all ({wall / rows * 1000:.0f} ms per input, inputs concurrent)"
        )
        if kind == "pp":
            _pp_top_k(found)


def _pp_top_k(results: list) -> None:  # type: ignore[type-arg]
    """The PP's k largest features alone against k random features (k = the PP's support)."""
    rng = np.random.default_rng(0)
    top, random, sizes = [], [], []
    for result in results:
        if result.target.classification != 0:
            continue  # the baseline (training mean) is already class 1: its PP is empty
        k = max(1, int((result.values > 0.05).sum()))
        keep = np.zeros(result.regions.count, bool)
        keep[result.top_regions(k)] = True
        other = np.zeros(result.regions.count, bool)
        other[rng.choice(result.regions.count, k, replace=False)] = True
        top.append(masked(result.subject, result.regions.expand(keep)))
        random.append(masked(result.subject, result.regions.expand(other)))
        sizes.append(k)
    if not top:
        return
    top_kept = float(np.mean(classify(TABULAR, np.stack(top)) == 0))
    random_kept = float(np.mean(classify(TABULAR, np.stack(random)) == 0))
    print(
        f"  class-0 rows: PP support median {int(np.median(sizes))} of 30 features; those "
        f"features alone keep the class {top_kept:.2f}, as many random features {random_kept:.2f}"
    )


def bench_cem_spectral() -> None:
    sources = [str(MODELS / f"spectral-markers-{n}.npy") for n in ("A", "B", "none")]
    for kind in ("pp", "pn"):
        results = explain_cem_sync(sources, str(SPECTRAL), CemConfig(kind=kind, region_size=20))
        for result in results:
            top = int(result.top_regions(1)[0]) * 20 if result.found else None
            print(
                f"CEM {kind.upper()} {Path(str(result.subject.source)).stem}: class "
                f"{result.target.classification} → {result.solution_class}, largest interval "
                f"{top}–{None if top is None else top + 19}, {result.queries} queries"
            )


def bench_latency(rows: int, latency_ms: float) -> None:
    import anyio

    from rex_stream.runs.cem import explain_cem

    table = np.loadtxt(HELD_OUT, delimiter=",", skiprows=1, dtype=np.float32)[:rows, :-1]
    cem = CemConfig(penalties=(0.3, 1.0, 3.0, 10.0), steps=40, patience=40)
    walls = {}
    for latency in (0.0, latency_ms / 1000):
        backend = latency_onnx_backend(str(TABULAR), latency, max_batch=256, max_inflight=8)
        started = time.perf_counter()
        results = anyio.run(
            lambda b=backend: explain_cem(list(table), b, cem, tabular_config(batch=256))
        )
        walls[latency] = time.perf_counter() - started
        queries = sum(r.queries for r in results)
        print(
            f"CEM latency {latency * 1000:.0f} ms: {rows} rows × 4 penalties, {queries} queries "
            f"in {walls[latency]:.2f} s"
        )
    print(f"  latency hiding: {walls[latency_ms / 1000] / walls[0.0]:.2f}× the 0 ms time")


def bench_l2x() -> None:
    config = tabular_config()
    for k in (2, 4):
        started = time.perf_counter()
        explainer = train_l2x_sync(str(TRAIN), str(TABULAR), L2xConfig(k=k), config)
        train_s = time.perf_counter() - started
        info = ModelInfo("m", "X", (30,))
        reading = replace(
            config,
            image=replace(config.image, mode_options={"baseline": str(TRAIN), "drop": "label"}),
        )
        held = load_inputs(str(HELD_OUT), info, reading)
        _l2x_report(f"tabular k={k}", explainer, held, TABULAR, train_s)
    spectra, _ = make_set(300, seed=11)
    held_spectra, _ = make_set(150, seed=12)
    spectral = replace(ExplainConfig(), image=replace(ExplainConfig().image, mode="spectral"))
    for k in (2, 4):
        started = time.perf_counter()
        explainer = train_l2x_sync(
            spectra[:, None, :], str(SPECTRAL), L2xConfig(k=k, region_size=20), spectral
        )
        train_s = time.perf_counter() - started
        held = load_inputs(held_spectra[:, None, :], ModelInfo("m", "input", (1, 1356)), spectral)
        _l2x_report(f"spectral k={k} of 68 intervals", explainer, held, SPECTRAL, train_s)


def _l2x_report(name: str, explainer, held: list, model: Path, train_s: float) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    masks = [explainer.selection_mask(s) for s in held]
    explain_ms = (time.perf_counter() - started) / len(held) * 1000
    rng = np.random.default_rng(1)
    regions = explainer.regions
    random_masks = []
    for _ in held:
        other = np.zeros(regions.count, bool)
        other[rng.choice(regions.count, explainer.k, replace=False)] = True
        random_masks.append(regions.expand(other))
    labels = classify(model, np.stack([s.tensor for s in held]))
    kept = np.mean(classify(model, np.stack([masked(s, m) for s, m in zip(held, masks)])) == labels)
    rand = np.mean(
        classify(model, np.stack([masked(s, m) for s, m in zip(held, random_masks)])) == labels
    )
    metrics = explainer.metrics
    print(
        f"L2X {name}: {metrics['training_queries']} training queries, {train_s:.1f} s; "
        f"held-out ({len(held)}) selection keeps the prediction {kept:.3f} vs random {rand:.3f}; "
        f"gap {metrics['gap']:.3f}; explaining {explain_ms:.2f} ms and 0 queries per input"
    )


def bench_l2x_synthetic() -> None:
    from rex_stream.adapters.python import PythonBackend
    from tests.l2x.synthetic import SETS, make, model

    config = replace(
        ExplainConfig(),
        image=replace(ExplainConfig().image, mode="tabular"),
        scoring=replace(ExplainConfig().scoring, scores=ScoreKind.PROBABILITIES),
    )
    for name, k in (("xor", 2), ("orange_skin", 4), ("additive", 4), ("switch", 5)):
        started = time.perf_counter()
        explainer = train_l2x_sync(
            make(name, 1000, 0), PythonBackend(model(name), (10,)), L2xConfig(k=k), config
        )
        train_s = time.perf_counter() - started
        held = make(name, 500, 1)
        subjects = load_inputs(held, ModelInfo("m", "X", (10,)), config)
        ranks = []
        for subject, true in zip(subjects, SETS[name][1](held)):
            order = np.argsort(-explainer.logits(subject), kind="stable")
            rank = {int(f): position + 1 for position, f in enumerate(order)}
            ranks.append(np.median([rank[f] for f in true]))
        metrics = explainer.metrics
        print(
            f"L2X synthetic {name} (k={k}): median rank of the true features "
            f"{np.median(ranks):.1f} on 500 held-out rows; post-hoc accuracy "
            f"{metrics['posthoc_accuracy']:.3f} vs random {metrics['random_accuracy']:.3f}; "
            f"{metrics['training_queries']} queries, {train_s:.1f} s"
        )


def bench_digits() -> None:
    model = MODELS / "digits-mlp.onnx"
    test = (np.load(MODELS / "digits-test.npy")[:, None] / 16.0).astype(np.float32)
    digits = list(test[:50])
    targets = classify(model, test[:50])
    for kind in ("pp", "pn"):
        started = time.perf_counter()
        results = explain_cem_sync(digits, str(model), CemConfig(kind=kind), ExplainConfig())
        wall = time.perf_counter() - started
        found = [r for r in results if r.found]
        classes = classify(model, np.stack([r.solution for r in found]))
        wanted = [
            (c == r.target.classification) if kind == "pp" else (c != r.target.classification)
            for c, r in zip(classes, found)
        ]
        queries = np.median([r.queries for r in results])
        line = (
            f"CEM {kind.upper()} digits: {int(np.sum(wanted))}/50 as wanted by the model; median "
            f"{int(queries)} queries ({queries / MAXI_QUERIES:.1%} of MAX-I), {wall:.1f} s for 50"
        )
        if kind == "pp":
            rng = np.random.default_rng(0)
            top, random, sizes = [], [], []
            for result, digit in zip(results, digits):
                k = max(1, int((result.values > 0.05).sum()))
                keep = np.zeros(64, bool)
                keep[result.top_regions(k)] = True
                present = np.flatnonzero(digit.reshape(-1) > 0)
                other = np.zeros(64, bool)
                other[rng.choice(present, min(k, present.size), replace=False)] = True
                top.append(np.where(keep.reshape(1, 8, 8), digit, 0.0))
                random.append(np.where(other.reshape(1, 8, 8), digit, 0.0))
                sizes.append(k)
            kept = np.mean(classify(model, np.stack(top)) == targets)
            rand = np.mean(classify(model, np.stack(random)) == targets)
            line += (
                f"; PP top-k pixels (median k {int(np.median(sizes))}) alone keep the class "
                f"{kept:.2f} vs {rand:.2f} for k random present pixels"
            )
        print(line)
    train = (np.load(MODELS / "digits-train.npy")[:, None] / 16.0).astype(np.float32)
    started = time.perf_counter()
    explainer = train_l2x_sync(train, str(model), L2xConfig(k=8), ExplainConfig())
    train_s = time.perf_counter() - started
    held = load_inputs(test, ModelInfo("m", "input", (1, 8, 8)), ExplainConfig())
    _l2x_report("digits k=8 of 64 pixels", explainer, held, model, train_s)


class RowByRow:
    """An evaluator that submits a block's rows as one fill each (the path before blocks)."""

    def __init__(self, scheduler) -> None:  # type: ignore[no-untyped-def]
        self._scheduler = scheduler
        self.max_batch = scheduler.max_batch

    async def evaluate(self, fills):  # type: ignore[no-untyped-def]
        return await self._scheduler.evaluate(fills)

    async def evaluate_block(self, write, count: int):  # type: ignore[no-untyped-def]
        def row(index: int, out: np.ndarray) -> None:
            write(out[None], index, index + 1)

        return await self._scheduler.evaluate([partial(row, i) for i in range(count)])


def scheduler_before(commit: str) -> type:
    """The Scheduler class as it was at ``commit`` (before block fills), loaded from git."""
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:rex_stream/engine/scheduler.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "scheduler_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("scheduler_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scheduler_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.Scheduler  # type: ignore[no-any-return]


def bench_blocks(before_commit: str, rounds: int = 5) -> None:
    import anyio

    from rex_stream.adapters.python import PythonBackend
    from rex_stream.cem import explain_subject
    from rex_stream.config import SchedulerConfig
    from rex_stream.engine.scheduler import Scheduler
    from rex_stream.engine.session import backend_for_run
    from rex_stream.modes import load_subject

    before = scheduler_before(before_commit)

    async def scores(batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 10), np.float32)

    rows = 41  # chain steps of q = 20
    noop = PythonBackend(scores, (1, 8, 8), name="noop", max_batch=256, max_inflight=2)

    def fill(out: np.ndarray) -> None:
        out[:] = 0.5

    def write(out: np.ndarray, start: int, stop: int) -> None:
        out[:] = 0.5

    async def through(kind: type, block: bool, requests: int) -> float:
        async with kind(noop, SchedulerConfig(max_batch=256, linger_ms=0)) as scheduler:
            started = time.process_time()  # CPU, all threads: waits on a busy machine aside
            async with anyio.create_task_group() as group:
                for _ in range(requests):
                    if block:
                        group.start_soon(scheduler.evaluate_block, write, rows)
                    else:
                        group.start_soon(scheduler.evaluate, [fill] * rows)
            return time.process_time() - started

    for requests, name, kind, block in (
        (requests, name, kind, block)
        for requests in (200, 1000)  # 8 200 rows fit the queue of 4 096 rows before; 41 000 not
        for name, kind, block in (
            (f"before ({before_commit}), one fill per row", before, False),
            ("after, one fill per row", Scheduler, False),
            ("after, one block write per request", Scheduler, True),
        )
    ):
        best = min(anyio.run(through, kind, block, requests) for _ in range(rounds))
        print(
            f"scheduler Python time (process CPU), async no-op backend, {requests} requests × "
            f"{rows} rows, batches of 256, {name}: {best / (requests * rows) * 1e6:.2f} µs per "
            f"row (best of {rounds})"
        )

    model = str(MODELS / "digits-mlp.onnx")
    test = (np.load(MODELS / "digits-test.npy")[:, None] / 16.0).astype(np.float32)
    cem = CemConfig(kind="pp")

    async def run(kind: type, block: bool, batch: int) -> tuple[float, float, list]:
        config = replace(
            ExplainConfig(), scheduler=replace(ExplainConfig().scheduler, max_batch=batch)
        )
        async with backend_for_run(model, config, None) as (opened, resolved):
            subjects = [load_subject(d, opened.info, resolved) for d in test[:50]]
            async with kind(opened, resolved.scheduler) as scheduler:
                evaluator = scheduler if block else RowByRow(scheduler)
                results: list = [None] * len(subjects)

                async def one(i: int) -> None:
                    results[i] = await explain_subject(
                        subjects[i], evaluator, opened.info, cem, resolved.scoring
                    )

                started, cpu = time.perf_counter(), time.process_time()
                async with anyio.create_task_group() as group:
                    for i in range(len(subjects)):
                        group.start_soon(one, i)
                return time.perf_counter() - started, time.process_time() - cpu, results

    runs = {
        (f"before ({before_commit}), one fill per row, batch 41 (the old default)"): (
            before,
            False,
            41,
        ),
        "after, one block per chain step, batch 41": (Scheduler, True, 41),
        "after, one block per chain step, batch 256 (the new default)": (Scheduler, True, 256),
    }
    outcome = {name: anyio.run(run, *how) for name, how in runs.items()}
    first = next(iter(outcome.values()))
    queries = sum(r.queries for r in first[2])
    for name, (wall, cpu, results) in outcome.items():
        same = all(np.array_equal(a.values, b.values) for a, b in zip(first[2], results))
        print(
            f"CEM PP digits, 50 inputs, {name}: wall {wall:.2f} s ({wall / first[0]:.2f}× "
            f"before), process CPU {cpu / queries * 1e6:.1f} µs per query ({queries} queries); "
            f"solutions as before: {same}"
        )


def bench_l2x_voxel() -> None:
    from tests.l2x.test_l2x import fidelity
    from tests.l2x.test_l2x_voxel import SHARED, VOXEL, VOXEL_CONFIG, volumes

    train, _ = volumes(60, 1)
    held, _ = volumes(30, 2)
    subjects = load_inputs(held, ModelInfo("m", "input", (1, 32, 32, 32)), VOXEL_CONFIG)
    for shared in (False, True):
        started = time.perf_counter()
        l2x = replace(SHARED, shared_regions=shared)
        explainer = train_l2x_sync(train, str(VOXEL), l2x, VOXEL_CONFIG)
        train_s = time.perf_counter() - started
        kept, random_kept = fidelity(explainer, subjects, VOXEL)
        print(
            f"L2X voxel blobs (k 2 of 64 blocks of 8³, 48 training volumes, "
            f"{explainer.metrics['training_queries']} queries, {train_s:.1f} s), "
            f"{'region-shared networks' if shared else 'one MLP over all blocks'}: 30 held-out "
            f"volumes keep the prediction {kept:.2f} on the selection vs {random_kept:.2f} random"
        )


PARTS = ("cem", "spectral", "latency", "l2x", "synthetic", "digits", "blocks", "voxel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    parser.add_argument(
        "--before-commit", default="e34e113", help="the scheduler before block fills (blocks)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "cem" in parts:
        bench_cem_tabular(args.rows)
    if "spectral" in parts:
        bench_cem_spectral()
    if "latency" in parts:
        bench_latency(50, args.latency_ms)
    if "l2x" in parts:
        bench_l2x()
    if "synthetic" in parts:
        bench_l2x_synthetic()
    if "digits" in parts:
        bench_digits()
    if "blocks" in parts:
        bench_blocks(args.before_commit)
    if "voxel" in parts:
        bench_l2x_voxel()


if __name__ == "__main__":
    main()
