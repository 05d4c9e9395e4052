"""Shrinking a sufficient explanation (rex_stream/causal/shrink.py): through a real ONNX two-patch
model, a flat map's large explanation shrinks to (part of) one patch and still suffices; the
result does not depend on batch size, calls in flight or completion order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.causal.extraction import Sufficiency, extract_global
from rex_stream.causal.shrink import pieces_of, shrink
from rex_stream.config import ExtractionConfig, SchedulerConfig, ScoringConfig
from rex_stream.engine.backend import Backend
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from tests.causal.test_extraction_determinism import CARRIAGES, hash_oracle
from tests.onnx_models import PATCHES, save_two_patch_model, two_patch_image


@pytest.fixture(scope="module")
def two_patch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_two_patch_model(tmp_path_factory.mktemp("models") / "two_patches.onnx")


def _session_backend(model: Path) -> PythonBackend:
    session = ort.InferenceSession(str(model))
    return PythonBackend(lambda b: session.run(None, {"input": b})[0], (1, 24, 24))


def _global_then_shrink(
    backend: Backend,
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    extraction: ExtractionConfig,
    carriage: tuple[int, int] = (8, 2),
) -> tuple[Sufficiency, Sufficiency]:
    batch, inflight = carriage

    async def go() -> tuple[Sufficiency, Sufficiency]:
        config = SchedulerConfig(max_batch=batch, max_inflight=inflight, linger_ms=0.0)
        async with Scheduler(backend, config) as scheduler:
            args = (subject, responsibility, target, scheduler)
            found = await extract_global(*args, extraction, ScoringConfig())
            shrunk = await shrink(*args[:2], found, *args[2:], extraction, ScoringConfig())
            return found, shrunk

    return anyio.run(go)


def _shown_class(model: Path, mask: np.ndarray) -> int:
    image = two_patch_image()
    shown = np.where(mask, image[0], 0.0)[None, None].astype(np.float32)
    return int(ort.InferenceSession(str(model)).run(None, {"input": shown})[0].argmax())


def test_pieces_cover_the_mask_least_responsible_first() -> None:
    mask = np.zeros((16, 16), bool)
    mask[2:10, 2:14] = True
    responsibility = np.tile(np.arange(16, dtype=np.float32), (16, 1))  # grows to the right
    labels = pieces_of(mask, responsibility, pieces=8)
    assert np.all((labels >= 0) == mask)
    count = int(labels.max()) + 1
    assert 4 <= count <= 16
    means = [responsibility[labels == i].sum() for i in range(count)]
    assert means == sorted(means)


def test_a_flat_maps_explanation_shrinks_and_still_suffices(two_patch_model: Path) -> None:
    image = two_patch_image()
    subject = Subject("patches", image, (1, 2), 0.0, "L")
    responsibility = np.ones((24, 24), np.float32)  # flat: ties revealed by index
    target = Target(1, 1.0)
    extraction = ExtractionConfig(chunk_size=4, shrink_rounds=3)
    found, shrunk = _global_then_shrink(
        _session_backend(two_patch_model), subject, responsibility, target, extraction
    )
    assert shrunk.mask.sum() < found.mask.sum() / 3
    assert not np.any(shrunk.mask & ~found.mask)
    assert shrunk.queries > found.queries
    assert _shown_class(two_patch_model, shrunk.mask) == 1
    # what is left lies mostly in a patch
    patches = np.zeros((24, 24), bool)
    for patch in PATCHES:
        patches[patch] = True
    assert (shrunk.mask & patches).sum() >= 0.5 * shrunk.mask.sum()


@pytest.mark.parametrize("seed", range(3))
def test_shrink_does_not_depend_on_how_probes_are_carried(seed: int) -> None:
    """A non-monotone hash model with out-of-order completion: the same mask, confidence and
    queries for every batch size and concurrency."""
    rng = np.random.default_rng(seed)
    subject = Subject("grid", rng.random((1, 16, 16), dtype=np.float32), (1, 2), 0.0, "L")
    responsibility = rng.integers(0, 40, size=(16, 16)).astype(np.float32)
    backend = hash_oracle(pass_below=int(rng.integers(60, 120)))
    extraction = ExtractionConfig(chunk_size=2, shrink_rounds=2)
    results = [
        _global_then_shrink(backend, subject, responsibility, Target(1, 1.0), extraction, c)[1]
        for c in CARRIAGES
    ]
    for carriage, result in zip(CARRIAGES[1:], results[1:]):
        assert np.array_equal(result.mask, results[0].mask), carriage
        assert (result.confidence, result.queries) == (results[0].confidence, results[0].queries)


def test_shrink_rounds_shrink_an_explained_image_end_to_end(two_patch_model: Path) -> None:
    settings = {"iters": 4, "seed": 3, "min_box_size": 4, "chunk_size": 2}
    plain = explain_sync(
        two_patch_image(), _session_backend(two_patch_model), shrink_rounds=0, **settings
    )
    shrunk = explain_sync(two_patch_image(), _session_backend(two_patch_model), **settings)
    assert np.array_equal(plain.responsibility, shrunk.responsibility)
    assert shrunk.mask.sum() <= plain.mask.sum()
    assert not np.any(shrunk.mask & ~plain.mask)
    assert _shown_class(two_patch_model, shrunk.mask) == 1


def test_shrink_rounds_is_a_setting_of_its_own(tmp_path: Path) -> None:
    from rex_stream.errors import ConfigError
    from rex_stream.rex_compat.config_file import load_config

    assert ExtractionConfig().shrink_rounds == 2  # the default (bench/RESULTS.md, issue 26)
    with pytest.raises(ConfigError):
        ExtractionConfig(shrink_rounds=-1)
    assert replace(ExtractionConfig(), shrink_rounds=3).shrink_rounds == 3
    toml = tmp_path / "rex.toml"
    toml.write_text("[explanation]\nshrink_rounds = 0\n")
    assert load_config(toml).extraction.shrink_rounds == 0


def test_multi_shrinks_a_first_explanation_that_holds_both_patches(two_patch_model: Path) -> None:
    """The map interleaves the two patches' pixels, so the global explanation holds about half
    of each and the input without it suffices no more: only after shrinking it to one patch
    does the rest give a second, disjoint explanation."""
    from rex_stream.causal.multi import extract_multi
    from rex_stream.config import MultiConfig

    image = two_patch_image()
    subject = Subject("patches", image, (1, 2), 0.0, "L")
    responsibility = np.zeros((24, 24), np.float32)
    cells = [np.argwhere(np.ones((6, 6))) + np.array([p[0].start, p[1].start]) for p in PATCHES]
    for k, (a, b) in enumerate(zip(*cells)):
        responsibility[tuple(a)] = 100 - 2 * k
        responsibility[tuple(b)] = 99 - 2 * k
    extraction = ExtractionConfig(chunk_size=1)

    async def go() -> object:
        async with Scheduler(_session_backend(two_patch_model), SchedulerConfig()) as scheduler:
            return await extract_multi(
                subject,
                responsibility,
                Target(1, 1.0),
                scheduler,
                extraction,
                MultiConfig(spotlights=1),
                ScoringConfig(),
                seed=0,
            )

    multi = anyio.run(go)
    first = multi.found[0].mask  # type: ignore[attr-defined]
    assert all(first[patch].any() for patch in PATCHES)
    kept = [e.mask for e in multi.kept]  # type: ignore[attr-defined]
    assert len(kept) == 2
    assert not np.any(kept[0] & kept[1])
    assert all(_shown_class(two_patch_model, m) == 1 for m in kept)
