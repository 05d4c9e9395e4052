"""Re-explainers: the ReX search through a shared scheduler, user callables, and their specs."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError, InputError, raise_first_error
from rex_stream.evaluation.explainers import (
    FunctionExplainer,
    RexExplainer,
    explainer_from_function,
    explainer_from_spec,
)
from rex_stream.evaluation.session import scoring_session
from tests.onnx_models import PATCH, planted_image


def brightness(x: np.ndarray, target: int) -> np.ndarray:
    """A deterministic explainer: the input's brightness, as a (1, H, W) map."""
    return x.sum(axis=0, keepdims=True) * (target + 1)


async def async_brightness(x: np.ndarray, target: int) -> np.ndarray:
    return brightness(x, target)


async def _explain_all(model: Path, explainer: object, inputs: list[np.ndarray]) -> tuple:
    with raise_first_error():
        return await _explain_each(model, explainer, inputs)


async def _explain_each(model: Path, explainer: object, inputs: list[np.ndarray]) -> tuple:
    async with scoring_session(str(model), ExplainConfig(), None) as session:
        info, config, scheduler = session.info, session.config, session.engine.scheduler
        maps: list[np.ndarray | None] = [None] * len(inputs)

        async def one(index: int) -> None:
            maps[index] = await explainer(inputs[index], 1, scheduler, info, config)  # type: ignore[operator]

        async with anyio.create_task_group() as group:
            for index in range(len(inputs)):
                group.start_soon(one, index)
        return maps, scheduler.stats


def test_rex_re_explains_through_the_shared_scheduler(patch_model: Path) -> None:
    explainer = explainer_from_spec("rex:iters=3")
    assert isinstance(explainer, RexExplainer) and explainer.iters == 3
    inputs = [planted_image() + np.float32(0.001 * i) for i in range(6)]
    maps, stats = anyio.run(_explain_all, patch_model, explainer, inputs)
    for found in maps:
        assert found is not None and found.shape == (24, 24) and found.dtype == np.float64
        # the planted patch is what the model looks at: it holds the most responsibility
        assert found[PATCH].mean() > 2 * np.delete(found.ravel(), 0).mean()
    # six concurrent searches share batches: far fewer calls than rows
    assert stats.mutants > 3 * stats.calls
    again, _ = anyio.run(_explain_all, patch_model, explainer, inputs[:1])
    np.testing.assert_array_equal(again[0], maps[0])  # seeded: the same map again


def test_python_explainers_sync_and_async(patch_model: Path) -> None:
    x = planted_image()
    for function in (brightness, async_brightness):
        explainer = explainer_from_function(function)
        maps, stats = anyio.run(_explain_all, patch_model, explainer, [x])
        np.testing.assert_allclose(maps[0], x[0] * 2)
        assert maps[0].shape == (24, 24)  # the leading axis of 1 is dropped
        assert stats.mutants == 0  # the function calls no model through the scheduler
    spec = explainer_from_spec("python:tests.evaluation.test_explainers:brightness")
    assert isinstance(spec, FunctionExplainer) and spec.function.__name__ == "brightness"
    assert spec.spec == "python:tests.evaluation.test_explainers:brightness"


def test_a_bad_map_is_one_error(patch_model: Path) -> None:
    explainer = explainer_from_function(lambda x, target: "no map")
    with pytest.raises(InputError, match="not an array of numbers"):
        anyio.run(_explain_all, patch_model, explainer, [planted_image()])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lime", "expected rex"),
        ("rex:iterations=3", "unknown setting 'iterations=3'; settings: iters"),
        ("rex:iters=x", "iters='x' must be an integer"),
        ("rex:iters=0", "iters=0 must be > 0"),
        ("python:nomodule", "expected python:module:function"),
        ("python:no_such_module_here:f", "cannot import no_such_module_here"),
        ("python:tests.evaluation.test_explainers:missing", "has no missing"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        explainer_from_spec(spec)
    assert "\n" not in str(caught.value)


def test_rex_settings() -> None:
    explainer = explainer_from_spec("rex:iters=4,tree_depth=6:search_limit=50")
    assert explainer == RexExplainer(iters=4, tree_depth=6, search_limit=50)
    assert explainer.spec == "rex:iters=4,tree_depth=6,min_box_size=10,search_limit=50"
    assert explainer_from_spec("rex:seed=0").configured(ExplainConfig(), 1).search.seed == 0  # type: ignore[union-attr]
    config = explainer.configured(ExplainConfig(), 7)  # type: ignore[union-attr]
    assert config.search.iters == 4 and config.scoring.target == 7
    assert not config.extraction.extract and not config.evaluation.analyse
    assert explainer_from_spec("rex") == RexExplainer()
