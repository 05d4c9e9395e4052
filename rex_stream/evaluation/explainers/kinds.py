"""The two kinds of re-explainer: rex-stream's ReX search, and a user's function.

A re-explainer is one async function (:data:`ReExplain`): given an input tensor in model space
(the model's input shape without the batch axis), the class to explain, the scheduler of the
model to explain, its :class:`ModelInfo` and the run's config, it returns a map over the
input's spatial axes (float64).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError, RexStreamError
from rex_stream.evaluation.explainers.once import search_scope
from rex_stream.runs.rex import explain_input  # a public name of the run below

#: ``(x, target, scheduler, info, config) -> map over x's spatial axes`` (float64).
ReExplain = Callable[[np.ndarray, int, Scheduler, ModelInfo, ExplainConfig], Awaitable[np.ndarray]]

#: A user's explanation function: ``(x, target) -> map`` (sync or async).
ExplainFunction = Callable[[np.ndarray, int], Any]

#: The ReX settings a ``rex:`` spec may set, with their defaults (``iters`` is reduced from
#: ReX's 20: a robustness metric re-explains hundreds of inputs).
REX_DEFAULTS: dict[str, int] = {"iters": 5, "tree_depth": 10, "min_box_size": 10}
#: ``search_limit`` (no limit by default) and ``seed`` may also be set.
REX_OPTIONAL = ("search_limit", "seed")


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
        with search_scope():
            explanation = await explain_input(x, info, scheduler, self.configured(config, target))
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
        return as_map(result, x, self.name)


def as_map(result: Any, x: np.ndarray, name: str) -> np.ndarray:
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


def spatial_map(explained: np.ndarray, subject: Subject) -> np.ndarray:
    """A re-explainer's answer as a float64 map over the subject's spatial axes."""
    array = np.asarray(explained, np.float64)
    if array.shape != subject.spatial_shape:
        if array.size != subject.size:
            raise InputError(
                f"the explainer returned a map of shape {array.shape}; the input's spatial "
                f"shape is {subject.spatial_shape}"
            )
        array = array.reshape(subject.spatial_shape)
    return array
