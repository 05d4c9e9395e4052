"""A re-explainer bound to one run's scheduler: equal requests explained once."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.evaluation.explainers.kinds import ReExplain, as_map
from rex_stream.evaluation.explainers.specs import explainer_name


class BoundExplainer:
    """A re-explainer bound to one run's scheduler, model and config.

    Equal (input, class) requests are explained once: a request already under way is awaited,
    a finished map is kept while the maps held stay within ``cache_bytes`` (max- and
    avg-sensitivity draw the same noisy copies, so asking for both costs one set of
    re-explanations). ``queries`` counts the model queries the re-explanations sent.
    """

    def __init__(
        self,
        explainer: ReExplain,
        scheduler: Scheduler,
        info: ModelInfo,
        config: ExplainConfig,
        cache_bytes: int = 256 << 20,
    ) -> None:
        self.explainer = explainer
        self.scheduler = scheduler
        self.info = info
        self.config = config
        self.name = explainer_name(explainer)
        self.queries = 0
        #: queries the re-explanations would have sent without the cache
        self.requested = 0
        self.explained = 0
        self._cache_bytes = cache_bytes
        self._held = 0
        self._maps: OrderedDict[tuple[bytes, int], tuple[np.ndarray, int]] = OrderedDict()
        self._pending: dict[tuple[bytes, int], anyio.Event] = {}

    def estimate_queries(self, spatial_shape: tuple[int, ...]) -> int:
        """Roughly how many model queries one re-explanation sends (0 if unknown)."""
        estimate = getattr(self.explainer, "estimate_queries", None)
        return int(estimate(spatial_shape)) if callable(estimate) else 0

    async def explain(self, x: np.ndarray, target: int) -> tuple[np.ndarray, int]:
        """The map of ``x`` for ``target`` (float64) and the queries it cost here."""
        key = (hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest(), target)
        while True:
            held = self._maps.get(key)
            if held is not None:
                self.requested += held[1]
                return held[0], 0
            pending = self._pending.get(key)
            if pending is None:
                break
            await pending.wait()
            if key not in self._maps:  # the first request failed or its map was evicted
                break
        done = self._pending[key] = anyio.Event()
        try:
            found, queries = await self._explain(x, target)
            self._keep(key, found, queries)
        finally:
            del self._pending[key]
            done.set()
        self.queries += queries
        self.requested += queries
        self.explained += 1
        return found, queries

    async def _explain(self, x: np.ndarray, target: int) -> tuple[np.ndarray, int]:
        counted = getattr(self.explainer, "explain_counted", None)
        if callable(counted):
            found, queries = await counted(x, target, self.scheduler, self.info, self.config)
            return found, int(queries)
        found = await self.explainer(x, target, self.scheduler, self.info, self.config)
        return as_map(found, x, self.name), 0

    def _keep(self, key: tuple[bytes, int], found: np.ndarray, queries: int) -> None:
        if found.nbytes > self._cache_bytes:
            return
        self._maps[key] = (found, queries)
        self._held += found.nbytes
        while self._held > self._cache_bytes:
            _, (dropped, _) = self._maps.popitem(last=False)
            self._held -= dropped.nbytes
