"""Learned explanations (L2X): train an explainer from a data set, then explain new inputs
fast. The library API; :mod:`rex_stream.l2x` holds the method.

``await train_l2x("rows.npy", "model.onnx", L2xConfig(k=4), config)`` returns an
:class:`~rex_stream.l2x.Explainer` (``.save("explainer.npz")``);
``explain_l2x("row.npy", "explainer.npz")`` selects regions without querying the model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.causal.search import input_key
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.engine.scheduler import CountingEvaluator
from rex_stream.engine.session import open_engine
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError, StoreError, raise_first_error
from rex_stream.l2x import Explainer, L2xConfig
from rex_stream.l2x.queries import score_masks
from rex_stream.l2x.training import train_explainer
from rex_stream.modes import known_suffixes, load_subject

Source = str | Path | np.ndarray
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def load_inputs(data: Source, info: ModelInfo, config: ExplainConfig) -> list[Subject]:
    """Every input of a data set: a directory of input files, a ``.npy`` of rows (or an
    array), or a table file (every row)."""
    if isinstance(data, np.ndarray) or Path(data).suffix.lower() == ".npy":
        try:
            rows = np.load(data) if not isinstance(data, np.ndarray) else data
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{data}: cannot read ({exc})") from exc
        if rows.ndim < 2:
            raise InputError(f"{data}: expected an array of rows (inputs on the first axis)")
        return _rows_like(load_subject(rows[0], info, config), rows, "row")
    path = Path(data)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        suffixes = known_suffixes()
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise InputError(f"{path}: no input files")
        return [load_subject(p, info, config) for p in files]
    if path.suffix.lower() in TABLE_SUFFIXES:
        from rex_stream.modes.tabular import read_table

        tabular = replace(config, image=replace(config.image, mode="tabular"))
        first = load_subject(path, info, tabular)
        drop = [c.strip() for c in config.image.mode_options.get("drop", "").split(",")]
        values = read_table(path, [c for c in drop if c]).values
        return _rows_like(first, values, f"{path.stem}_row")
    raise InputError(f"{path}: give a directory of inputs, a .npy of rows or a table")


def _rows_like(first: Subject, rows: np.ndarray, prefix: str) -> list[Subject]:
    """Subjects read like ``first`` (same mode, baseline, options) for every row's values."""
    shape, dtype = first.tensor.shape, first.tensor.dtype
    subjects = []
    for index, row in enumerate(rows):
        values = np.asarray(row)
        if values.size != first.tensor.size:
            raise InputError(f"row {index} has {values.size} values, the model takes {shape}")
        if not np.isfinite(values).all():
            raise InputError(f"row {index} contains NaN or infinite values")
        tensor = np.ascontiguousarray(values.reshape(shape), dtype=dtype)
        subjects.append(replace(first, tensor=tensor, name=f"{prefix}{index}", source=None))
    return subjects


