"""ReX 0.4.1 against rex-stream behind a server, and rex-stream against its critical path.

    python bench/bench_critical_path.py [--images dog ladybird] [--latency-ms 20 50]

(one command; it prints every ratio of issue 21: wall ÷ critical path for a ``python:`` backend
and for a real OIP v2 HTTP server, ReX ÷ rex-stream, rex-stream ÷ raw onnxruntime at batch 64)

A fast model (``bench/fast_model.py``: ImageNet-shaped, ~4000 images/s on one core) behind a
simulated network: every call first waits ``latency`` (``bench/latency_backend.py``). For
each photo and latency, in one run:

1. ReX 0.4.1 (its own venv, ``--rex-python``; ``bench/rex_runner.py``) with a prediction
   function that sleeps ``latency`` per call, batch ``--rex-batch-size``;
2. rex-stream through the same model behind the same latency, with the in-flight window
   adapting to the round trips (from ``--inflight`` calls), and with it fixed at ``--inflight``;
3. rex-stream's critical path: the model round trips on its longest chain of dependent calls
   (target prediction, one per level of the deepest iteration, extraction rounds), counted by
   the run itself (``stats.round_trips``); the bound is round trips × latency, and
   wall ÷ bound says how close the run is to it (1.0 = nothing but unavoidable round trips).

4. the same run through a real Open Inference Protocol v2 HTTP server on 127.0.0.1 that
   answers every request after ``latency`` (``bench/latency_v2_server.py``, binary tensors),
   reached through rex-stream's HTTP adapter, whose calls in flight follow the same window.
   The server stands in for one far away but shares this machine's cores: it prints its own
   CPU time per request when it stops (the line before each row).

Under each row, one line per rex-stream run says where its wall time went: round trips on the
critical path, calls, mean batch, the most calls with the backend at once in each tenth of the
run (the in-flight window as used) and the CPU seconds of this process and of its event loop's
thread (a ``python:`` backend's model runs in this process too; the HTTP server's does not).

rex-stream's maps are checked to be the same across its runs (identical results). Last, the
throughput of an explanation through the ONNX adapter (the bundled EfficientNet-Lite0, batch
``--onnx-batch``) ÷ the bare onnxruntime session's at the same batch and concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fast_model import save_fast_model
from latency_backend import latency_onnx_backend
from latency_v2_server import serving_v2

from rex_stream import ExplainConfig, explain
from rex_stream.adapters.onnx import OnnxBackend
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo, open_backend

HERE = Path(__file__).resolve().parent
DATA = next(p / "shared" / "data" for p in HERE.parents if (p / "shared" / "data").is_dir())
MEANS = (0.485, 0.456, 0.406)
STDS = (0.229, 0.224, 0.225)


def run_rex(options: argparse.Namespace, image: Path, model: Path, latency_ms: float) -> dict:
    """ReX behind ``latency_ms`` per call: its JSON record (wall time, calls, queries)."""
    out = Path(tempfile.mkdtemp(prefix="rexcp"))
    command = [
        options.rex_python,
        str(HERE / "rex_runner.py"),
        str(image),
        "--model",
        str(model),
        "--config",
        str(HERE / "rex-imagenet.toml"),
        "--iters",
        str(options.iters),
        "--seed",
        str(options.seed),
        "--batch-size",
        str(options.rex_batch_size),
        "--latency-ms",
        str(latency_ms),
        "--out-map",
        str(out / "map.npy"),
        "--out-json",
        str(out / "record.json"),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ReX failed on {image.name}:\n{done.stderr[-3000:]}")
    return json.loads((out / "record.json").read_text())


class Traced:
    """A backend as it is, noting how many calls are with it at each call's start (the
    in-flight window as used); everything else is the wrapped backend's."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.active = 0
        self.starts: list[tuple[float, int]] = []  # (perf_counter, calls with it then)

    @property
    def info(self) -> ModelInfo:
        return self._inner.info

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        self.active += 1
        self.starts.append((time.perf_counter(), self.active))
        try:
            return await self._inner.infer(batch)
        finally:
            self.active -= 1

    def __getattr__(self, name: str) -> Any:  # follow_inflight, aclose, infer_outputs…
        return getattr(self._inner, name)

    def by_tenths(self) -> str:
        """The most calls at once in each tenth of the run."""
        if not self.starts:
            return "-"
        first, last = self.starts[0][0], self.starts[-1][0]
        span = max(last - first, 1e-9)
        peaks = [0] * 10
        for at, active in self.starts:
            slot = min(9, int((at - first) / span * 10))
            peaks[slot] = max(peaks[slot], active)
        return "/".join(str(p) for p in peaks)


