"""Where maps and masks come from: arrays, ``.npy`` files, directories of them (one per input,
by file stem), rex-stream Zarr stores (each input's group: see :data:`MAP_ARRAYS`), pictures."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.causal.search import input_key
from rex_stream.cem.search import subject_key
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

MapSource = np.ndarray | str | Path

#: The arrays of an input's store group that serve as its map, first found wins: ReX's
#: responsibility; CEM's region values over the spatial axes (a pertinent positive's keep
#: fraction per region, 1 = kept whole; a pertinent negative's addition per region), not the
#: solution itself, whose difference from the input mixes the mode's units with the regions;
#: L2X's selection (1 = selected).
MAP_ARRAYS = (
    "responsibility",
    "pertinent_positive_regions",
    "pertinent_negative_regions",
    "l2x_selection",
)

_PICTURES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def candidates(key: str) -> list[str]:
    """Names an input's map or mask may be filed under: its group name (``cats__tom.png``
    in a directory run's store), that without the suffix, and the file's own stem."""
    names = [key]
    base = key.rsplit(".", 1)[0] if "." in key and "~" not in key else key
    for name in (base, base.split("__")[-1]):
        if name and name not in names:
            names.append(name)
    return names


def _zarr_node(path: str, key: str) -> tuple[Any, Any]:
    """The array that serves as the map for ``key`` in the store at ``path`` and the group
    that holds it (whose attributes say which run made it)."""
    import zarr

    root_text, _, inner = path.partition(".zarr")
    root = root_text + ".zarr"
    try:
        group = zarr.open_group(root, mode="r")
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise InputError(f"cannot open the Zarr store {root}: {exc}") from exc
    inner = inner.strip("/")
    try:
        node = group[inner] if inner else group
        if isinstance(node, zarr.Group) and not any(name in node for name in MAP_ARRAYS):
            found = [name for name in candidates(key) if name in node]
            node = node[found[0] if found else key]
        holder = node if isinstance(node, zarr.Group) else None
        if isinstance(node, zarr.Group):
            node = node[next(name for name in MAP_ARRAYS if name in node)]
        return node, holder
    except (KeyError, StopIteration):
        where = f"{root}/{inner}" if inner else root
        raise InputError(
            f"{where} holds no responsibility map for {key!r}, nor another map "
            f"({', '.join(MAP_ARRAYS[1:])}); run rex-stream … --store first"
        ) from None


def _zarr_map(path: str, key: str) -> np.ndarray:
    node, _ = _zarr_node(path, key)
    return np.asarray(node[...])


@dataclass(frozen=True)
class MapOrigin:
    """What a store group records about the run that made its map: the input (its path and
    the fingerprint of its tensor), the model's identity and the target class."""

    where: str
    source: str | None = None
    fingerprint: str | None = None
    identity: Mapping[str, Any] | None = None
    target: int | None = None
    #: how the writing method fingerprints an input (ReX and L2X: :func:`input_key`)
    fingerprint_of: Callable[[Subject], str] | None = None

    def mismatches(self, subject: Subject, identity: Mapping[str, Any], target: int) -> list[str]:
        """What differs from the evaluation's input, model and target, one phrase each."""
        found = []
        if self.source is not None and subject.source is not None:
            if not self._same_input(subject):
                found.append(f"another input ({self.source}, not {subject.source})")
        if self.identity is not None and identity:
            ours = _plain(identity)
            changed = [k for k in sorted(self.identity.keys() & ours.keys())
                       if self.identity[k] != ours[k]]  # fmt: skip
            if changed:
                what = ", ".join(
                    f"{k} {_short(self.identity[k])}, not {_short(ours[k])}" for k in changed
                )
                found.append(f"another model ({what})")
        if self.target is not None and self.target != target:
            found.append(f"another target (class {self.target}, not {target})")
        return found

    def _same_input(self, subject: Subject) -> bool:
        digest = self.fingerprint_of or rex_fingerprint
        if self.fingerprint is not None and self.fingerprint == digest(subject):
            return True
        stored, _, stored_part = str(self.source).partition("#")
        ours, _, our_part = str(subject.source).partition("#")
        if stored_part != our_part:
            return False
        stored_path, our_path = Path(stored), Path(ours)
        if stored_path.exists() and our_path.exists():
            return stored_path.resolve() == our_path.resolve()
        return stored_path.name == our_path.name  # moved since: the name is all there is


