"""Re-explainers: the explanation method that robustness and randomisation metrics call again.

A re-explainer is one async function (:data:`ReExplain`): given an input tensor in model space
(the model's input shape without the batch axis), the class to explain, the scheduler of the
model to explain, its :class:`ModelInfo` and the run's config, it returns a map over the
input's spatial axes (float64). Two kinds:

- ``rex[:iters=N,…]``: rex-stream's own ReX search, through the public glue
  (:func:`rex_stream.runs.rex.explain_input`), with a small iteration budget and no extraction.
  Its queries go through the scheduler it is given, so concurrent re-explanations (and the
  metrics' own rows) share batches.
- ``python:module:function``: a user callable ``(x, target) -> map``, sync or async, like
  Quantus' ``explain_func``; a sync one runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.user_modules import import_from_cwd_first
from rex_stream.errors import ConfigError, InputError, RexStreamError
from rex_stream.runs.rex import explain_input  # the public glue at the top

#: ``(x, target, scheduler, info, config) -> map over x's spatial axes`` (float64).
ReExplain = Callable[[np.ndarray, int, Scheduler, ModelInfo, ExplainConfig], Awaitable[np.ndarray]]

#: A user's explanation function: ``(x, target) -> map`` (sync or async).
ExplainFunction = Callable[[np.ndarray, int], Any]

#: The ReX settings a ``rex:`` spec may set, with their defaults (``iters`` is reduced from
#: ReX's 20: a robustness metric re-explains hundreds of inputs).
REX_DEFAULTS: dict[str, int] = {"iters": 5, "tree_depth": 10, "min_box_size": 10}
#: ``search_limit`` (no limit by default) and ``seed`` may also be set.
REX_OPTIONAL = ("search_limit", "seed")


#: The warnings already given by re-explanations (set while they run; their tasks inherit
#: it): a suspicious baseline or an empty map is said once per run, not once per noisy copy.
_SEEN: ContextVar[set[str] | None] = ContextVar("rex_stream_re_explained_warnings", default=None)
#: The loggers of the search's warnings.
_SEARCH_LOGGERS = ("rex_stream.runs.rex", "rex_stream.causal.baseline_check")


class _OncePerRun(logging.Filter):
    """Lets each distinct message through once while re-explaining; everything otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        seen = _SEEN.get()
        if seen is None:
            return True
        text = record.getMessage()
        if text in seen:
            return False
        seen.add(text)
        return True


_ONCE = _OncePerRun()
for _name in _SEARCH_LOGGERS:
    logging.getLogger(_name).addFilter(_ONCE)


@contextmanager
def warnings_once() -> Iterator[None]:
    """Within, the re-explanations' warnings are given once each (one run's scope)."""
    token = _SEEN.set(set())
    try:
        yield
    finally:
        _SEEN.reset(token)


