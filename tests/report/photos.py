"""The report tests' inputs: noise photos and one file that is not a picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photos_and_a_broken_one(folder: Path, count: int, seed: int) -> Path:
    """``folder/photos`` with ``count`` 32 × 32 noise photos and ``broken.png`` (no picture)."""
    photos = folder / "photos"
    photos.mkdir()
    rng = np.random.default_rng(seed)
    for number in range(count):
        picture = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(picture).save(photos / f"photo{number}.png")
    (photos / "broken.png").write_bytes(b"not a png")
    return photos