def breakdown(name: str, run: dict) -> str:
    """One line: where a run's wall time went."""
    return (
        f"    {name}: {run['round_trips']} round trips on the critical path, {run['calls']} "
        f"calls, mean batch {run['queries'] / max(1, run['calls']):.1f}, most calls at once by "
        f"tenths of the run {run['inflight']}, CPU {run['cpu_s']:.2f} s in this process "
        f"({run['loop_cpu_s']:.2f} s on the event loop's thread; "
        f"{run['cpu_s'] / max(1, run['calls']) * 1e3:.2f} ms per call) "
        f"for {run['wall_s']:.2f} s wall"
    )


async def run_stream(
    options: argparse.Namespace,
    image: Path,
    model: Path,
    latency_s: float,
    adaptive: bool,
    http_url: str | None = None,
) -> dict:
    """rex-stream behind ``latency_s``: wall, counts, round trips and a digest of the results
    (through the v2 server at ``http_url`` when given, else a ``python:`` backend)."""
    if http_url is None:
        backend = latency_onnx_backend(
            str(model), latency_s, max_batch=options.max_batch, max_inflight=options.inflight
        )
    else:
        settings = BackendSettings(max_inflight=options.inflight, options={"protocol": "v2-binary"})
        backend = await open_backend(http_url, settings)
    await backend.infer(np.zeros((options.max_batch, 3, 224, 224), np.float32))  # warm-up
    traced = Traced(backend)
    config = ExplainConfig().with_overrides(
        iters=options.iters,
        seed=options.seed,
        means=MEANS,
        stds=STDS,
        max_batch=options.max_batch,
        max_inflight=options.inflight,
        analyse=False,
    )
    config = replace(config, scheduler=replace(config.scheduler, adaptive_inflight=adaptive))
    cpu, loop_cpu = time.process_time(), time.thread_time()
    try:
        result = await explain(image, traced, config)  # type: ignore[arg-type]
    finally:
        await backend.aclose()
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    stats = result.stats
    bound = stats.round_trips * latency_s
    return {
        "wall_s": stats.wall_s,
        "queries": stats.queries,
        "calls": stats.calls,
        "round_trips": stats.round_trips,
        "bound_s": bound,
        "wall_over_bound": stats.wall_s / bound if bound else float("nan"),
        "inflight": traced.by_tenths(),
        "cpu_s": cpu,
        "loop_cpu_s": loop_cpu,
        "map": result.responsibility,
        "mask": result.mask,
    }


async def raw_onnx_ratio(options: argparse.Namespace) -> tuple[float, float, float]:
    """(raw inputs/s, rex-stream mutants/s, ratio) through the ONNX adapter at one batch size."""
    from bench_core import DEFAULT_IMAGE, config, raw_throughput

    from rex_stream.cli.demo import DEMO_MODEL

    backend = OnnxBackend(Path(DEMO_MODEL), BackendSettings(max_inflight=2))
    raw = await anyio.to_thread.run_sync(
        raw_throughput, backend, options.onnx_batch, 2, options.onnx_seconds
    )
    result = await explain(
        DEFAULT_IMAGE, backend, config(options.onnx_iters, options.onnx_batch, 2)
    )
    through = result.stats.queries / result.stats.wall_s
    return raw, through, through / raw


