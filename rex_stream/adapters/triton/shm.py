"""Triton's system shared memory: the run's regions, lent one input+output pair per request.

Each region is named ``rex-stream-<pid>-<run tag>-<slot>-<in|out>`` (its POSIX key is the same
name under ``/dev/shm``). A run unregisters and unlinks its regions on every exit it gets to
handle (normal end, errors, SIGINT, SIGTERM); a run killed outright (``kill -9``) cannot, so the
next run on this host cleans up regions whose owner process is gone.

A slot whose request was abandoned without a reply (cancelled, timed out, connection lost) may
still be written by the server later: it is quarantined until Triton confirms it is idle.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import tritonclient.utils.shared_memory as shm

from rex_stream.adapters.triton.client import TritonClient
from rex_stream.adapters.triton.model import ServedModel
from rex_stream.errors import BackendError, ConfigError

logger = logging.getLogger("rex_stream.adapters.triton.backend")

PREFIX = "rex-stream-"
SHM_ROOT = Path("/dev/shm")
_NAME = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)-(\d+)-(in|out\d*)$")


def region_name(tag: str, slot: int, kind: str, pid: int | None = None) -> str:
    """The name (and key, with a leading slash) of one region of this process's run ``tag``."""
    return f"{PREFIX}{os.getpid() if pid is None else pid}-{tag}-{slot}-{kind}"


