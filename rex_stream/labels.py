"""Class names: a label file (one name per line, line i is class i) turns "class 301" into
"ladybug (301)". ImageNet's 1000 names ship with the package for the bundled ImageNet model
(``rex_stream/data/imagenet-labels.txt``, built from torchvision by
``scripts/build_imagenet_labels.py``); nothing is downloaded at run time."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from rex_stream.errors import ConfigError

DATA = Path(__file__).resolve().parent / "data"
IMAGENET_LABELS = DATA / "imagenet-labels.txt"

#: Model files known to predict ImageNet's 1000 classes in torchvision's order.
IMAGENET_MODELS = ("efficientnet-lite0.onnx",)


def load_labels(path: str | Path) -> tuple[str, ...]:
    """The names in a label file, one per line (surrounding blanks stripped)."""
    if str(path).lower() == "imagenet":
        path = IMAGENET_LABELS
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--labels {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--labels {path}: cannot read ({exc})") from exc
    if text.lstrip().startswith(("{", "[")) and _is_json(text):
        raise ConfigError(
            f"--labels {path}: this is a JSON file; expected plain text with one class name "
            "per line (line i names class i)",
            key="--labels",
        )
    names = tuple(line.strip() for line in text.splitlines())
    while names and not names[-1]:
        names = names[:-1]
    if not names:
        raise ConfigError(f"--labels {path}: no names (expected one class name per line)")
    return names


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def check_labels_cover(labels: tuple[str, ...], classes: int, source: str) -> None:
    """Refuse a label file that names fewer classes than the model has (a shorter file would
    leave some classes as bare numbers, and usually means the file is for another model)."""
    if classes > len(labels):
        raise ConfigError(
            f"--labels {source}: {len(labels)} names, but the model has at least {classes} "
            "classes; the file must name every class, one per line (line i names class i)",
            key="--labels",
        )


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """ImageNet's 1000 class names, in class-index order."""
    return load_labels(IMAGENET_LABELS)


def labels_for_model(model: str | None) -> tuple[str, ...] | None:
    """The shipped names for a model file known to use them (the bundled ImageNet model)."""
    if model and Path(model).name in IMAGENET_MODELS:
        return imagenet_labels()
    return None


def class_name(classification: int, labels: tuple[str, ...] | None) -> str:
    """``"ladybug (301)"`` with a name for the class, else ``"class 301"``."""
    if labels is not None and 0 <= classification < len(labels) and labels[classification]:
        return f"{labels[classification]} ({classification})"
    return f"class {classification}"
