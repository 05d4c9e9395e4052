"""What :func:`~rex_stream.evaluation.run.evaluate` and both meta-evaluation tests share.

Naming the inputs and the attributions, checking what the metrics need (a mask, an explainer,
a store to resume), the model as weights for the metrics that change them, the scoring session
(an engine with a row scorer in front of its scheduler), the re-explainer bound to it, loading
one input under the run's conventions, and the settings a resumed store group must match.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.engine.session import Engine, open_engine
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError, InputError, StoreError
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import (
    BoundExplainer,
    ExplainFunction,
    ReExplain,
    as_re_explainer,
)
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.metrics.registry import choose
from rex_stream.evaluation.scoring import RowScorer
from rex_stream.evaluation.sources import MapSource, default_name
from rex_stream.evaluation.variants.pool import VariantPool
from rex_stream.evaluation.variants.weights import WeightedModel, local_model
from rex_stream.modes import known_suffixes, load_subject
from rex_stream.naming import input_name

#: One attribution source, several, or several by name.
Attributions = Mapping[str, MapSource] | Sequence[MapSource] | MapSource
#: One input (a file, a directory of inputs, an array), or several.
Inputs = str | Path | np.ndarray | Sequence[str | Path | np.ndarray]
#: What the metrics that re-explain need (--explainer): perturbed inputs, or changed weights.
RE_EXPLAINING = ("explainer", "weights")


@dataclass(frozen=True)
class ScoringSession:
    """One run's engine (backend, scheduler, settled config) and the row scorer in front of
    its scheduler."""

    engine: Engine
    scorer: RowScorer

    @property
    def info(self) -> ModelInfo:
        """The model's metadata."""
        return self.engine.info

    @property
    def config(self) -> ExplainConfig:
        """The run's config, with the backend's concurrency settled."""
        return self.engine.config


@asynccontextmanager
async def scoring_session(
    backend: Backend | str, config: ExplainConfig, settings: BackendSettings | None
) -> AsyncIterator[ScoringSession]:
    """An open engine and a row scorer in front of its scheduler, for one run."""
    async with open_engine(backend, config, settings) as engine:
        yield ScoringSession(engine, RowScorer(engine.scheduler, engine.config.scoring))


def chosen_metrics(metrics: str | Sequence[MetricChoice]) -> list[MetricChoice]:
    """A ``--metrics`` string parsed, or the choices as given."""
    return choose(metrics) if isinstance(metrics, str) else list(metrics)


def check_mask(choices: Sequence[MetricChoice], mask: MapSource | None) -> None:
    """A one-line error when a localisation metric has no ground-truth mask."""
    if mask is None and any(c.spec.needs == "mask" for c in choices):
        needing = [c.label for c in choices if c.spec.needs == "mask"]
        raise ConfigError(f"{', '.join(needing)} need a ground-truth mask (--mask)")


def check_resumable(store: str | Path | None, resume: bool) -> None:
    """A one-line error when asked to resume a store that does not exist."""
    if resume and store is not None and not ExplanationStore.exists(store):
        raise StoreError(f"cannot resume: {store} does not exist")


def checked_explainer(
    choices: Sequence[MetricChoice], explainer: str | ReExplain | ExplainFunction | None
) -> ReExplain | None:
    """The re-explainer the metrics will call, or a one-line error when one needs it and
    none is given."""
    re_explainer = as_re_explainer(explainer) if explainer is not None else None
    if re_explainer is None and any(c.spec.needs in RE_EXPLAINING for c in choices):
        needing = [c.label for c in choices if c.spec.needs in RE_EXPLAINING]
        raise ConfigError(
            f"{', '.join(needing)} re-explain perturbed inputs: pass --explainer "
            "rex[:iters=N] or --explainer python:module:function"
        )
    return re_explainer


