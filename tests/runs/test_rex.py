"""End-to-end engine tests on real onnxruntime sessions: determinism, planted signal, backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import ExplainConfig, explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.config import Distribution, QueueStyle, ResponsibilityStyle
from tests.onnx_models import PATCH, planted_image


def _map(image: Path, model: Path, **overrides: object) -> np.ndarray:
    settings = {"iters": 6, "seed": 11, "min_box_size": 4, **overrides}
    return explain_sync(image, str(model), **settings).responsibility


@pytest.mark.parametrize("batch", [1, 14, 64])
def test_map_does_not_depend_on_batch_size(tiny_cnn: Path, tiny_image: Path, batch: int) -> None:
    reference = _map(tiny_image, tiny_cnn, max_batch=64, max_inflight=1)
    assert np.array_equal(_map(tiny_image, tiny_cnn, max_batch=batch), reference)


@pytest.mark.parametrize(
    ("inflight", "searches", "linger"), [(1, 1, 0.0), (4, 3, 0.0), (8, 64, 5.0)]
)
def test_map_does_not_depend_on_concurrency(
    tiny_cnn: Path, tiny_image: Path, inflight: int, searches: int, linger: float
) -> None:
    reference = _map(tiny_image, tiny_cnn, max_inflight=2)
    candidate = _map(
        tiny_image,
        tiny_cnn,
        max_inflight=inflight,
        max_concurrent_searches=searches,
        linger_ms=linger,
    )
    assert np.array_equal(candidate, reference)


def test_different_seeds_give_different_maps(tiny_cnn: Path, tiny_image: Path) -> None:
    assert not np.array_equal(
        _map(tiny_image, tiny_cnn, seed=1), _map(tiny_image, tiny_cnn, seed=2)
    )


def test_python_backend_gives_the_same_map_as_onnx(tiny_cnn: Path, tiny_image: Path) -> None:
    session = ort.InferenceSession(str(tiny_cnn))

    async def score(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": batch})[0]

    backend = PythonBackend(score, (3, 32, 32), max_batch=7)
    result = explain_sync(tiny_image, backend, iters=6, seed=11, min_box_size=4)
    assert np.array_equal(result.responsibility, _map(tiny_image, tiny_cnn))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"responsibility_style": ResponsibilityStyle.ADDITIVE},
        {"distribution": Distribution.BETABINOM, "distribution_args": (1.1, 1.1)},
        {"distribution": Distribution.ADAPTIVE},
        {"queue_style": QueueStyle.ALL, "search_limit": 400},
        {"queue_style": QueueStyle.INTERSECTION, "queue_len": 3},
        {"queue_style": QueueStyle.DC, "search_limit": 400},
        {"weighted": True, "concentrate": True},
    ],
    ids=["default", "additive", "betabinom", "adaptive", "all", "intersection", "dc", "weighted"],
)
def test_planted_patch_is_found(patch_model: Path, overrides: dict[str, object]) -> None:
    """The patch model says class 1 only when its bright patch is visible: the map must peak
    there and the sufficient explanation must lie inside it."""
    result = explain_sync(
        planted_image(),
        PythonBackendFor(patch_model),
        iters=12,
        seed=3,
        min_box_size=4,
        **overrides,
    )
    assert result.target.classification == 1
    responsibility = result.responsibility
    inside = np.zeros(responsibility.shape, bool)
    inside[PATCH] = True
    peak = np.unravel_index(np.argmax(responsibility), responsibility.shape)
    assert inside[peak]
    assert responsibility[inside].mean() > 2 * responsibility[~inside].mean()
    mask = result.mask
    assert mask is not None and mask.any()
    assert (mask & inside).sum() / mask.sum() > 0.6
    assert result.stats.passing > 0 and result.stats.failing > 0


def PythonBackendFor(model: Path) -> PythonBackend:
    """The patch model wrapped as a Python-callable backend (greyscale 24 × 24 input)."""
    session = ort.InferenceSession(str(model))
    return PythonBackend(lambda b: session.run(None, {"input": b})[0], (1, 24, 24))


def test_stats_count_every_query(tiny_cnn: Path, tiny_image: Path) -> None:
    result = explain_sync(tiny_image, str(tiny_cnn), iters=3, seed=1, min_box_size=4, analyse=True)
    stats = result.stats
    extraction = result.sufficiency.queries if result.sufficiency else 0
    curves = result.curves.queries if result.curves else 0
    spent = 1 + stats.check_queries + stats.passing + stats.failing + extraction + curves
    assert stats.queries == spent
    assert stats.calls >= stats.queries / 64
    assert 0.0 <= result.curves.insertion_auc <= 1.5  # type: ignore[union-attr]


def test_imagenet_photo(imagenet_model: Path) -> None:
    """The real ImageNet model on a real photo: ladybird → ladybug, compact explanation."""
    config = ExplainConfig().with_overrides(
        means=(0.485, 0.456, 0.406), stds=(0.229, 0.224, 0.225), iters=3, seed=0
    )
    result = explain_sync(
        Path(__file__).parents[2] / "rex_stream/data/ladybird.jpg", str(imagenet_model), config
    )
    assert result.target.classification == 301
    assert result.sufficiency is not None and 0 < result.sufficiency.area < 0.5


def test_bracket_and_linear_extraction_agree_when_sufficiency_is_monotone(
    patch_model: Path,
) -> None:
    """The patch model's verdict only grows as more of the ranking is revealed."""
    results = {
        search: explain_sync(
            planted_image(),
            PythonBackendFor(patch_model),
            iters=8,
            seed=5,
            min_box_size=4,
            chunk_size=1,
            search=search,
        )
        for search in ("linear", "bracket")
    }
    linear, bracket = results["linear"], results["bracket"]
    assert np.array_equal(linear.mask, bracket.mask)
    assert bracket.sufficiency.queries < linear.sufficiency.queries  # type: ignore[union-attr]


