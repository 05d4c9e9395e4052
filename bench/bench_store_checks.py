"""What the store's defences cost: record checksums and the group lock, side by side (issue 14).

    python bench/bench_store_checks.py [--model MODEL.onnx] [--image PHOTO] [--iters 20]
                                       [--repeats 3]

Each repeat runs one explanation into a fresh store and then resumes it (every record read
back and verified), twice: with the checks as shipped, and with them switched off in this
process (``table_digest`` returning "" and a lock that does nothing). The two variants
alternate (AB BA …) so that drift on a shared machine falls on both. Reported: the median wall
and process CPU time of each variant and their ratios, and — a measure that a busy machine
cannot blur — the time spent inside the checks themselves (digests, lock acquire and release)
as a share of the checked run's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np

import rex_stream.engine.store as store_module
from rex_stream import ExplainConfig, explain
from rex_stream.cli.demo import DEMO_IMAGE, DEMO_MODEL, IMAGENET_MEANS, IMAGENET_STDS
from rex_stream.engine.lock import GroupLock


class _NoLock:
    """A lock that does nothing (the "checks off" variant)."""

    @classmethod
    def for_group(cls, store: Any, key: str, **timing: float) -> _NoLock:
        return cls()

    def try_acquire(self) -> None:
        return None

    def release(self) -> None:
        pass

    def check(self) -> None:
        pass


class _Timed:
    """Wall time spent inside the wrapped functions (summed across threads)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


@contextlib.contextmanager
def checks(enabled: bool, timer: _Timed) -> Iterator[None]:
    """The checks as shipped (timed), or switched off."""
    saved = store_module.table_digest, store_module.GroupLock
    acquire, release = GroupLock.try_acquire, GroupLock.release
    if enabled:
        store_module.table_digest = timer.wrap(saved[0])
        GroupLock.try_acquire = timer.wrap(acquire)  # type: ignore[method-assign]
        GroupLock.release = timer.wrap(release)  # type: ignore[method-assign]
    else:
        store_module.table_digest = lambda table: ""
        store_module.GroupLock = _NoLock  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        store_module.table_digest, store_module.GroupLock = saved
        GroupLock.try_acquire, GroupLock.release = acquire, release  # type: ignore[method-assign]


def run_once(
    model: str, image: str, config: ExplainConfig, folder: Path
) -> tuple[float, float, Any]:
    """One explanation into a fresh store, then a resume of it: wall and CPU seconds, result."""
    store = folder / "s.zarr"

    async def both() -> Any:
        await explain(image, model, config, store=store)
        return await explain(image, model, config, store=store, resume=True)

    start, cpu = time.perf_counter(), time.process_time()
    result = anyio.run(both)
    return time.perf_counter() - start, time.process_time() - cpu, result


def micro(folder: Path, cycles: int = 200) -> tuple[float, float]:
    """Seconds per lock acquire + release, and per digest of a 400-row ledger table."""
    start = time.perf_counter()
    for _ in range(cycles):
        lock = GroupLock.for_group(folder / "s.zarr", "input")
        lock.acquire()
        lock.release()
    per_lock = (time.perf_counter() - start) / cycles
    table = np.random.default_rng(0).random((400, 6))
    start = time.perf_counter()
    for _ in range(cycles * 5):
        store_module.table_digest(table)
    return per_lock, (time.perf_counter() - start) / (cycles * 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--image", default=str(DEMO_IMAGE))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = ExplainConfig().with_overrides(
        means=IMAGENET_MEANS, stds=IMAGENET_STDS, seed=0, iters=args.iters
    )
    walls: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    inside: list[float] = []
    maps: dict[bool, np.ndarray] = {}
    run_once(args.model, args.image, config, Path(tempfile.mkdtemp()))  # warm-up
    for repeat in range(args.repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)
        for enabled in order:
            timer = _Timed()
            with tempfile.TemporaryDirectory() as folder, checks(enabled, timer):
                wall, cpu, result = run_once(args.model, args.image, config, Path(folder))
            walls[enabled].append(wall)
            cpus[enabled].append(cpu)
            maps[enabled] = result.responsibility
            if enabled:
                inside.append(timer.seconds / wall)
    assert np.array_equal(maps[True], maps[False]), "the checks changed the map"
    on, off = statistics.median(walls[True]), statistics.median(walls[False])
    print(f"model {Path(args.model).name}, image {Path(args.image).name}, iters {args.iters}")
    print(f"  with checks   : median {on:.3f} s  {[round(w, 3) for w in walls[True]]}")
    print(f"  checks off    : median {off:.3f} s  {[round(w, 3) for w in walls[False]]}")
    print(f"  wall ratio    : {on / off:.4f}")
    cpu_on, cpu_off = statistics.median(cpus[True]), statistics.median(cpus[False])
    print(f"  CPU s (median): {cpu_on:.3f} with, {cpu_off:.3f} off, ratio {cpu_on / cpu_off:.4f}")
    print(f"  inside checks : {100 * statistics.median(inside):.3f} % of the checked run")
    with tempfile.TemporaryDirectory() as folder:
        per_lock, per_digest = micro(Path(folder))
    print(f"  one lock      : {1e3 * per_lock:.3f} ms per input (acquire + release)")
    print(f"  one digest    : {1e6 * per_digest:.1f} µs per 400-row record")


if __name__ == "__main__":
    main()