def owner_pid(name: str) -> int | None:
    """The pid a region name records, or None when rex-stream did not name it."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (someone else's counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(name: str) -> bool:
    """A rex-stream region whose owner process no longer exists on this host."""
    pid = owner_pid(name)
    return pid is not None and not process_alive(pid)


def registered_regions(status: Any) -> dict[str, str]:
    """``{name: key}`` from a system shared-memory status reply (gRPC JSON or HTTP list)."""
    if isinstance(status, Mapping):
        entries: Iterable[Any] = (status.get("regions") or {}).values()
    elif isinstance(status, list):
        entries = status
    else:
        entries = []
    regions: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name"):
            regions[str(entry["name"])] = str(entry.get("key", ""))
    return regions


def stale_local_keys() -> list[str]:
    """Names under ``/dev/shm`` left by rex-stream processes that are gone."""
    try:
        names = [p.name for p in SHM_ROOT.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return []
    return sorted(n for n in names if is_stale(n))


def unlink_key(name: str) -> None:
    """Remove ``/dev/shm/<name>`` if it is there (the memory goes once nobody maps it)."""
    with contextlib.suppress(OSError):
        (SHM_ROOT / name.lstrip("/")).unlink()


# ----------------------------------------------------------------------------- the pool


@dataclass(frozen=True)
class OutputRegion:
    """The registered region one output tensor of a request is written to."""

    tensor: str
    name: str
    handle: Any
    size: int

    def read(self, dtype: np.dtype, shape: list[int]) -> np.ndarray:
        """A copy of the tensor in the region."""
        return np.array(shm.get_contents_as_numpy(self.handle, dtype, shape), copy=True)


@dataclass(frozen=True)
class Slot:
    """Registered system shared-memory regions for one request: its input and its output
    (the scores), or one region per output for a run that reads every output."""

    input_name: str
    input_handle: Any
    input_bytes: int
    outputs: tuple[OutputRegion, ...]

    @property
    def output_name(self) -> str:
        """The region of the (first) output: the scores."""
        return self.outputs[0].name

    def write_input(self, data: np.ndarray) -> None:
        """Copy a batch into the input region."""
        shm.set_shared_memory_region(self.input_handle, [data])

    def read_output(self, dtype: np.dtype, shape: list[int]) -> np.ndarray:
        """A copy of the scores in the output region."""
        return self.outputs[0].read(dtype, shape)

    def regions(self) -> list[tuple[str, int]]:
        """(name, bytes) of every region of the slot."""
        return [(self.input_name, self.input_bytes)] + [(o.name, o.size) for o in self.outputs]


def output_sizes(model: ServedModel, rows: int, where: str) -> list[tuple[str, int]]:
    """(tensor, bytes) of the outputs a request of ``rows`` inputs writes: the scores, or
    every output when the run reads all of them (each must then have a fixed size)."""
    info = model.info
    if info.num_classes is not None:
        return [(str(info.output_name), rows * info.num_classes * model.output_dtype.itemsize)]
    variable = [o for o in model.outputs if not o.fixed]
    if not model.outputs or variable:
        shown = ", ".join(f"{o.name} {o.dims}" for o in variable) or "none declared"
        raise ConfigError(
            f"{where}: shared_memory=system needs outputs of fixed size; variable: {shown} "
            "(drop the option for this model)"
        )
    return [(o.name, rows * math.prod(o.dims) * o.dtype.itemsize) for o in model.outputs]


class SharedMemoryPool:
    """The run's registered regions: one slot per request in flight."""

    def __init__(self, client: TritonClient) -> None:
        self._client = client
        self._regions: list[tuple[str, Any]] = []  # every registered region, for cleanup
        self._sizes: dict[str, int] = {}
        self._free: list[Slot] = []
        self._quarantined: list[Slot] = []  # slots of requests abandoned without a reply
        self._reregistering = anyio.Lock()

    @property
    def active(self) -> bool:
        """Whether regions are registered (tensors travel through them)."""
        return bool(self._regions)

    @property
    def free(self) -> int:
        """Slots ready to lend."""
        return len(self._free)

    @property
    def quarantined(self) -> int:
        """Slots of abandoned requests, not lent until the server is done with them."""
        return len(self._quarantined)

    async def open(self, model: ServedModel, slots: int) -> None:
        """Create and register one input+output region pair per in-flight request."""
        info, t = model.info, self._client.target
        if not t.on_this_host:
            logger.warning("shared_memory=system with a non-loopback host %s; it needs the server "
                           "on this machine", t.host)  # fmt: skip
        per_call = info.max_batch or 1
        in_bytes = per_call * math.prod(info.input_shape) * info.dtype.itemsize
        outputs = output_sizes(model, per_call, str(t))
        await self._clean_stale_regions()
        tag = uuid.uuid4().hex[:12]  # per run: the pid alone may come back after a reboot
        for i in range(max(slots, 1)):
            in_name = region_name(tag, i, "in")
            in_handle = await self._create(in_name, in_bytes)
            regions = []
            for k, (tensor, size) in enumerate(outputs):
                name = region_name(tag, i, "out" if k == 0 else f"out{k}")
                regions.append(OutputRegion(tensor, name, await self._create(name, size), size))
            self._free.append(Slot(in_name, in_handle, in_bytes, tuple(regions)))

    async def _create(self, name: str, size: int) -> Any:
        """Create and register one region (kept for clean-up from the moment it exists)."""
        handle = shm.create_shared_memory_region(name, f"/{name}", size)
        self._regions.append((name, handle))
        self._sizes[name] = size
        await self._register(name, size)
        return handle

    async def take(self) -> Slot | None:
        """A free slot (recycling quarantined ones first if none is free), or None."""
        if not self._free and self._quarantined:
            await self.recycle()
        return self._free.pop() if self._free else None

    def give_back(self, slot: Slot, answered: bool) -> None:
        """Return a slot: free when the server replied, else quarantined (see :meth:`recycle`)."""
        (self._free if answered else self._quarantined).append(slot)

    async def _register(self, name: str, size: int) -> None:
        await self._client.call(
            "registering shared memory", "register_system_shared_memory", name, f"/{name}", size
        )

    async def _clean_stale_regions(self) -> None:
        """Unregister and unlink regions left by rex-stream runs whose process is gone
        (killed with SIGKILL, so they could not clean up themselves)."""
        client = self._client
        extra = {"as_json": True} if client.target.grpc else {}
        try:
            status = await client.call(
                "reading shared-memory status", "get_system_shared_memory_status", **extra
            )
        except BackendError as exc:
            logger.debug("%s: cannot list shared memory (%s)", client.target, exc)
            status = None
        stale = [n for n in registered_regions(status) if is_stale(n)]
        for name in stale:
            with contextlib.suppress(BackendError):
                await client.call(
                    "unregistering stale shared memory", "unregister_system_shared_memory", name
                )
            unlink_key(name)
        leftovers = stale_local_keys()
        for name in leftovers:
            unlink_key(name)
        if stale or leftovers:
            logger.warning(
                "%s: removed %d stale shared-memory regions of killed rex-stream runs",
                client.target, len(set(stale) | set(leftovers)),
            )  # fmt: skip

    async def reregister(self) -> None:
        """Register this run's regions again (a restarted server has forgotten them)."""
        async with self._reregistering:
            for name, size in self._sizes.items():
                try:
                    await self._register(name, size)
                except BackendError as exc:
                    if "already" not in str(exc).lower():
                        raise

    async def recycle(self) -> None:
        """Give quarantined slots back once the server no longer uses their regions: Triton
        refuses to unregister a region in use, so unregistering and registering it again
        succeeds only for an idle one (or one a restarted server has forgotten)."""
        while self._quarantined:
            slot = self._quarantined.pop()
            try:
                for name, size in slot.regions():
                    await self._client.call(
                        "recycling shared memory", "unregister_system_shared_memory", name
                    )
                    await self._register(name, size)
            except BackendError as exc:
                logger.debug("%s: shared-memory slot not free yet: %s", self._client.target, exc)
                self._quarantined.append(slot)
                return
            self._free.append(slot)

    async def release(self) -> None:
        """Unregister and destroy every region (best effort, bounded: the server may be gone,
        which is often why we are closing)."""
        if not self._regions:
            return
        timeout_s = self._client.timeout_s
        # Requests abandoned by a cancelled run may still hold regions on the server ("in use")
        # until they finish: keep trying until they do, within the call deadline.
        deadline = time.monotonic() + min(max(timeout_s, 5.0), 60.0)
        for name, handle in self._regions:
            with anyio.CancelScope(shield=True):
                await self._unregister(name, deadline)
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(handle)
        self._regions.clear()
        self._free.clear()
        self._quarantined.clear()

    async def _unregister(self, name: str, deadline: float) -> None:
        """Unregister one region, waiting while requests still use it, until ``deadline``."""
        while True:
            try:
                await self._client.attempt(
                    max(0.1, min(5.0, deadline - time.monotonic())),
                    "unregister_system_shared_memory", name,
                )  # fmt: skip
                return
            except Exception as exc:
                message = str(exc)
                if "in use" in message and time.monotonic() < deadline:
                    await anyio.sleep(0.05)
                    continue
                logger.warning("%s: cannot unregister shared memory %s: %s", self._client.target,
                               name, " ".join(message.split()) or type(exc).__name__)  # fmt: skip
                return