def _digest(subjects: list[Subject]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for subject in subjects:
        digest.update(np.ascontiguousarray(subject.tensor).tobytes())
    return digest.hexdigest()


def _reading(config: ExplainConfig) -> dict[str, Any]:
    """How inputs are read and scored, kept with the explainer."""
    return {"image": asdict(config.image), "scoring": asdict(config.scoring)}


def reading_config(explainer: Explainer, base: ExplainConfig | None = None) -> ExplainConfig:
    """An ExplainConfig that reads inputs as the explainer's training inputs were read."""
    from rex_stream.config import ImageConfig, ScoringConfig

    base = base or ExplainConfig()
    image = explainer.reading.get("image")
    scoring = explainer.reading.get("scoring")
    return replace(
        base,
        image=ImageConfig(
            **{**image, "means": _tuple(image["means"]), "stds": _tuple(image["stds"])}
        )
        if image
        else base.image,
        scoring=ScoringConfig(**scoring) if scoring else base.scoring,
    )


def _tuple(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(value)


async def train_l2x(
    data: Source,
    backend: Backend | str,
    l2x: L2xConfig | None = None,
    config: ExplainConfig | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    backend_settings: BackendSettings | None = None,
) -> Explainer:
    """Train an explainer on ``data`` against the model behind ``backend``.

    With ``store``, the model's scores and every epoch's weights are committed, and ``resume``
    continues a killed training run to the same explainer.
    """
    l2x = l2x or L2xConfig()
    with raise_first_error():
        async with open_engine(backend, config, backend_settings) as engine:
            info, resolved = engine.info, engine.config
            subjects = load_inputs(data, info, resolved)
            opened_store = None
            if store is not None:
                settings = {
                    "method": "l2x",
                    "l2x": l2x.settings(),
                    "reading": _reading(resolved),
                    "model": {"name": info.name, "input_shape": list(info.input_shape)},
                    "data": _digest(subjects),
                }
                ndim = len(subjects[0].spatial_shape)
                opened_store = await anyio.to_thread.run_sync(
                    lambda: _open_training_store(store, settings, ndim, resume, overwrite)
                )
            try:
                explainer = await train_explainer(
                    subjects, engine.scheduler, info.name, l2x, resolved.scoring, store=opened_store
                )
                if opened_store is not None:
                    await anyio.to_thread.run_sync(opened_store.finish)
            finally:
                if opened_store is not None:
                    opened_store.close()
    explainer.reading = _reading(resolved)
    return explainer


def _open_training_store(
    path: str | Path, settings: dict[str, Any], ndim: int, resume: bool, overwrite: bool
) -> ExplanationStore:
    if resume and not overwrite and not ExplanationStore.exists(path):  # also s3://…
        raise StoreError(f"cannot resume: {path} does not exist")
    return ExplanationStore.open(
        path, "l2x_training", settings, ndim, resume=resume, overwrite=overwrite
    )


@dataclass
class L2xResult:
    """One input's L2X selection; ``kept`` is the model's verdict on the selected regions
    alone (None when no model was given: then no query was made)."""

    subject: Subject
    explainer: Explainer
    regions: np.ndarray
    selection: np.ndarray
    target: int | None = None
    kept: bool | None = None
    queries: int = 0
    #: the backend's identity of the model that judged the selection (empty without one)
    model_identity: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "input": self.subject.source or self.subject.name,
            "method": "l2x",
            "k": self.explainer.k,
            "selected_regions": [int(r) for r in self.regions],
            "region_edge": self.explainer.region_edge,
            "selected_elements": int(self.selection.sum()),
            **self._named(),
            "target": self.target,
            "posthoc_kept": self.kept,
            "queries": self.queries,
        }

    def _named(self) -> dict[str, Any]:
        """A table's selected columns by name (``selected_features``); nothing otherwise."""
        names = tuple(getattr(self.subject, "feature_names", ()) or ())
        selection = np.asarray(self.selection, bool).reshape(-1)
        if len(self.subject.spatial_shape) != 1 or len(names) != selection.size:
            return {}
        return {"selected_features": [n for n, chosen in zip(names, selection) if chosen]}


async def explain_l2x(
    source: Source,
    explainer: Explainer | str | Path,
    backend: Backend | str | None = None,
    config: ExplainConfig | None = None,
    *,
    backend_settings: BackendSettings | None = None,
) -> L2xResult:
    """Select the explainer's ``k`` regions of ``source``; with a backend, also ask the model
    whether the selected regions alone keep its prediction (2 queries).

    Inputs are read as the explainer's training inputs were, unless ``config`` says otherwise.
    """
    if not isinstance(explainer, Explainer):
        explainer = Explainer.load(explainer)
    reading = config if config is not None else reading_config(explainer)
    info = ModelInfo(explainer.model, "input", explainer.input_shape)
    if backend is None:
        subject = load_subject(source, info, reading)
        return _selection(subject, explainer)
    with raise_first_error():
        async with open_engine(backend, reading, backend_settings) as engine:
            shape, resolved = tuple(engine.info.input_shape), engine.config
            if shape != explainer.input_shape and all(d > 0 for d in shape):
                raise InputError(
                    f"this L2X explainer was trained for model input shape "
                    f"{explainer.input_shape}; the model takes {shape}"
                )
            subject = load_subject(source, info, resolved)
            result = _selection(subject, explainer)
            counting = CountingEvaluator(engine.scheduler)
            masks = [np.stack([np.ones(explainer.regions.count, bool), _chosen(result)])]
            probabilities = await score_masks(
                [subject], masks, explainer.regions, counting, resolved.scoring
            )
            classes = probabilities.argmax(axis=1)
            result.target, result.kept, result.queries = (
                int(classes[0]),
                bool(classes[1] == classes[0]),
                counting.queries,
            )
            result.model_identity = dict(engine.info.identity)
            return result


def store_selection(
    result: L2xResult, path: str | Path, *, resume: bool = False, overwrite: bool = False
) -> str:
    """Write the selection (``l2x_selection``, uint8 over the spatial axes) and its summary
    into the input's group of a Zarr store; returns the group's location."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", result.subject.name) or "input"
    explainer = result.explainer
    settings = {
        "method": "l2x",
        "explainer": {
            "model": explainer.model,
            "k": explainer.k,
            "region_edge": explainer.region_edge,
            "input_shape": list(explainer.input_shape),
            "selector": hashlib.blake2b(explainer.selector.tobytes(), digest_size=8).hexdigest(),
        },
        # the input, model and target as a ReX store records them, so evaluate can check them
        "input": f"{input_key(result.subject):016x}",
        "model": {"name": explainer.model, "identity": result.model_identity},
        "target": result.target,
    }
    store = ExplanationStore.open(
        path, name, settings, len(result.subject.spatial_shape), resume=resume, overwrite=overwrite
    )
    try:
        store.write_array("l2x_selection", result.selection.astype(np.uint8), "uint8")
        origin: dict[str, Any] = {"source": result.subject.source or result.subject.name}
        if result.target is not None:
            origin["target"] = {"class": result.target}
        store.update_attributes({"l2x": result.summary(), **origin})
        store.finish()
        return store.location
    finally:
        store.close()


def _chosen(result: L2xResult) -> np.ndarray:
    chosen = np.zeros(result.explainer.regions.count, bool)
    chosen[result.regions] = True
    return chosen


def _selection(subject: Subject, explainer: Explainer) -> L2xResult:
    regions = explainer.select(subject)
    chosen = np.zeros(explainer.regions.count, bool)
    chosen[regions] = True
    return L2xResult(subject, explainer, regions, explainer.regions.expand(chosen))
