"""L2X on volumes: the voxel blob model (32³), selections over 8³ blocks, trained and checked
against the model itself; region-shared networks learn where a blob is from a few dozen
volumes, wherever it lies."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy.ndimage import gaussian_filter

from rex_stream import explain_l2x_sync, train_l2x_sync
from rex_stream.cli.main import main
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.l2x import Explainer, L2xConfig
from rex_stream.runs.l2x import load_inputs
from tests.l2x.test_l2x import MODELS, classify, fidelity

VOXEL = MODELS / "voxel-blob32.onnx"
VOXEL_CONFIG = replace(ExplainConfig(), image=replace(ExplainConfig().image, mode="voxel"))
SHARED = L2xConfig(
    k=2,
    region_size=8,
    hidden=16,
    approximator_epochs=20,
    selector_epochs=20,
    max_gap=1.0,
    shared_regions=True,
)


def volumes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth noise volumes like the model's training data; every other one with a bright
    blob at a random centre. Returns ``(N, 1, 32, 32, 32)`` volumes and the centres (−1: none)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(32),) * 3, indexing="ij"))
    out, centres = [], np.full((count, 3), -1)
    for index in range(count):
        noise = gaussian_filter(rng.normal(0.0, 1.0, (32, 32, 32)), sigma=1.2)
        volume = noise / noise.std() * 0.2
        if index % 2 == 0:
            centres[index] = rng.integers(6, 26, 3)
            distance2 = sum((g - c) ** 2 for g, c in zip(grid, centres[index]))
            volume = volume + np.exp(-distance2 / (2 * 3.5**2))
        out.append(volume.astype(np.float32)[None])
    return np.stack(out), centres


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    train, _ = volumes(60, 1)
    return train_l2x_sync(train, str(VOXEL), SHARED, VOXEL_CONFIG)


def test_selections_keep_the_blob_class_on_held_out_volumes(explainer: Explainer) -> None:
    held, centres = volumes(30, 2)
    subjects = load_inputs(held, ModelInfo("m", "input", (1, 32, 32, 32)), VOXEL_CONFIG)
    assert explainer.regions.count == 64
    kept, random_kept = fidelity(explainer, subjects, VOXEL)
    print(f"voxel L2X: selection keeps the prediction {kept:.2f}, random blocks {random_kept:.2f}")
    assert kept >= 0.8 and kept >= random_kept + 0.2
    labels = classify(VOXEL, held)
    hits = []
    for subject, centre, label in zip(subjects, centres, labels):
        if centre[0] >= 0 and label == 1:
            hits.append(bool(explainer.selection_mask(subject)[tuple(centre)]))
    assert np.mean(hits) >= 0.7  # the blob's centre lies in a selected block


def test_explain_a_volume_file_store_and_picture(explainer: Explainer, tmp_path: Path) -> None:
    saved = tmp_path / "voxel.npz"
    explainer.save(saved)
    assert Explainer.load(saved).architecture == "shared_regions"
    held, centres = volumes(2, 3)
    volume = tmp_path / "volume.npy"
    np.save(volume, held[0])
    result = explain_l2x_sync(str(volume), str(saved), str(VOXEL))
    assert result.selection.shape == (32, 32, 32) and result.selection.sum() == 2 * 8**3
    assert result.selection[tuple(centres[0])]
    assert result.kept and result.queries == 2
    store, picture = tmp_path / "l2x.zarr", tmp_path / "selection.png"
    argv = ["l2x", str(volume), "--explainer", str(saved), "--json", "--store", str(store)]
    assert main([*argv, "--output", str(picture)]) == 0
    selection = np.asarray(zarr.open_group(str(store), mode="r")["volume/l2x_selection"])
    np.testing.assert_array_equal(selection != 0, result.selection != 0)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_trains_region_shared_networks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = volumes(12, 4)
    data = tmp_path / "volumes.npy"
    np.save(data, train)
    out = tmp_path / "explainer.npz"
    argv = ["l2x-train", str(data), "--model", str(VOXEL), "--mode", "voxel", "--k", "2"]
    flags = ["--region-size", "16", "--epochs", "2", "--max-gap", "1", "--shared-regions"]
    assert main([*argv, *flags, "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["regions"] == 8
    assert Explainer.load(out).architecture == "shared_regions"