@dataclass(frozen=True)
class RexExplainer:
    """rex-stream's ReX search as a re-explainer (``rex:iters=5``)."""

    iters: int = REX_DEFAULTS["iters"]
    tree_depth: int = REX_DEFAULTS["tree_depth"]
    min_box_size: int = REX_DEFAULTS["min_box_size"]
    search_limit: int | None = None
    #: the search's seed; None: the run config's ``search.seed``, else 0 (never random, so a
    #: metric's score does not change from run to run)
    seed: int | None = None

    @property
    def spec(self) -> str:
        """The spec that makes this explainer again."""
        given = {
            "iters": self.iters,
            "tree_depth": self.tree_depth,
            "min_box_size": self.min_box_size,
            "search_limit": self.search_limit,
            "seed": self.seed,
        }
        shown = [f"{k}={v}" for k, v in given.items() if v is not None]
        return "rex:" + ",".join(shown)

    def configured(self, config: ExplainConfig, target: int) -> ExplainConfig:
        """The run's config with this budget, the target fixed and no extraction or curves."""
        search = replace(
            config.search,
            iters=self.iters,
            tree_depth=self.tree_depth,
            min_box_size=self.min_box_size,
            search_limit=self.search_limit,
            seed=self.seed if self.seed is not None else config.search.seed or 0,
        )
        return replace(
            config,
            search=search,
            scoring=replace(config.scoring, target=target),
            extraction=replace(config.extraction, extract=False),
            evaluation=replace(config.evaluation, analyse=False),
        )

    def estimate_queries(self, spatial_shape: tuple[int, ...]) -> int:
        """A rough number of model queries one re-explanation sends (for plans): the target's
        prediction and the checks, then per iteration 14 mutants per level of the box tree."""
        side = max(spatial_shape) if spatial_shape else 1
        levels = max(1, math.ceil(math.log2(max(side / max(self.min_box_size, 1), 1.0))) + 2)
        per_iteration = 14 * min(self.tree_depth, levels)
        if self.search_limit is not None:
            per_iteration = min(per_iteration, self.search_limit)
        return 3 + self.iters * per_iteration

    async def __call__(
        self,
        x: np.ndarray,
        target: int,
        scheduler: Scheduler,
        info: ModelInfo,
        config: ExplainConfig,
    ) -> np.ndarray:
        """Explain ``x`` for ``target`` through ``scheduler``; the responsibility map."""
        found, _ = await self.explain_counted(x, target, scheduler, info, config)
        return found

    async def explain_counted(
        self,
        x: np.ndarray,
        target: int,
        scheduler: Scheduler,
        info: ModelInfo,
        config: ExplainConfig,
    ) -> tuple[np.ndarray, int]:
        """The responsibility map and the model queries the search sent."""
        seen = _SEEN.get()
        token = _SEEN.set(seen if seen is not None else set())
        try:
            explanation = await explain_input(x, info, scheduler, self.configured(config, target))
        finally:
            _SEEN.reset(token)
        return np.asarray(explanation.responsibility, np.float64), explanation.stats.queries


@dataclass(frozen=True)
class FunctionExplainer:
    """A user's ``(x, target) -> map`` function as a re-explainer (``python:mod:fn``)."""

    function: ExplainFunction
    name: str

    @property
    def spec(self) -> str:
        """The spec that makes this explainer again."""
        return f"python:{self.name}"

    def estimate_queries(self, spatial_shape: tuple[int, ...]) -> int:
        """The function calls its own model: no queries through the scheduler."""
        return 0

    async def __call__(
        self,
        x: np.ndarray,
        target: int,
        scheduler: Scheduler,
        info: ModelInfo,
        config: ExplainConfig,
    ) -> np.ndarray:
        """Call the function (in a worker thread if it is sync) and check its map."""
        try:
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(x, target)
            else:
                result = await anyio.to_thread.run_sync(self.function, x, target)
                if inspect.isawaitable(result):
                    result = await result
        except RexStreamError:
            raise
        except Exception as exc:  # the user's explainer failed: one line naming it
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise InputError(
                f"explainer python:{self.name} raised {type(exc).__name__}"
                + (f": {message}" if message else "")
            ) from exc
        return _as_map(result, x, info, self.name)


def _as_map(result: Any, x: np.ndarray, info: ModelInfo, name: str) -> np.ndarray:
    """The function's answer as float64; a leading batch or channel axis of 1 is dropped."""
    try:
        array = np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"explainer {name} returned {type(result).__name__}, not an array of numbers"
        ) from None
    while array.ndim > 1 and array.shape[0] == 1 and array.ndim >= x.ndim:
        array = array[0]
    if array.size == 0 or array.ndim > x.ndim:
        raise InputError(
            f"explainer {name} returned a map of shape {array.shape} for an input of shape "
            f"{x.shape}"
        )
    if not np.isfinite(array).all():
        raise InputError(f"explainer {name} returned a map with NaN or infinite values")
    return array