def rex_fingerprint(subject: Subject) -> str:
    """The input's fingerprint as ReX and L2X stores record it (``settings.input``)."""
    return f"{input_key(subject):016x}"


def cem_fingerprint(subject: Subject) -> str:
    """The input's fingerprint as CEM stores record it (the digest that seeds its chains)."""
    return f"{subject_key(subject):016x}"


def _plain(value: Any) -> Any:
    """``value`` as a JSON round trip gives it back (tuples as lists), as stored."""
    return json.loads(json.dumps(value, default=str))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"{text[:12]}…" if len(text) > 16 else text


def map_origin(source: MapSource, key: str) -> MapOrigin | None:
    """What the store group behind ``source`` records about the run that made the map for
    ``key``; None when ``source`` is no store (an array or a ``.npy`` records nothing)."""
    if isinstance(source, np.ndarray) or ".zarr" not in str(source):
        return None
    text = str(source).rstrip("/")
    _, holder = _zarr_node(text, key)
    if holder is None:
        return None
    attributes = dict(holder.attrs)
    settings = attributes.get("settings")
    settings = settings if isinstance(settings, Mapping) else {}
    model = settings.get("model")
    identity = model.get("identity") if isinstance(model, Mapping) else None
    target = attributes.get("target", settings.get("target"))
    if isinstance(target, Mapping):
        target = target.get("class")
    fingerprint = settings.get("input")
    method = str(settings.get("method", ""))
    return MapOrigin(
        where=f"{text.partition('.zarr')[0]}.zarr/{holder.path}",
        source=str(attributes["source"]) if isinstance(attributes.get("source"), str) else None,
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        identity=identity if isinstance(identity, Mapping) and identity else None,
        target=int(target) if isinstance(target, int) and not isinstance(target, bool) else None,
        fingerprint_of=cem_fingerprint if method.startswith("cem") else rex_fingerprint,
    )


def check_origin(
    source: MapSource,
    key: str,
    subject: Subject,
    identity: Mapping[str, Any],
    target: int,
    name: str,
) -> None:
    """Refuse, in one line, a stored map made for another input, model or target than the
    evaluation's (``allow_mismatch=True`` / ``--allow-mismatch`` scores it anyway)."""
    origin = map_origin(source, key)
    if origin is None:
        return
    found = origin.mismatches(subject, identity, target)
    if found:
        raise InputError(
            f"attribution {name!r} ({origin.where}) was made for {' and '.join(found)}; "
            "pass --allow-mismatch (allow_mismatch=True) to score it anyway"
        )


def note_unchecked(named: Mapping[str, Any]) -> None:
    """Say once per attribution, in one line, that a plain array file (``.npy``, or a folder
    of them) records no input, model or target, so its origin cannot be checked."""
    for name, source in named.items():
        if isinstance(source, (str, Path)) and ".zarr" not in str(source):
            logger.warning(
                "attribution %r (%s): a plain array records no input, model or target, so "
                "its origin cannot be checked",
                name,
                source,
            )


def _file_for(folder: Path, key: str, suffixes: tuple[str, ...]) -> Path:
    for name in candidates(key):
        for suffix in suffixes:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    raise InputError(f"{folder} has no file for input {key!r} ({key}{'|'.join(suffixes)})")


def read_map(source: MapSource, key: str, what: str = "attribution") -> np.ndarray:
    """The raw array ``source`` holds for the input ``key`` (errors name it ``what``)."""
    if isinstance(source, np.ndarray):
        return source
    text = str(source)
    if ".zarr" in text:
        return _zarr_map(text.rstrip("/"), key)
    path = Path(text)
    if path.is_dir():
        path = _file_for(path, key, (".npy",))
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    if path.suffix.lower() != ".npy":
        raise InputError(f"{what} {path}: expected a .npy file, a directory or a .zarr store")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{what} {path}: cannot read it ({exc})") from exc


