"""Extraction gives the same explanation whatever the batch size, concurrency or completion
order: its probes depend only on the map, the settings and the verdicts."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest

from rex_stream import ExplainConfig, explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.causal.extraction import (
    Sufficiency,
    extract_by_levels,
    extract_contrastive,
    extract_global,
    extract_spatial,
)
from rex_stream.causal.multi import extract_multi
from rex_stream.config import ExtractionConfig, MultiConfig, SchedulerConfig, ScoringConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.scheduler import Evaluator, Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.modes import load_subject

Extract = Callable[..., Awaitable[Sufficiency]]


async def extract_several(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """The multi strategy (4 concurrent spotlights, rescue rounds) as one Sufficiency: every
    kept mask stacked, the found explanations' confidences summed, all queries."""
    multi = MultiConfig(spotlights=4, max_spotlight_budget=6, spotlight_objective_function="max")
    found = await extract_multi(
        subject, responsibility, target, scheduler, extraction, multi, scoring, seed=9
    )
    masks = np.stack([e.mask for e in (*found.kept, *found.found)])
    return Sufficiency(masks, sum(e.confidence for e in found.found), found.queries)


STRATEGIES: dict[str, tuple[Extract, dict[str, object]]] = {
    "global-bracket": (extract_global, {"search": "bracket"}),
    "global-linear": (extract_global, {"search": "linear"}),
    "spatial": (extract_spatial, {"strategy": "spatial", "spatial_initial_radius": 2}),
    "contrastive": (extract_contrastive, {"strategy": "contrastive"}),
    "levels": (extract_by_levels, {"search": "bracket"}),
    "multi": (extract_several, {"spatial_initial_radius": 2}),
}

#: (max_batch, max_inflight) pairs; the first is the reference.
CARRIAGES = [(1, 1), (3, 4), (8, 1), (32, 4), (64, 2)]


def hash_oracle(pass_below: int) -> PythonBackend:
    """A model whose verdict is a hash of the row: sufficiency is as far from monotone as it
    gets, so any batch-dependent probe schedule shows. Calls yield a row-dependent number of
    times, so batches in flight together complete out of order."""

    async def score(batch: np.ndarray) -> np.ndarray:
        digests = [hashlib.blake2b(row.tobytes(), digest_size=2).digest() for row in batch]
        for _ in range(digests[0][1] % 5):
            await anyio.lowlevel.checkpoint()
        passing = np.array([d[0] < pass_below for d in digests])
        return np.stack([~passing, passing], axis=1).astype(np.float32)

    return PythonBackend(score, (1, 16, 16))


def run_extraction(
    backend: Backend,
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    strategy: str,
    carriage: tuple[int, int],
    extraction: ExtractionConfig,
    scoring: ScoringConfig | None = None,
) -> Sufficiency:
    """One strategy through a real scheduler with the given batch size and calls in flight."""
    extract, settings = STRATEGIES[strategy]
    extraction = replace(extraction, **settings)  # type: ignore[arg-type]
    batch, inflight = carriage

    async def go() -> Sufficiency:
        config = SchedulerConfig(max_batch=batch, max_inflight=inflight, linger_ms=0.0)
        async with Scheduler(backend, config) as scheduler:
            return await extract(
                subject, responsibility, target, scheduler, extraction, scoring or ScoringConfig()
            )

    return anyio.run(go)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_probes_do_not_depend_on_how_they_are_carried(seed: int, strategy: str) -> None:
    """Property: for random maps (with ties) and a non-monotone model, every strategy returns
    the same mask, confidence and query count for every batch size and concurrency."""
    rng = np.random.default_rng(seed)
    subject = Subject("grid", rng.random((1, 16, 16), dtype=np.float32), (1, 2), 0.0, "L")
    responsibility = rng.integers(0, 40, size=(16, 16)).astype(np.float32)
    backend = hash_oracle(pass_below=int(rng.integers(20, 80)))
    extraction = ExtractionConfig(chunk_size=int(rng.integers(1, 4)))
    results = [
        run_extraction(
            backend, subject, responsibility, Target(1, 1.0), strategy, carriage, extraction
        )
        for carriage in CARRIAGES
    ]
    reference = results[0]
    for carriage, result in zip(CARRIAGES[1:], results[1:]):
        assert np.array_equal(result.mask, reference.mask), carriage
        assert (result.confidence, result.queries) == (reference.confidence, reference.queries)


