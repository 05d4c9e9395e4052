"""The bounded path for large inputs (rankings read slab by slab) gives exactly the sets and
scores of the whole-array path; checked on small inputs with the threshold lowered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rex_stream import evaluate_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.engine.ranking import rank_elements, rank_positions
from rex_stream.errors import ConfigError
from rex_stream.evaluation import ranked
from tests.onnx_models import patch_weights, planted_image

METRICS = (
    "pixel-flipping:features_in_step=40,selectivity:patch_size=5,"
    "region-perturbation:patch_size=4:regions_evaluation=20,"
    "faithfulness-estimate:features_in_step=30,pixel-flipping:features_in_step=64:abs=true"
)


def _maps() -> dict[str, np.ndarray]:
    on_patch = patch_weights()[0, 0] + np.linspace(0, 0.01, 576).reshape(24, 24)
    noise = np.random.default_rng(1).normal(size=(24, 24))
    # few levels, so counts cut through runs of ties; multiples of 0.5 up to 2.0 normalise and
    # sum exactly, so patch sums tie exactly whatever the order they are summed in
    ties = np.clip(np.round(noise * 2) / 2, -2.0, 2.0)
    ties[0, 0] = 2.0
    return {
        "on": on_patch.astype(np.float32),
        "ties": ties,
        "signed": (noise - 0.3).astype(np.float32),
    }


@pytest.mark.parametrize("seed", range(6))
def test_level_ranking_takes_the_sets_rank_elements_gives(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(50, 3000))
    values = [
        rng.normal(size=size),
        rng.integers(-2, 3, size=size).astype(float),
        np.where(rng.random(size) < 0.5, 0.0, -0.0),
        rng.normal(size=size) * (rng.random(size) < 0.2),
    ][seed % 4].astype([np.float32, np.float64][seed % 2])
    use_abs = seed % 3 == 0
    position = rank_positions(rank_elements(np.abs(values) if use_abs else values))
    counts = sorted({int(c) for c in rng.integers(0, size + 2, size=12)})
    ranking = ranked.LevelRanking(values, counts, use_abs=use_abs)
    for count in counts:
        chosen = np.concatenate(
            [ranking.first(count, a, b) for a, b in ranked.slab_ranges((size,), 97)]
        )
        np.testing.assert_array_equal(chosen, position < count)
    inside = [c for c in counts if c > 0]
    in_order = (np.abs(values) if use_abs else values).astype(np.float64)[np.argsort(position)]
    expected = np.diff([0.0, *(in_order[:c].sum() for c in inside)])
    np.testing.assert_allclose(ranking.band_sums(inside), expected, rtol=1e-9, atol=1e-9)


def _run(inputs: np.ndarray, backend: object, maps: dict[str, np.ndarray]) -> dict:
    result = evaluate_sync(inputs, backend, maps, METRICS, seed=3)
    return result.inputs[0].results


def _compare(whole: dict, bounded: dict) -> None:
    for name, metrics in whole.items():
        for label, result in metrics.items():
            other = bounded[name][label]
            assert other.score == pytest.approx(result.score, rel=1e-9, abs=1e-12), label
            if result.curve is not None:
                np.testing.assert_allclose(other.curve, result.curve, rtol=1e-9, atol=1e-12)


def test_bounded_path_scores_an_image_as_the_whole_path(
    patch_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _run(planted_image(), str(patch_model), _maps())
    monkeypatch.setattr(ranked, "LARGE_FEATURES", 100)
    monkeypatch.setattr(ranked, "SLAB_ELEMENTS", 50)  # slabs of 2 rows: ties span slabs
    bounded = _run(planted_image(), str(patch_model), _maps())
    _compare(whole, bounded)


def test_bounded_path_scores_a_volume_as_the_whole_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    volume = rng.random((10, 9, 8)).astype(np.float32)
    weights = rng.normal(size=volume.shape)

    def model(batch: np.ndarray) -> np.ndarray:
        level = (batch.reshape(len(batch), -1) * weights.reshape(-1)).sum(axis=1)
        return np.stack([np.zeros_like(level), level / 10], axis=1)

    backend = PythonBackend(model, volume.shape, max_batch=7)
    rounded = np.clip(np.round(weights), -2.0, 2.0).astype(np.float32)
    rounded[0, 0, 0] = 2.0  # exact after normalising: patch sums tie exactly
    maps = {"w": weights, "rounded": rounded}
    whole = _run(volume, backend, maps)
    monkeypatch.setattr(ranked, "LARGE_FEATURES", 100)
    monkeypatch.setattr(ranked, "SLAB_ELEMENTS", 150)
    bounded = _run(volume, backend, maps)
    _compare(whole, bounded)


def test_bounded_path_refuses_a_baseline_drawn_per_step(
    patch_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ranked, "LARGE_FEATURES", 100)
    with pytest.raises(ConfigError, match="draws a value per step"):
        evaluate_sync(
            planted_image(),
            str(patch_model),
            _maps()["on"],
            "pixel-flipping:features_in_step=64:perturb_baseline=uniform",
        )
