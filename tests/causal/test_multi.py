"""Multiple explanations on real onnxruntime sessions: a model with two planted patches, either
of which suffices, must give both; results must not depend on batch size or concurrency."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest
import zarr

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.causal import multi
from rex_stream.causal.multi import extract_multi
from rex_stream.causal.separation import dice_matrix, max_independent_set, separate
from rex_stream.config import ExtractionConfig, MultiConfig, SchedulerConfig, ScoringConfig
from rex_stream.engine.scheduler import CountingEvaluator, Scheduler, continue_after
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.result import Explanation
from tests.onnx_models import PATCHES, save_two_patch_model, two_patch_image

SETTINGS = {
    "iters": 10,
    "seed": 5,
    "min_box_size": 4,
    "strategy": "multi",
    "spotlights": 8,
    "spatial_initial_radius": 3,
    "chunk_size": 2,
}


@pytest.fixture(scope="module")
def two_patch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_two_patch_model(tmp_path_factory.mktemp("models") / "two_patches.onnx")


def _backend(model: Path, max_batch: int = 32) -> PythonBackend:
    session = ort.InferenceSession(str(model))
    return PythonBackend(
        lambda b: session.run(None, {"input": b})[0], (1, 24, 24), max_batch=max_batch
    )


def _explain(model: Path, **overrides: object) -> Explanation:
    return explain_sync(two_patch_image(), _backend(model), **{**SETTINGS, **overrides})


def _patch_masks() -> list[np.ndarray]:
    masks = []
    for patch in PATCHES:
        mask = np.zeros((24, 24), bool)
        mask[patch] = True
        masks.append(mask)
    return masks


def test_both_planted_patches_are_found_and_each_suffices(two_patch_model: Path) -> None:
    result = _explain(two_patch_model)
    assert result.target.classification == 1
    assert result.multi is not None
    kept = [e.mask for e in result.multi.kept]
    assert len(kept) >= 2
    # every kept explanation is disjoint from the others (permitted_overlap 0) …
    dice = dice_matrix(kept)
    assert np.all(dice[~np.eye(len(kept), dtype=bool)] == 0)
    # … one lies in each patch …
    for patch in _patch_masks():
        assert any((m & patch).sum() / m.sum() > 0.8 for m in kept)
    # … and each is sufficient when checked on its own through the model
    session = ort.InferenceSession(str(two_patch_model))
    image = two_patch_image()
    for mask in kept:
        shown = np.where(mask, image[0], 0.0)[None, None].astype(np.float32)
        assert session.run(None, {"input": shown})[0].argmax() == 1


@pytest.mark.parametrize(("batch", "inflight"), [(1, 1), (5, 3), (64, 8)])
def test_multi_does_not_depend_on_batch_size_or_concurrency(
    two_patch_model: Path, batch: int, inflight: int
) -> None:
    reference = _explain(two_patch_model, max_batch=32, max_inflight=2)
    candidate = explain_sync(
        two_patch_image(),
        _backend(two_patch_model, max_batch=batch),
        **{**SETTINGS, "max_batch": batch, "max_inflight": inflight},
    )
    assert reference.multi is not None and candidate.multi is not None
    assert len(candidate.multi.found) == len(reference.multi.found)
    for a, b in zip(candidate.multi.found, reference.multi.found):
        assert a.index == b.index and a.centre == b.centre
        assert np.array_equal(a.mask, b.mask)
    assert [e.index for e in candidate.multi.kept] == [e.index for e in reference.multi.kept]


@pytest.mark.parametrize("objective", ["mean", "max"])
def test_climbing_spotlights_find_both_patches(two_patch_model: Path, objective: str) -> None:
    result = _explain(two_patch_model, spotlight_objective_function=objective)
    assert result.multi is not None and len(result.multi.kept) >= 2


def test_the_store_holds_every_kept_explanation(two_patch_model: Path, tmp_path: Path) -> None:
    store = tmp_path / "multi.zarr"
    result = explain_sync(two_patch_image(), _backend(two_patch_model), store=store, **SETTINGS)
    assert result.multi is not None
    group = zarr.open_group(str(store), mode="r")[result.subject.name]
    stacked = np.asarray(group["explanations"][:])
    assert stacked.dtype == np.uint8 and stacked.shape == (len(result.multi.kept), 24, 24)
    for row, found in zip(stacked, result.multi.kept):
        assert np.array_equal(row.astype(bool), found.mask)
    listed = group.attrs["explanations"]
    assert [e["centre"] for e in listed] == [list(e.centre) for e in result.multi.kept]
    assert listed[0]["area"] == pytest.approx(result.multi.kept[0].area)


def test_multi_works_on_one_dimensional_inputs(tmp_path: Path) -> None:
    """Spotlights are intervals in 1-D: a signal with two bumps, either of which suffices."""
    signal = np.zeros(200, np.float32)
    signal[30:40] = 1.0
    signal[150:160] = 1.0

    def score(batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(len(batch), -1)
        best = np.maximum(flat[:, 30:40].sum(1), flat[:, 150:160].sum(1))
        return np.stack([np.full(len(batch), 4.0), best], axis=1).astype(np.float32)

    backend = PythonBackend(score, (200,))
    result = explain_sync(
        signal,
        backend,
        **{**SETTINGS, "mode": "spectral", "spatial_initial_radius": 8, "iters": 8},
    )
    assert result.multi is not None
    kept = [e.mask for e in result.multi.kept]
    assert len(kept) >= 2
    assert any(m[30:40].any() for m in kept) and any(m[150:160].any() for m in kept)


def test_separation_is_the_largest_conflict_free_set() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 12))
        conflict = rng.random((n, n)) < 0.4
        conflict = np.triu(conflict, 1)
        conflict = conflict | conflict.T
        weights = [int(w) for w in rng.integers(1, 50, n)]
        chosen = max_independent_set(conflict, weights)
        assert not any(conflict[a, b] for a in chosen for b in chosen)
        brute = max(
            (
                s
                for s in range(1 << n)
                if not any(
                    conflict[a, b] and s >> a & 1 and s >> b & 1 for a in range(n) for b in range(n)
                )
            ),
            key=lambda s: (bin(s).count("1"), -sum(weights[i] for i in range(n) if s >> i & 1)),
        )
        assert len(chosen) == bin(brute).count("1")
        assert sum(weights[i] for i in chosen) == sum(
            weights[i] for i in range(n) if brute >> i & 1
        )


def test_separation_drops_empty_and_duplicate_masks() -> None:
    a = np.zeros((4, 4), bool)
    a[0, 0] = True
    b = np.zeros((4, 4), bool)
    b[3, 3] = True
    empty = np.zeros((4, 4), bool)
    assert separate([a, empty, a.copy(), b], 0.0) == [0, 3]
    overlapping = a | b
    assert separate([overlapping, a, b], 0.0) == [1, 2]
    assert separate([overlapping, a], 1.0) == [0, 1]


def test_multi_works_on_volumes() -> None:
    """Spotlights are balls in 3-D: a volume with two bright cubes, either of which suffices."""
    volume = np.zeros((16, 16, 16), np.float32)
    cubes = ((slice(2, 6),) * 3, (slice(10, 14),) * 3)
    for cube in cubes:
        volume[cube] = 1.0

    def score(batch: np.ndarray) -> np.ndarray:
        sums = [batch[(slice(None), *cube)].reshape(len(batch), -1).sum(1) for cube in cubes]
        return np.stack([np.full(len(batch), 20.0), np.maximum(*sums)], axis=1)

    result = explain_sync(
        volume,
        PythonBackend(score, (16, 16, 16)),
        **{**SETTINGS, "mode": "voxel", "spatial_initial_radius": 3, "iters": 8},
    )
    assert result.multi is not None
    kept = [e.mask for e in result.multi.kept]
    assert len(kept) >= 2 and all(m.ndim == 3 for m in kept)
    for cube in cubes:
        assert any(m[cube].any() for m in kept)
    assert all(len(e.centre) == 3 for e in result.multi.kept)


@pytest.mark.parametrize("objective", ["none", "max"])
def test_several_centres_a_round_find_what_one_at_a_time_finds(
    two_patch_model: Path, objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spotlight's centres follow from its draws and the map alone, so probing several a
    round takes the same first passing centre as trying them one by one, in fewer rounds."""
    settings = {**SETTINGS, "spotlight_objective_function": objective, "max_spotlight_budget": 12}
    runs = {}
    for per_round in (1, 4):
        monkeypatch.setattr(multi, "CENTRES_PER_ROUND", per_round)
        runs[per_round] = _explain(two_patch_model, **settings)
    one, several = runs[1], runs[4]
    assert one.multi is not None and several.multi is not None
    assert [(e.index, e.centre) for e in several.multi.found] == [
        (e.index, e.centre) for e in one.multi.found
    ]
    for a, b in zip(several.multi.found, one.multi.found):
        assert np.array_equal(a.mask, b.mask)
    assert [e.index for e in several.multi.kept] == [e.index for e in one.multi.kept]
    assert several.stats.round_trips < one.stats.round_trips
    # at most three spent probes per spotlight that found something
    assert several.stats.queries - one.stats.queries <= 3 * len(one.multi.found)


def test_the_multi_step_follows_the_rounds_before_it(two_patch_model: Path) -> None:
    """The run's critical path: the multi step's rounds come after the search's, however deep
    it was (and its concurrent spotlights count as their deepest)."""
    session = ort.InferenceSession(str(two_patch_model))
    image = two_patch_image()
    subject = Subject("patches", image, (1, 2), 0.0, "L")
    backend = PythonBackend(lambda b: session.run(None, {"input": b})[0], (1, 24, 24))

    async def rounds(behind: int) -> tuple[int, int]:
        async with Scheduler(backend, SchedulerConfig(max_batch=16)) as scheduler:
            counting = CountingEvaluator(scheduler)
            continue_after(behind)
            found = await extract_multi(
                subject,
                image[0],
                Target(1, 0.9),
                counting,
                ExtractionConfig(spatial_initial_radius=3, chunk_size=2),
                MultiConfig(spotlights=4, max_spotlight_budget=6),
                ScoringConfig(),
                seed=3,
            )
            return counting.rounds, found.queries

    (alone, queries), (after, again) = anyio.run(rounds, 0), anyio.run(rounds, 30)
    assert queries == again
    assert after == alone + 30
    assert alone >= 3  # a failed or passing try, the smaller balls, an extraction round