def test_progress_stream_ends_with_the_explanation(tiny_cnn: Path, tiny_image: Path) -> None:
    import anyio

    from rex_stream import Explanation, Progress, explain_stream

    async def main() -> list[object]:
        config = ExplainConfig().with_overrides(iters=4, seed=1, min_box_size=4)
        events: list[object] = []
        async with explain_stream(tiny_image, str(tiny_cnn), config) as stream:
            async for event in stream:
                events.append(event)
        return events

    events = anyio.run(main)
    assert isinstance(events[-1], Explanation)
    phases = [e.phase for e in events[:-1] if isinstance(e, Progress)]
    assert phases[0] == "target" and "iteration" in phases and phases[-1] == "done"


def test_many_inputs_share_one_scheduler(tiny_cnn: Path, tiny_image: Path) -> None:
    """explain_many gives each input the map it would get alone."""
    import anyio

    from rex_stream import explain_many

    config = ExplainConfig().with_overrides(iters=3, seed=2, min_box_size=4)
    alone = explain_sync(tiny_image, str(tiny_cnn), config)
    results = anyio.run(
        lambda: explain_many([tiny_image, tiny_image, tiny_image], str(tiny_cnn), config)
    )
    assert len(results) == 3
    for result in results:
        assert np.array_equal(result.responsibility, alone.responsibility)  # type: ignore[union-attr]


def test_spatial_strategy_finds_the_patch(patch_model: Path) -> None:
    """The ball around the peak is where the patch is; the explanation stays inside it."""
    result = explain_sync(
        planted_image(),
        PythonBackendFor(patch_model),
        iters=8,
        seed=4,
        min_box_size=4,
        strategy="spatial",
        spatial_initial_radius=3,
    )
    inside = np.zeros(result.responsibility.shape, bool)
    inside[PATCH] = True
    mask = result.mask
    assert mask is not None and mask.any()
    assert (mask & inside).sum() / mask.sum() > 0.6


def test_contrastive_explanation_is_sufficient_and_necessary(patch_model: Path) -> None:
    """Shown alone the explanation keeps class 1; removed from the image it loses it."""
    session = ort.InferenceSession(str(patch_model))
    result = explain_sync(
        planted_image(),
        PythonBackendFor(patch_model),
        iters=8,
        seed=4,
        min_box_size=4,
        strategy="contrastive",
        chunk_size=2,
    )
    mask = result.mask
    assert mask is not None and 0 < mask.mean() < 1
    image = planted_image()
    shown = np.where(mask, image[0], 0.0)[None, None].astype(np.float32)
    hidden = np.where(mask, 0.0, image[0])[None, None].astype(np.float32)
    assert session.run(None, {"input": shown})[0].argmax() == 1
    assert session.run(None, {"input": hidden})[0].argmax() == 0
