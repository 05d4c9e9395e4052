"""CEM checked against the models themselves: real onnxruntime sessions, held-out inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import explain_cem_sync
from rex_stream.cem import CemConfig
from rex_stream.cli.demo import DEMO_IMAGE, DEMO_MODEL, demo_config
from rex_stream.config import ExplainConfig, ScoreKind
from rex_stream.engine.backend import open_backend
from rex_stream.engine.regions import Regions
from rex_stream.errors import BackendError, ConfigError

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
TABULAR = MODELS / "tabular-breast-cancer.onnx"
SPECTRAL = MODELS / "spectral-markers.onnx"
VOXEL = MODELS / "voxel-blob32.onnx"
HELD_OUT = MODELS / "tabular-breast-cancer-test.csv"


def tabular_config(batch: int | None = None) -> ExplainConfig:
    config = ExplainConfig()
    options = {"baseline": str(MODELS / "tabular-breast-cancer-train.csv")}
    return replace(
        config,
        image=replace(config.image, mode="tabular", mode_options=options),
        scoring=replace(config.scoring, scores=ScoreKind.PROBABILITIES),
        scheduler=replace(config.scheduler, max_batch=batch),
    )


def held_out_rows(count: int) -> list[np.ndarray]:
    table = np.loadtxt(HELD_OUT, delimiter=",", skiprows=1, dtype=np.float32)
    return [row[:-1] for row in table[:count]]


def classify(model: Path, tensor: np.ndarray) -> int:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return int(session.run(None, {name: tensor[None].astype(np.float32)})[0].argmax())


def test_regions_partition_every_mode_shape() -> None:
    features = Regions.grid((30,))
    assert features.count == 30 and features.edge == 1
    intervals = Regions.grid((1356,), 20)
    assert intervals.count == 68 and intervals.sizes().sum() == 1356
    cells = Regions.grid((224, 224))
    assert 64 <= cells.count <= 121 and cells.sizes().min() > 0
    blocks = Regions.grid((32, 32, 32), 8)
    assert blocks.count == 64 and set(blocks.sizes()) == {512}


def test_tabular_pertinent_positive_alone_keeps_the_class() -> None:
    rows = held_out_rows(6)
    results = explain_cem_sync(rows, str(TABULAR), CemConfig(steps=80), tabular_config())
    for row, result in zip(rows, results):
        assert result.found
        assert classify(TABULAR, result.solution) == result.target.classification
        assert result.target.classification == classify(TABULAR, row)
        assert result.values is not None and result.values.sum() < 0.5 * result.regions.count
        assert result.queries <= 1 + 2 * 80 * 41


def test_tabular_pertinent_negative_added_changes_the_class() -> None:
    rows = held_out_rows(6)
    cem = CemConfig(kind="pn", steps=150)
    results = explain_cem_sync(rows, str(TABULAR), cem, tabular_config())
    found = [r for r in results if r.found]
    assert len(found) >= 4
    for result in found:
        assert result.solution is not None
        assert classify(TABULAR, result.solution) != result.target.classification


def test_same_answer_at_batch_sizes_1_and_16() -> None:
    rows = held_out_rows(2)
    cem = CemConfig(steps=12, directions=4)
    one = explain_cem_sync(rows, str(TABULAR), cem, tabular_config(batch=1))
    sixteen = explain_cem_sync(rows, str(TABULAR), cem, tabular_config(batch=16))
    for a, b in zip(one, sixteen):
        assert a.values is not None and b.values is not None
        np.testing.assert_array_equal(a.values, b.values)
        assert a.queries == b.queries and a.margin == b.margin


def test_spectral_pertinent_positive_lies_on_the_marker_and_negative_flips() -> None:
    samples = [str(MODELS / f"spectral-markers-{name}.npy") for name in ("A", "B")]
    results = explain_cem_sync(samples, str(SPECTRAL), CemConfig(region_size=20))
    windows = {1: (360, 380), 2: (880, 900)}  # intervals holding the markers 370–390, 890–910
    for pp in results:
        assert pp.found and pp.solution is not None
        assert classify(SPECTRAL, pp.solution) == pp.target.classification
        assert int(pp.top_regions(1)[0]) * 20 in windows[pp.target.classification]
    (pn,) = explain_cem_sync(
        str(MODELS / "spectral-markers-none.npy"),
        str(SPECTRAL),
        CemConfig(kind="pn", region_size=20),
    )
    assert pn.found and pn.target.classification == 0 and pn.solution is not None
    assert classify(SPECTRAL, pn.solution) != 0


def test_voxel_blob_pertinent_positive_keeps_the_blob() -> None:
    grid = np.indices((32, 32, 32)).astype(np.float32)
    volume = np.exp(-((grid - 20.0) ** 2).sum(axis=0) / (2 * 3.0**2)).astype(np.float32)
    config = replace(ExplainConfig(), image=replace(ExplainConfig().image, mode="voxel"))
    cem = CemConfig(steps=30, directions=8, penalties=(1.0,), region_size=8)
    (pp,) = explain_cem_sync(volume[None], str(VOXEL), cem, config)
    assert pp.target.classification == 1 and pp.found and pp.regions.count == 64
    assert classify(VOXEL, pp.solution) == 1
    assert pp.values is not None and pp.values.sum() < 32
    noise = np.random.default_rng(0).normal(0.0, 0.2, (1, 32, 32, 32)).astype(np.float32)
    (pn,) = explain_cem_sync(noise, str(VOXEL), replace(cem, kind="pn"), config)
    assert pn.target.classification == 0 and pn.found and pn.solution is not None
    assert classify(VOXEL, pn.solution) == 1  # brightening a few blocks plants a blob


def test_imagenet_photo_pertinent_positive_in_a_few_steps() -> None:
    config = demo_config()
    cem = CemConfig(steps=4, directions=3, penalties=(1.0,), region_size=32)
    (result,) = explain_cem_sync(str(DEMO_IMAGE), str(DEMO_MODEL), cem, config)
    assert result.found and result.regions.count == 49
    assert classify(DEMO_MODEL, result.solution) == result.target.classification
    assert result.queries == 1 + 4 * 7


class _FailingOnceCommitted:
    """An ONNX backend that fails once every input has a chain committed in ``store`` (a crash
    in the middle of a run, triggered by the store's state rather than by timing)."""

    def __init__(self, inner: object, store: Path, inputs: int) -> None:
        self.inner, self.store, self.inputs = inner, store, inputs
        self.info = inner.info  # type: ignore[attr-defined]

    def _committed_inputs(self) -> int:
        groups = set()
        for path in self.store.glob("*/cem_chain/*/zarr.json"):
            if json.loads(path.read_text()).get("attributes", {}).get("committed"):
                groups.add(path.parts[-4])
        return len(groups)

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._committed_inputs() >= self.inputs:
            raise RuntimeError("server went away")
        return await self.inner.infer(batch)  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self.inner.aclose()  # type: ignore[attr-defined]


def test_killed_run_resumes_from_the_store_to_the_same_answer(tmp_path: Path) -> None:
    import anyio

    rows = held_out_rows(2)
    cem = CemConfig(steps=30, directions=4, block_steps=5)
    config = tabular_config(batch=8)
    whole = explain_cem_sync(rows, str(TABULAR), cem, config, store=tmp_path / "whole.zarr")

    async def failing() -> object:
        return _FailingOnceCommitted(await open_backend(str(TABULAR)), tmp_path / "cut.zarr", 2)

    broken = anyio.run(failing)
    with pytest.raises(BackendError):
        explain_cem_sync(rows, broken, cem, config, store=tmp_path / "cut.zarr")  # type: ignore[arg-type]
    resumed = explain_cem_sync(
        rows, str(TABULAR), cem, config, store=tmp_path / "cut.zarr", resume=True
    )
    for a, b in zip(whole, resumed):
        assert b.resumed_chains > 0
        assert a.values is not None and b.values is not None
        np.testing.assert_array_equal(a.values, b.values)
        assert a.queries == b.queries
    import zarr

    group = zarr.open_group(str(tmp_path / "cut.zarr"), mode="r")[resumed[0].subject.name]
    stored = np.asarray(group["pertinent_positive"][:])  # type: ignore[index]
    np.testing.assert_allclose(stored, resumed[0].solution)
    assert group.attrs["cem"]["stats"]["queries"] == resumed[0].queries  # type: ignore[index]


def test_pertinent_negative_needs_an_addition_basis() -> None:
    audio = MODELS / "audio-example-left.flac"
    with pytest.raises(ConfigError, match="addition basis"):
        explain_cem_sync(str(audio), str(MODELS / "audio-keywords16k.onnx"), CemConfig(kind="pn"))
