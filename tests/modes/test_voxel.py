"""Voxel mode against the bundled 3-D CNN (real onnxruntime, real files): a planted blob is
found, NIfTI and .npy load, the montage is drawn, bad inputs give one-line InputErrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rex_stream import explain_sync
from rex_stream.errors import InputError

MODEL = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models" / "voxel-blob32.onnx"
CENTRE = (10, 21, 13)
RADIUS = 3.5


def blob_volume(centre: tuple[int, int, int] | None = CENTRE, seed: int = 5) -> np.ndarray:
    """32³ smooth noise like the model's training data, with a bright blob at ``centre``."""
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(0.0, 1.0, (32, 32, 32)), sigma=1.2)
    volume = noise / noise.std() * 0.2
    if centre is not None:
        grid = np.stack(np.meshgrid(*(np.arange(32),) * 3, indexing="ij"))
        distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        volume = volume + 1.0 * np.exp(-distance2 / (2 * RADIUS**2))
    return volume.astype(np.float32)


def distance_to_centre(points: np.ndarray) -> np.ndarray:
    """Euclidean distance of (n, 3) voxel indices to the blob centre."""
    return np.sqrt(((points - np.asarray(CENTRE)) ** 2).sum(axis=1))


@pytest.fixture(scope="module")
def blob_explanation():  # type: ignore[no-untyped-def]
    return explain_sync(blob_volume(), str(MODEL), iters=6, seed=3, mode="voxel")


def test_planted_blob_is_found(blob_explanation) -> None:  # type: ignore[no-untyped-def]
    explanation = blob_explanation
    assert explanation.target.classification == 1
    peak = np.unravel_index(np.argmax(explanation.responsibility), (32, 32, 32))
    assert distance_to_centre(np.array([peak]))[0] <= 2 * RADIUS
    mask = explanation.mask
    assert mask is not None and mask.shape == (32, 32, 32)
    assert 0 < mask.mean() < 0.2
    inside = distance_to_centre(np.argwhere(mask)) <= 2 * RADIUS
    assert inside.mean() > 0.5


def test_no_blob_is_class_zero() -> None:
    explanation = explain_sync(
        blob_volume(centre=None), str(MODEL), iters=1, seed=0, mode="voxel", extract=False
    )
    assert explanation.target.classification == 0


def test_nifti_and_npy_end_to_end(tmp_path: Path, blob_explanation) -> None:  # type: ignore[no-untyped-def]
    import nibabel

    from rex_stream.modes import render_explanation

    volume = blob_volume()
    nifti = tmp_path / "blob.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(nifti))
    from_nifti = explain_sync(nifti, str(MODEL), iters=2, seed=3, extract=False)
    assert from_nifti.subject.mode == "voxel"
    npy = tmp_path / "blob.npy"
    np.save(npy, volume[None])  # with its channel axis
    from_npy = explain_sync(npy, str(MODEL), iters=2, seed=3, extract=False, mode="voxel")
    np.testing.assert_array_equal(from_nifti.responsibility, from_npy.responsibility)
    picture = tmp_path / "montage.png"
    render_explanation(blob_explanation, picture)
    assert picture.stat().st_size > 5000


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (np.zeros((16, 16, 16), np.float32), "has shape"),
        (np.full((32, 32, 32), np.nan, np.float32), "NaN"),
        (np.zeros((32, 32), np.float32), "has shape"),
    ],
)
def test_bad_arrays(volume: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        explain_sync(volume, str(MODEL), iters=1, mode="voxel")
    assert "\n" not in str(caught.value)


def test_unreadable_nifti(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii"
    broken.write_bytes(b"not a nifti file" * 10)
    with pytest.raises(InputError, match="cannot read NIfTI") as caught:
        explain_sync(broken, str(MODEL), iters=1)
    assert "\n" not in str(caught.value)


def test_mismatched_mode(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot take audio"):
        explain_sync(blob_volume(), str(MODEL), iters=1, mode="audio")
    npy = tmp_path / "blob.npy"
    np.save(npy, blob_volume())
    with pytest.raises(InputError):
        explain_sync(npy, str(MODEL), iters=1, mode="RGB")


def test_large_volume_machinery_matches_the_plain_one() -> None:
    """The bounded-memory paths give what the plain ones give (on a small map)."""
    from rex_stream.causal.extraction import responsibility_levels
    from rex_stream.causal.responsibility import Ledger, build_map, build_map_chunked, normalise
    from rex_stream.config import ResponsibilityStyle
    from rex_stream.engine.scheduler import budget_batch

    assert budget_batch(64, 512 * 2**20, 2) == 1  # a 512³ float32 volume
    assert budget_batch(64, 4 * 2**20, 2) == 64  # an image is not affected
    rng = np.random.default_rng(0)
    ledgers = []
    for _ in range(4):
        start = rng.integers(0, 20, (30, 3))
        ledgers.append(
            Ledger(
                start, start + rng.integers(1, 15, (30, 3)), rng.integers(0, 2, 30), rng.random(30)
            )
        )
    for style in ResponsibilityStyle:
        plain = normalise(build_map(ledgers, 1, (33, 17, 9), style), style)
        chunked = build_map_chunked(ledgers, 1, (33, 17, 9), style, chunk_elements=200)
        assert chunked.dtype == np.float32
        np.testing.assert_allclose(chunked, plain, rtol=1e-6)
    levels, revealed = responsibility_levels(chunked, chunk_elements=1000)
    assert np.all(np.diff(levels) < 0) and revealed[-1] == chunked.size
    assert revealed[3] == int((chunked >= levels[3]).sum())