def re_explaining(
    re_explainer: ReExplain | None,
    weighted: WeightedModel | None,
    session: ScoringSession,
    settings: BackendSettings | None,
) -> tuple[BoundExplainer | None, VariantPool | None]:
    """The explainer bound to this run's scheduler, and the pool of weight variants (enter
    it with ``async with``) when a metric randomises the weights."""
    if re_explainer is None:
        return None, None
    engine = session.engine
    bound = BoundExplainer(re_explainer, engine.scheduler, engine.info, engine.config)
    variants = (
        VariantPool(weighted, re_explainer, engine.config, settings)
        if weighted is not None
        else None
    )
    return bound, variants


async def weights_for(backend: Backend | str, choices: list[MetricChoice]) -> WeightedModel | None:
    """The model as weights when a metric randomises them (a remote backend is refused)."""
    needing = [c.spec.quantus for c in choices if c.spec.needs == "weights"]
    if not needing:
        return None
    path = local_model(backend, needing[0])
    return await anyio.to_thread.run_sync(WeightedModel.load, path)


async def load_input(
    key: str,
    source: str | Path | np.ndarray,
    info: ModelInfo,
    config: ExplainConfig,
    conventions: Conventions,
) -> Subject:
    """One input as a subject named ``key`` (read in a worker thread), checked against the
    run's conventions."""
    subject = await anyio.to_thread.run_sync(load_subject, source, info, config)
    subject.name = key
    conventions.check_input(subject)
    return subject


def run_settings(
    info: ModelInfo,
    config: ExplainConfig,
    choices: list[MetricChoice],
    maps: dict[str, np.ndarray],
    mask: np.ndarray | None,
    seed: int,
    conventions: Conventions,
    target: int,
) -> dict[str, Any]:
    """Everything that decides the results: a resumed group must match it."""

    def digest(array: np.ndarray) -> str:
        data = np.ascontiguousarray(array)
        return hashlib.blake2b(data.tobytes() + str(data.dtype).encode(), digest_size=8).hexdigest()

    return {
        "evaluation": {
            "metrics": [{"metric": c.label, "params": dict(c.params)} for c in choices],
            "attributions": {name: digest(a) for name, a in maps.items()},
            "mask": digest(mask) if mask is not None else None,
            "seed": seed,
            "quantus_compatible": conventions.quantus_compatible,
        },
        "scoring": asdict(config.scoring),
        "image": asdict(config.image),
        "model": {"name": info.name, "input_shape": list(info.input_shape)},
        "target": target,
    }


def named_attributions(attributions: Attributions) -> dict[str, MapSource]:
    """The attributions by name (a file's stem, or ``map``, when not named)."""
    if isinstance(attributions, Mapping):
        named = {str(k): v for k, v in attributions.items()}
    elif isinstance(attributions, (str, Path, np.ndarray)):
        named = {default_name(attributions, set()): attributions}
    else:
        named = {}
        for source in attributions:
            named[default_name(source, set(named))] = source
    if not named:
        raise ConfigError("no attribution given: pass --attribution A.npy (or NAME=A.npy)")
    return named


def expand_inputs(inputs: Inputs) -> list[tuple[str, str | Path | np.ndarray]]:
    """(unique key, source) for every input; a directory brings every file a mode reads,
    named as :mod:`rex_stream.naming` names a directory run's store groups."""
    listed: list[str | Path | np.ndarray]
    listed = [inputs] if isinstance(inputs, (str, Path, np.ndarray)) else list(inputs)
    found: list[tuple[str, str | Path | np.ndarray]] = []
    for item in listed:
        if isinstance(item, np.ndarray):
            found.append(("array", item))
        elif Path(item).is_dir():
            root = Path(item)
            suffixes = known_suffixes()
            files = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
            if not files:
                raise InputError(f"{item}: no input files in it")
            # the names a directory run of rex-stream gives its store groups
            found.extend((input_name(p.relative_to(root)), p) for p in files)
        else:
            found.append((input_name(Path(item).stem), item))
    keys: list[tuple[str, str | Path | np.ndarray]] = []
    taken: set[str] = set()
    for base, item in found:
        key, number = base, 2
        while key in taken:
            key, number = f"{base}-{number}", number + 1
        taken.add(key)
        keys.append((key, item))
    return keys
