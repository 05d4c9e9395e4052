"""A pool of model variants: each opened once, shared by every re-explanation under it.

Weight metrics (MPRT, efficient MPRT, the model-perturbation test) ask for "the map of input x
for class y under variant v". A :class:`VariantPool` answers: it opens a variant (an engine:
an onnxruntime session on the rewritten model, with its own scheduler) when first asked, lets
every concurrent re-explanation under it share that scheduler's batches, keeps at most
``max_open`` variants open (an idle one is closed to make room), and remembers each map, so
the attributions and metrics of one input never re-explain it twice under the same variant.

Each open variant lives in a holder task of the pool's own task group (a scheduler must be
closed by the task that opened it); the pool is used as ``async with VariantPool(…) as pool``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType

import anyio
import numpy as np
from anyio.abc import TaskGroup

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.session import Engine
from rex_stream.evaluation.explainers import ReExplain
from rex_stream.evaluation.variants.files import open_variant
from rex_stream.evaluation.variants.weights import WeightedModel, Weights

#: Variants open at once when the caller does not say (an EfficientNet-Lite0 session holds
#: about 30 MiB).
DEFAULT_OPEN = 2


@dataclass
class _Slot:
    users: int = 0
    ready: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)
    engine: Engine | None = None
    error: BaseException | None = None


class _Memo:
    __slots__ = ("done", "error", "map")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.map: np.ndarray | None = None
        self.error: BaseException | None = None


class VariantPool:
    """Variants of one model, opened on demand, and the maps explained under them."""

    def __init__(
        self,
        model: WeightedModel,
        explainer: ReExplain,
        config: ExplainConfig,
        settings: BackendSettings | None = None,
        max_open: int = DEFAULT_OPEN,
    ) -> None:
        self.model = model
        self.explainer = explainer
        self.config = config
        self.settings = settings
        self.max_open = max(1, max_open)
        self.opened = 0  # variants opened so far (a reopened one counts again)
        self.explanations = 0
        self.queries = 0  # model queries through the variants' schedulers (closed ones)
        self._slots: dict[Hashable, _Slot] = {}
        self._memo: dict[tuple[Hashable, str, int], _Memo] = {}
        self._condition = anyio.Condition()
        self._group: TaskGroup | None = None

    async def __aenter__(self) -> VariantPool:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool | None:
        for slot in self._slots.values():
            slot.release.set()
        self._slots.clear()
        assert self._group is not None
        return await self._group.__aexit__(kind, error, trace)

    async def explain(
        self,
        variant: Hashable,
        weights: Callable[[], Weights],
        x: np.ndarray,
        target: int,
        input_key: str,
    ) -> np.ndarray:
        """The map of ``x`` for ``target`` under ``variant`` (its replaced tensors made by
        ``weights`` when it is opened); explained once per (variant, input, target)."""
        key = (variant, input_key, target)
        while (memo := self._memo.get(key)) is not None:
            await memo.done.wait()
            if memo.map is not None:
                return memo.map
            if memo.error is not None:
                raise memo.error
            # the task that was explaining it was cancelled: explain it here
        memo = self._memo[key] = _Memo()
        try:
            slot = await self._acquire(variant, weights)
            try:
                engine = slot.engine
                assert engine is not None
                explained = await self.explainer(
                    x, target, engine.scheduler, engine.info, engine.config
                )
                self.explanations += 1
            finally:
                await self._release(slot)
            memo.map = np.asarray(explained, dtype=np.float64)
        except Exception as exc:
            memo.error = exc
            raise
        finally:
            if memo.map is None:
                del self._memo[key]
            memo.done.set()
        return memo.map

    async def _acquire(self, variant: Hashable, weights: Callable[[], Weights]) -> _Slot:
        async with self._condition:
            while True:
                slot = self._slots.get(variant)
                if slot is not None:
                    break
                if len(self._slots) < self.max_open:
                    slot = self._slots[variant] = _Slot()
                    assert self._group is not None
                    self._group.start_soon(self._hold, slot, weights)
                    self.opened += 1
                    break
                idle = next((k for k, s in self._slots.items() if s.users == 0), None)
                if idle is not None:
                    self._slots.pop(idle).release.set()
                    continue
                await self._condition.wait()
            slot.users += 1
        try:
            await slot.ready.wait()
        except BaseException:
            await self._release(slot)
            raise
        if slot.error is not None:
            await self._release(slot)
            async with self._condition:
                if self._slots.get(variant) is slot:
                    del self._slots[variant]
            raise slot.error
        return slot

    async def _release(self, slot: _Slot) -> None:
        with anyio.CancelScope(shield=True):  # a cancelled user still gives its lease back
            async with self._condition:
                slot.users -= 1
                self._condition.notify_all()

    async def _hold(self, slot: _Slot, weights: Callable[[], Weights]) -> None:
        """Open the variant, serve it until released, close it (in this one task)."""
        try:
            replacements = await anyio.to_thread.run_sync(weights)
            async with open_variant(self.model, replacements, self.config, self.settings) as engine:
                slot.engine = engine
                slot.ready.set()
                try:
                    await slot.release.wait()
                finally:
                    self.queries += engine.scheduler.stats.mutants
        except Exception as exc:  # handed to the callers waiting for this variant
            slot.error = exc
        finally:
            slot.ready.set()
