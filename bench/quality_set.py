"""The photo set of issue 26 (explanation quality per query), with a fixed tuning / held-out split.

- ReX's sample photos (``../shared/data/images``);
- scikit-image's bundled colour photos (no download: the files ship inside the package);
- synthetic scenes composed here, deterministically, from those photos: an object shrunk onto
  a seeded textured background, two objects side by side, a crop on noise.

Defaults are tuned on :data:`TUNING` only; :data:`HELD_OUT` is what the bench reports as the
result. ``python bench/quality_set.py OUT`` writes every photo as a PNG/JPEG into ``OUT``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = next(
    (p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data",
)
REX_PHOTOS = ("dog", "dog_hide", "ladybird", "peacock", "starfish", "tennis", "testimage")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "retina")
SYNTHETIC = ("ladybird_small", "two_ladybirds", "chelsea_on_noise", "coffee_and_dog")

#: photos the defaults were chosen on (never reported as the result)
TUNING = ("dog", "ladybird", "tennis", "astronaut")
#: everything else: the held-out set the issue's targets are measured on
HELD_OUT = tuple(name for name in (*REX_PHOTOS, *SKIMAGE_PHOTOS, *SYNTHETIC) if name not in TUNING)


def _rex_photo(name: str) -> Image.Image:
    found = sorted((DATA / "images").glob(f"{name}.*"))
    return Image.open(found[0]).convert("RGB")


def _skimage_photo(name: str) -> Image.Image:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    files = {"chelsea": "chelsea.png", "motorcycle_left": "motorcycle_left.png"}
    found = folder / files.get(name, f"{name}.png")
    if not found.exists():
        found = folder / f"{name}.jpg"
    return Image.open(found).convert("RGB")


def _background(seed: int, size: int = 224) -> np.ndarray:
    """A seeded smooth colour gradient with mild noise (a plain, object-free scene)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    low, high = rng.uniform(40, 110, 3), rng.uniform(120, 200, 3)
    mix = (0.6 * x + 0.4 * y)[..., None]
    picture = low * (1 - mix) + high * mix + rng.normal(0, 6, (size, size, 3))
    return np.clip(picture, 0, 255)


def _paste(canvas: np.ndarray, photo: Image.Image, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    canvas[y0:y1, x0:x1] = np.asarray(photo.resize((x1 - x0, y1 - y0), Image.BILINEAR))


def _synthetic(name: str) -> Image.Image:
    if name == "ladybird_small":
        canvas = _background(1)
        _paste(canvas, _rex_photo("ladybird"), (100, 30, 200, 130))
    elif name == "two_ladybirds":
        canvas = _background(2)
        _paste(canvas, _rex_photo("ladybird"), (4, 56, 110, 162))
        _paste(canvas, _rex_photo("ladybird").transpose(Image.FLIP_LEFT_RIGHT), (114, 56, 220, 162))
    elif name == "chelsea_on_noise":
        canvas = np.random.default_rng(3).uniform(0, 255, (224, 224, 3))
        cat = _skimage_photo("chelsea")
        _paste(canvas, cat.crop((60, 0, 360, 300)), (40, 50, 190, 200))
    elif name == "coffee_and_dog":
        canvas = _background(4)
        _paste(canvas, _skimage_photo("coffee"), (0, 0, 112, 112))
        _paste(canvas, _rex_photo("dog"), (112, 100, 224, 224))
    else:
        raise KeyError(name)
    return Image.fromarray(canvas.astype(np.uint8))


def photo_paths(out: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write the named photos (default: all) into ``out``; ``{name: path}``."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in names or (*REX_PHOTOS, *SKIMAGE_PHOTOS, *SYNTHETIC):
        if name in REX_PHOTOS:
            source = sorted((DATA / "images").glob(f"{name}.*"))[0]
            path = out / source.name
            if not path.exists():
                shutil.copyfile(source, path)
        else:
            path = out / f"{name}.png"
            if not path.exists():
                maker = _skimage_photo if name in SKIMAGE_PHOTOS else _synthetic
                maker(name).save(path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    for name, path in photo_paths(Path(sys.argv[1])).items():
        print(name, path, "held-out" if name in HELD_OUT else "tuning")
