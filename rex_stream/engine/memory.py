"""A memory budget for the whole run: the backend's own memory per row caps the batch size.

The scheduler's buffers count only inputs; an in-process model also needs its activations,
which grow with the batch (EfficientNet-Lite0 on onnxruntime: ~15 MiB per row, so a batch of
445 took 6.8 GB). Before the first real call, :func:`measure_rows` runs the backend on a
one-row and a ``k``-row batch of zeros and reads this process's peak RSS around each (Linux
lets a process reset its peak), which gives the memory per row the backend adds. A remote
backend adds none here: its memory is the server's.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rex_stream.engine.backend import Backend

logger = logging.getLogger(__name__)

#: Share of the machine's physical memory a run may use when the user names no budget.
DEFAULT_SHARE = 0.25

#: Rows in flight from which the batch is checked against the budget (smaller runs cannot
#: reach a budget of a few GiB with any usual model).
CHECK_FROM_ROWS = 64

#: Rows of the second calibration call.
CALIBRATION_ROWS = 16

#: Share of the budget's room the calls may plan for: allocators grow in steps (onnxruntime's
#: arena by powers of two), so a larger batch takes somewhat more per row than measured.
HEADROOM = 0.8

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def machine_memory_bytes() -> int:
    """Physical memory of this machine (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 0


def budget_bytes(memory_gib: float | None) -> int:
    """The run's budget: ``memory_gib`` or :data:`DEFAULT_SHARE` of the machine (0: none)."""
    if memory_gib is not None:
        return int(memory_gib * 2**30)
    return int(machine_memory_bytes() * DEFAULT_SHARE)


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int:
    """This process's resident memory now."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> bool:
    """Make the peak RSS the current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _peak_bytes() -> int:
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else rss_bytes()


@dataclass(frozen=True)
class RowCost:
    """What the backend's calls add to this process: ``per_row`` bytes for each input row."""

    per_row: int
    seconds: float


async def measure_rows(backend: Backend, rows: int) -> RowCost:
    """Run the backend on 1 and ``rows`` rows of zeros; the peak RSS growth per extra row."""
    info = backend.info
    started = time.perf_counter()
    growth = []
    for count in (1, max(2, rows)):
        batch = np.zeros((count, *info.input_shape), dtype=info.dtype)
        exact = _reset_peak()
        before = rss_bytes()
        await backend.infer(batch)
        after = _peak_bytes() if exact else rss_bytes()
        growth.append(max(0, after - before))
        del batch
    # the one-row call warmed the backend up (its arena, its threads): what the larger call
    # adds beyond it is the cost of the extra rows
    per_row = growth[1] // (max(2, rows) - 1)
    return RowCost(per_row, time.perf_counter() - started)


def fitting_batch(
    wanted: int, per_row: int, input_bytes: int, inflight: int, budget: int, in_use: int
) -> int:
    """The largest batch ≤ ``wanted`` whose ``inflight`` calls (their buffers and the
    backend's memory per row) fit :data:`HEADROOM` of what the budget leaves beside
    ``in_use`` (at least 1)."""
    room = int((budget - in_use) * HEADROOM)
    cost = inflight * (per_row + input_bytes)
    if cost <= 0:
        return wanted
    return max(1, min(wanted, room // cost))


@dataclass(frozen=True)
class Fit:
    """A batch size fitted to the memory budget: the batch, the model's bytes per row and the
    bytes the budget leaves beside what the process uses."""

    batch: int
    per_row: int
    room: int


async def fit_batch(
    backend: Backend, wanted: int, input_bytes: int, inflight: int, budget: int
) -> Fit:
    """Measure the model's memory per row (:func:`measure_rows`) and fit the batch so that
    ``inflight`` calls stay within ``budget``; say so when it lowers the batch."""
    cost = await measure_rows(backend, min(wanted, CALIBRATION_ROWS))
    in_use = rss_bytes()
    batch = fitting_batch(wanted, cost.per_row, input_bytes, inflight, budget, in_use)
    if batch < wanted:
        logger.warning(
            "batch size %d → %d: the model takes about %.1f MiB per row, and %d calls in "
            "flight must fit the %.1f GiB memory budget (memory_gib, --memory-gib)",
            wanted,
            batch,
            cost.per_row / 2**20,
            inflight,
            budget / 2**30,
        )
    return Fit(batch, cost.per_row, budget - in_use)
