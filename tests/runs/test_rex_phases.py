"""The ReX run's phases called on their own (as a Dask task does): searching ranges of
iterations into a store, then finishing the run from it, gives the uninterrupted run's map."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream import ExplainConfig, explain_sync
from rex_stream.config import Distribution, ExtractionConfig
from rex_stream.engine.scheduler import CountingEvaluator
from rex_stream.engine.session import open_engine
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.modes import load_subject
from rex_stream.runs.rex import explain_input, predict_target
from rex_stream.runs.rex_extract import EXTRACTORS, extractor_name
from rex_stream.runs.rex_search import search_iterations
from rex_stream.runs.rex_store import open_store

CONFIG = ExplainConfig().with_overrides(iters=5, seed=4, min_box_size=4)


def test_ranges_searched_apart_finish_as_one_run(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    store = tmp_path / "phases.zarr"

    async def main() -> tuple[list[int], int]:
        async with open_engine(str(tiny_cnn), CONFIG) as engine:
            subject = load_subject(tiny_image, engine.info, engine.config)
            evaluator = CountingEvaluator(engine.scheduler)
            target = await predict_target(subject, evaluator, engine.config, engine.info)
            ran = []
            for first, stop in ((3, 5), (0, 3), (1, 4)):  # the last finds all of it stored
                opened, seed = open_store(
                    store, "tiny", subject, target, engine.info, engine.config,
                    resume=store.exists(), overwrite=False,
                )  # fmt: skip
                assert opened is not None and seed == 4
                try:
                    searched = await search_iterations(
                        subject, target, evaluator, engine.config, seed, range(first, stop),
                        store=opened,
                    )  # fmt: skip
                finally:
                    opened.close()
                ran.append(searched.ran)
            result = await explain_input(
                tiny_image, engine.info, engine.scheduler, engine.config, store=store,
                resume=True, name="tiny",
            )  # fmt: skip
            assert np.array_equal(result.responsibility, whole.responsibility)
            assert result.summary()["explanation"] == whole.summary()["explanation"]
            return ran, result.stats.resumed_iterations

    whole = explain_sync(tiny_image, str(tiny_cnn), CONFIG)
    ran, resumed = anyio.run(main)
    assert ran == [2, 3, 0]
    assert resumed == CONFIG.search.iters


def test_the_adaptive_distribution_refuses_a_later_range_alone(
    tiny_cnn: Path, tiny_image: Path
) -> None:
    config = CONFIG.with_overrides(distribution=Distribution.ADAPTIVE)

    async def main() -> None:
        async with open_engine(str(tiny_cnn), config) as engine:
            subject = load_subject(tiny_image, engine.info, engine.config)
            evaluator = CountingEvaluator(engine.scheduler)
            target = await predict_target(subject, evaluator, engine.config, engine.info)
            await search_iterations(subject, target, evaluator, engine.config, 4, range(2, 5))

    with pytest.raises(ConfigError, match="adaptive"), raise_first_error():
        anyio.run(main)


@pytest.mark.parametrize(
    ("strategy", "complete", "name"),
    [
        ("global", False, "global"),
        ("spatial", False, "spatial"),
        ("contrastive", True, "complete"),
        ("global", True, "complete"),
        ("multi", True, "multi"),
    ],
)
def test_the_strategy_table_names_one_extractor(strategy: str, complete: bool, name: str) -> None:
    extraction = ExtractionConfig(strategy=strategy, complete=complete)
    assert extractor_name(extraction) == name
    assert name in EXTRACTORS