def fit_map(raw: np.ndarray, subject: Subject, what: str) -> np.ndarray:
    """The map over the subject's spatial axes: squeezed, or summed over the channels of a
    map in the input's full shape; a shape that fits neither is an error."""
    array = np.asarray(raw)
    if array.dtype.kind not in "fiub":
        raise InputError(f"{what} has dtype {array.dtype}, expected numbers")
    spatial = subject.spatial_shape
    if array.shape != spatial:
        squeezed = array.reshape([d for d in array.shape if d != 1] or [1])
        if squeezed.shape == tuple(d for d in spatial if d != 1) or squeezed.shape == spatial:
            array = squeezed.reshape(spatial)
        elif array.shape == subject.tensor.shape:
            others = tuple(a for a in range(subject.tensor.ndim) if a not in subject.spatial_axes)
            array = array.sum(axis=others)
        else:
            raise InputError(
                f"{what} has shape {raw.shape} but the input's spatial shape is {spatial} "
                f"(tensor {subject.tensor.shape})"
            )
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return array


def load_map(source: MapSource, key: str, subject: Subject, name: str) -> np.ndarray:
    """The attribution ``name`` for one input, fitted to its spatial axes."""
    return fit_map(read_map(source, key), subject, f"attribution {name!r} for {key}")


def load_mask(source: MapSource, key: str, subject: Subject) -> np.ndarray:
    """A ground-truth mask (bool over the spatial axes): an array, ``.npy``, or a picture
    (non-zero is inside; resized to the input's size like the input itself)."""
    if isinstance(source, np.ndarray):
        raw = source
    else:
        path = Path(source)
        if path.is_dir():
            path = _file_for(path, key, (".npy", *_PICTURES))
        if not path.is_file():
            raise InputError(f"mask {path}: no such file")
        if path.suffix.lower() in _PICTURES:
            raw = _picture_mask(path, subject)
        elif path.suffix.lower() == ".npy":
            raw = read_map(path, key, "mask")
        else:
            raise InputError(f"mask {path}: expected a picture (.png …) or a .npy file")
    values = np.asarray(raw)
    if values.dtype.kind not in "fiub":
        raise InputError(f"mask for {key} has dtype {values.dtype}, expected numbers")
    if not np.isfinite(values).all():  # NaN != 0 would count as inside
        raise InputError(f"mask for {key} contains NaN or infinite values")
    return fit_map(values != 0, subject, f"mask for {key}") != 0


def _picture_mask(path: Path, subject: Subject) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = image.convert("L")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"mask {path}: cannot read it ({exc})") from exc
    shape = subject.spatial_shape
    if len(shape) != 2:
        raise InputError(f"mask {path}: a picture mask needs a 2-D input, not {shape}")
    height, width = shape
    return np.asarray(grey.resize((width, height), Image.Resampling.NEAREST)) > 0


def split_named(text: str) -> tuple[str | None, str]:
    """``NAME=SOURCE`` → (NAME, SOURCE); a bare source has no name."""
    name, sep, source = text.partition("=")
    if sep and name and "/" not in name and not name.endswith(".npy"):
        if not source:
            raise ConfigError(f"--attribution {text!r}: expected NAME=PATH")
        return name.strip(), source.strip()
    return None, text


def default_name(source: MapSource, taken: set[str]) -> str:
    """A column name for an unnamed attribution: the file's stem, or ``map``."""
    if isinstance(source, np.ndarray):
        name = "map"
    else:
        text = str(source).rstrip("/")
        name = Path(text.partition(".zarr")[0]).name if ".zarr" in text else Path(text).stem
    unique, number = name or "map", 2
    while unique in taken:
        unique, number = f"{name}-{number}", number + 1
    return unique