def load() -> str:
    """The load averages (1, 5, 15 minutes) of this machine."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


async def main_async(options: argparse.Namespace) -> None:
    model = save_fast_model(Path(tempfile.mkdtemp(prefix="fastmodel")) / "fast.onnx")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {load()}; "
        f"iters {options.iters}, seed {options.seed}, ReX batch {options.rex_batch_size}, "
        f"rex-stream batch {options.max_batch} from {options.inflight} calls in flight"
    )
    head = (
        f"{'image':<9} {'ms':>3} {'ReX s':>6} {'calls':>5} {'q':>5} | {'rs s':>5} {'calls':>5} "
        f"{'q':>5} {'fixed s':>7} {'http s':>6} | {'ReX/rs':>6} | {'rounds':>6} {'bound s':>7} "
        f"{'rs/bound':>8} {'http/bound':>10} {'load':>5}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for name in options.images:
        image = DATA / "images" / f"{name}.jpg"
        for latency_ms in options.latency_ms:
            latency_s = latency_ms / 1000.0
            if options.no_rex:
                rex = {"wall_s": float("nan"), "calls": 0, "queries": 0}
            else:
                rex = await anyio.to_thread.run_sync(run_rex, options, image, model, latency_ms)
            fixed = await run_stream(options, image, model, latency_s, adaptive=False)
            ours = await run_stream(options, image, model, latency_s, adaptive=True)
            with serving_v2(str(model), latency_s) as server:
                http = await run_stream(
                    options, image, model, latency_s, adaptive=True, http_url=server.url
                )
            same = all(
                np.array_equal(ours[key], other[key])
                for other in (fixed, http)
                for key in ("map", "mask")
            )
            ratio = rex["wall_s"] / ours["wall_s"]
            print(
                f"{name:<9} {latency_ms:3g} {rex['wall_s']:6.2f} {rex['calls']:5d} "
                f"{rex['queries']:5d} | {ours['wall_s']:5.2f} {ours['calls']:5d} "
                f"{ours['queries']:5d} {fixed['wall_s']:7.2f} {http['wall_s']:6.2f} | "
                f"{ratio:6.1f} | {ours['round_trips']:6d} {ours['bound_s']:7.2f} "
                f"{ours['wall_over_bound']:8.2f} {http['wall_over_bound']:10.2f} "
                f"{os.getloadavg()[0]:5.1f}" + ("" if same else "  RESULTS DIFFER")
            )
            if options.breakdown:
                runs = {"python: fixed": fixed, "python: adaptive": ours, "HTTP v2": http}
                for label, run in runs.items():
                    print(breakdown(label, run))
            rows.append(
                (latency_ms, rex["wall_s"], ours["wall_s"], ours["bound_s"], http["wall_s"])
            )
    for latency_ms in options.latency_ms:
        mine = [r for r in rows if r[0] == latency_ms]
        rex_total = sum(r[1] for r in mine)
        ours_total = sum(r[2] for r in mine)
        bound_total = sum(r[3] for r in mine)
        http_total = sum(r[4] for r in mine)
        print(
            f"{latency_ms:g} ms: ReX {rex_total:.2f} s, rex-stream {ours_total:.2f} s "
            f"(python:), {http_total:.2f} s (HTTP v2) → ReX ÷ rex-stream "
            f"{rex_total / ours_total:.1f}×; wall ÷ critical path {ours_total / bound_total:.2f} "
            f"(python:), {http_total / bound_total:.2f} (HTTP v2)"
        )
    if options.onnx_batch:
        raw, through, ratio = await raw_onnx_ratio(options)
        print(
            f"ONNX adapter, EfficientNet-Lite0, batch {options.onnx_batch}, 2 calls: raw "
            f"onnxruntime {raw:.1f} inputs/s, rex-stream {through:.1f} mutants/s → "
            f"rex-stream ÷ raw {ratio:.3f}"
        )
    print(f"load at the end: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["dog", "ladybird"])
    parser.add_argument("--latency-ms", nargs="+", type=float, default=[20.0, 50.0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--rex-batch-size", type=int, default=8)
    parser.add_argument("--rex-python", default=str(HERE.parent / ".venv-rex" / "bin" / "python"))
    parser.add_argument("--no-rex", action="store_true", help="skip ReX (its columns: nan)")
    parser.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="leave out the lines under each row: round trips, calls, mean batch, calls at "
        "once over the run, CPU seconds",
    )
    parser.add_argument("--onnx-batch", type=int, default=64, help="0: skip the ONNX ratio")
    parser.add_argument("--onnx-iters", type=int, default=10)
    parser.add_argument("--onnx-seconds", type=float, default=8.0)
    anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