@pytest.mark.parametrize("strategy", ["global", "spatial", "contrastive"])
def test_explanation_does_not_depend_on_batch_size(
    tiny_cnn: Path, tiny_image: Path, strategy: str
) -> None:
    """End to end on a real ONNX session: map and explanation agree at batches 1, 3, 32."""
    results = [
        explain_sync(
            tiny_image,
            str(tiny_cnn),
            iters=3,
            seed=4,
            min_box_size=4,
            chunk_size=3,
            strategy=strategy,
            spatial_initial_radius=3,
            max_batch=batch,
            max_inflight=inflight,
        )
        for batch, inflight in [(1, 1), (3, 4), (32, 2)]
    ]
    for result in results[1:]:
        assert np.array_equal(result.responsibility, results[0].responsibility)
        assert np.array_equal(result.mask, results[0].mask)
        assert result.sufficiency.queries == results[0].sufficiency.queries  # type: ignore[union-attr]


IMAGENET_NORMALISATION = {"means": (0.485, 0.456, 0.406), "stds": (0.229, 0.224, 0.225)}
CHECKOUT = Path(__file__).resolve().parents[2]
BUNDLED = CHECKOUT / "rex_stream" / "data"
#: The shared photos beside the checkout (CI), or beside a worktree's parent folder.
SHARED_IMAGES = next(
    (
        folder / "shared" / "data" / "images"
        for folder in (CHECKOUT.parent, CHECKOUT.parents[1])
        if (folder / "shared" / "data" / "images").is_dir()
    ),
    CHECKOUT.parent / "shared" / "data" / "images",
)


#: The bundled photo, a shared one, and a scikit-image one (each skipped when missing).
PHOTOS = ["ladybird", "dog", "chelsea"]


def photo_file(name: str, folder: Path) -> Path:
    """The photo ``name`` as a file (scikit-image's are written to ``folder``)."""
    if name == "ladybird":
        return BUNDLED / "ladybird.jpg"
    if name == "chelsea":
        skimage_data = pytest.importorskip("skimage.data")
        from PIL import Image

        Image.fromarray(skimage_data.chelsea()).save(folder / "chelsea.png")
        return folder / "chelsea.png"
    path = SHARED_IMAGES / f"{name}.jpg"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def imagenet_backend() -> Backend:
    from rex_stream.adapters.onnx import OnnxBackend

    return OnnxBackend(BUNDLED / "efficientnet-lite0.onnx", BackendSettings(max_inflight=2))


@pytest.mark.slow
@pytest.mark.parametrize("name", PHOTOS)
def test_imagenet_explanations_do_not_depend_on_batch_or_concurrency(
    name: str, imagenet_backend: Backend, tmp_path: Path
) -> None:
    """The bundled ImageNet model on real photos: the map is computed once, then every
    strategy extracts at batch sizes 1, 3, 8, 32 and 1 or 4 calls in flight."""
    photo = photo_file(name, tmp_path)
    config = ExplainConfig().with_overrides(iters=2, seed=0, **IMAGENET_NORMALISATION)
    result = explain_sync(photo, imagenet_backend, config, extract=False)
    subject = load_subject(photo, imagenet_backend.info, config)
    for strategy in ("global-bracket", "spatial", "contrastive"):
        masks = [
            run_extraction(
                imagenet_backend,
                subject,
                result.responsibility,
                result.target,
                strategy,
                carriage,
                config.extraction,
                config.scoring,
            )
            for carriage in [(1, 1), (3, 4), (8, 1), (32, 4)]
        ]
        for other in masks[1:]:
            assert np.array_equal(other.mask, masks[0].mask), strategy
            assert other.queries == masks[0].queries, strategy