def explainer_from_spec(spec: str) -> RexExplainer | FunctionExplainer:
    """``"rex"``, ``"rex:iters=5,tree_depth=6"`` or ``"python:module:function"``."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    if kind.strip().lower() == "rex":
        return _rex_from_settings(rest)
    if kind.strip().lower() == "python":
        module_name, sep, function_name = rest.partition(":")
        if not sep or not module_name.strip() or not function_name.strip():
            raise ConfigError(f"--explainer {spec!r}: expected python:module:function")
        return explainer_from_function(
            _load_function(module_name.strip(), function_name.strip(), spec)
        )
    raise ConfigError(
        f"--explainer {spec!r}: expected rex[:iters=N,tree_depth=N,min_box_size=N,"
        "search_limit=N,seed=N] or python:module:function"
    )


def explainer_from_function(function: ExplainFunction) -> FunctionExplainer:
    """Wrap a ``(x, target) -> map`` callable (sync or async)."""
    if not callable(function):
        raise ConfigError(f"explainer {function!r} is not callable")
    named = function if hasattr(function, "__qualname__") else type(function)
    module = getattr(named, "__module__", None) or "?"
    return FunctionExplainer(function, f"{module}:{getattr(named, '__qualname__', repr(named))}")


def _rex_from_settings(text: str) -> RexExplainer:
    values: dict[str, int] = {}
    allowed = (*REX_DEFAULTS, *REX_OPTIONAL)
    for item in (part.strip() for part in text.replace(":", ",").split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ConfigError(
                f"--explainer rex: unknown setting {item!r}; settings: {', '.join(allowed)}"
            )
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(
                f"--explainer rex: {key}={raw.strip()!r} must be an integer"
            ) from None
        if value < 0 or (value == 0 and key != "seed"):
            raise ConfigError(f"--explainer rex: {key}={value} must be > 0")
        values[key] = value
    return RexExplainer(**values)


def _load_function(module_name: str, function_name: str, spec: str) -> ExplainFunction:
    try:
        module = import_from_cwd_first(module_name)
    except ImportError as exc:
        raise ConfigError(f"--explainer {spec!r}: cannot import {module_name}: {exc}") from None
    function: Any = module
    for part in function_name.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise ConfigError(f"--explainer {spec!r}: {module_name} has no {function_name}")
    if not callable(function):
        raise ConfigError(f"--explainer {spec!r}: {function_name} is not callable")
    return function


def as_re_explainer(explainer: str | ReExplain | ExplainFunction) -> ReExplain:
    """A spec, a re-explainer, or a user's ``(x, target) -> map`` function as a re-explainer
    (a callable of two parameters is taken for a user's function)."""
    if isinstance(explainer, str):
        return explainer_from_spec(explainer)
    if isinstance(explainer, (RexExplainer, FunctionExplainer)):
        return explainer
    if not callable(explainer):
        raise ConfigError(f"explainer {explainer!r} is neither a spec nor a callable")
    try:
        parameters = inspect.signature(explainer).parameters.values()
    except (TypeError, ValueError):
        return explainer  # type: ignore[return-value]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 2:
        return explainer_from_function(explainer)  # type: ignore[arg-type]
    return explainer  # type: ignore[return-value]


def explainer_name(explainer: ReExplain) -> str:
    """How a re-explainer is shown and recorded (its spec, or its function's name)."""
    spec = getattr(explainer, "spec", None)
    if isinstance(spec, str):
        return spec
    named = explainer if hasattr(explainer, "__qualname__") else type(explainer)
    return f"{getattr(named, '__module__', '?')}:{getattr(named, '__qualname__', repr(named))}"


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
        return _as_map(found, x, self.info, self.name), 0

    def _keep(self, key: tuple[bytes, int], found: np.ndarray, queries: int) -> None:
        if found.nbytes > self._cache_bytes:
            return
        self._maps[key] = (found, queries)
        self._held += found.nbytes
        while self._held > self._cache_bytes:
            _, (dropped, _) = self._maps.popitem(last=False)
            self._held -= dropped.nbytes
