"""The units of the model-perturbation test, each committed to its input's store group.

The units of an input are the input under the unchanged model (every method explains it,
every metric scores each map: q) and the input under each noisy model (test, round, copy): the
class that model predicts, whether the input is kept, and, if kept, every method's map under
that model scored with that model (q̂). A noisy model is seeded by (seed, test, round, copy)
alone and shared by every input, so a resumed run rebuilds exactly the models whose units are
missing, opens only those, and ends with the same numbers. The records are laid out by
:mod:`rex_stream.evaluation.meta.store`, as the input-perturbation test's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import ReExplain, spatial_map
from rex_stream.evaluation.meta.scores import TESTS
from rex_stream.evaluation.meta.store import MetaGroup, UnitProgress, unit_index
from rex_stream.evaluation.metric import MetricChoice
from rex_stream.evaluation.scoring import RowScorer
from rex_stream.evaluation.session import ScoringSession, load_input
from rex_stream.evaluation.sources import MapSource, load_mask
from rex_stream.evaluation.variants.files import open_variant
from rex_stream.evaluation.variants.weights import WeightedModel

#: Noisy models open at once (each is an onnxruntime session with its own scheduler).
MODELS_AT_ONCE = 2


@dataclass
class ModelInput:
    """One input of the test: its subject, x's target under the unchanged model, its mask."""

    key: str
    subject: Subject
    target: int
    mask: np.ndarray | None


async def prepare_input(
    key: str,
    source: str | Path | np.ndarray,
    mask: MapSource | None,
    session: ScoringSession,
    conventions: Conventions,
) -> ModelInput:
    """Load one input and predict its target with the unchanged model."""
    config = session.config
    subject = await load_input(key, source, session.info, config, conventions)
    truth = load_mask(mask, key, subject) if mask is not None else None
    probe = Case(subject, np.zeros(1), 0, input_key=key).original()
    target = await session.scorer.classify(probe, config.scoring.target)
    return ModelInput(key, subject, target, truth)


def noisy_generator(seed: int, test: int, round_: int, copy: int) -> np.random.Generator:
    """The noise source of one noisy model (shared by every input)."""
    return np.random.default_rng([seed, test, round_, copy])


@dataclass
class ModelTest:
    """One run of the test over its inputs: q, q̂ and kept flags filled unit by unit, each unit
    read back from the input's store group (``groups``, None without a store) or computed and
    committed there."""

    weighted: WeightedModel
    methods: dict[str, ReExplain]
    choices: Sequence[MetricChoice]
    inputs: Sequence[ModelInput]
    groups: Sequence[MetaGroup | None]
    shape: tuple[int, int, int]  # tests, rounds, noisy models
    sigmas: tuple[float, float]  # resilience, adversary
    noise_type: str
    seed: int
    conventions: Conventions
    config: ExplainConfig
    backend_settings: BackendSettings | None
    progress: UnitProgress = field(default_factory=lambda: UnitProgress(0, None))
    queries: int = 0  # through the noisy models closed so far
    calls: int = 0
    _open: dict[int, Scheduler] = field(default_factory=dict)  # by id: unhashable

    def __post_init__(self) -> None:
        inputs, methods = len(self.inputs), len(self.methods)
        self.names = list(self.methods)
        self.q = np.full((len(self.choices), methods, inputs), np.nan)
        self.q_hat = np.full((len(self.choices), *self.shape, inputs, methods), np.nan)
        self.kept = np.zeros((*self.shape, inputs), dtype=bool)

    @property
    def planned(self) -> int:
        """Units in all: per input, x and one per noisy model."""
        return len(self.inputs) * (1 + int(np.prod(self.shape)))

    def live_queries(self) -> int:
        """Queries through the noisy models, the open ones included."""
        return self.queries + sum(s.stats.mutants for s in self._open.values())

    async def run(self, unchanged: ScoringSession) -> None:
        """Every unit: x under the unchanged model, then every input under every noisy model;
        then each group is marked complete."""
        self.progress.add(sum(g.resumed for g in self.groups if g is not None))
        async with anyio.create_task_group() as tasks:
            for n in range(len(self.inputs)):
                tasks.start_soon(self._original, n, unchanged)
        models = anyio.CapacityLimiter(MODELS_AT_ONCE)
        async with anyio.create_task_group() as tasks:
            for t, i, p in np.ndindex(self.shape):
                tasks.start_soon(self._noisy, t, i, p, models)
        for n, group in enumerate(self.groups):
            if group is not None:
                kept = {test: int(self.kept[t, ..., n].sum()) for t, test in enumerate(TESTS)}
                item = self.inputs[n]
                source = str(item.subject.source or item.key)
                await group.finish({"source": source, "meta_evaluation": {"kept": kept}})

    async def _scores(self, item: ModelInput, model: ScoringSession) -> np.ndarray:
        """Every method's map of one input under one model, scored by every metric with that
        model: (metrics, methods)."""
        engine = model.engine
        values = np.full((len(self.choices), len(self.names)), np.nan)

        async def one(m: int) -> None:
            explained = await self.methods[self.names[m]](
                item.subject.tensor, item.target, engine.scheduler, engine.info, engine.config
            )
            attribution = spatial_map(explained, item.subject)
            for c, choice in enumerate(self.choices):
                case = Case(
                    item.subject, attribution, item.target, self.conventions, self.seed,
                    item.key, self.names[m], item.mask,
                )  # fmt: skip
                score = await choice.spec.compute(case, choice.params, model.scorer)
                values[c, m] = score.score

        async with anyio.create_task_group() as tasks:
            for m in range(len(self.names)):
                tasks.start_soon(one, m)
        return values

    async def _original(self, n: int, unchanged: ScoringSession) -> None:
        group = self.groups[n]
        found = group.original() if group is not None else None
        if found is not None:
            self.q[:, :, n] = found
            return
        self.q[:, :, n] = await self._scores(self.inputs[n], unchanged)
        if group is not None:
            await group.commit_original(self.inputs[n].target, self.q[:, :, n])
        self.progress.add()

    def _read_back(self, t: int, i: int, p: int, n: int) -> bool:
        """Fill input n's unit under noisy model (t, i, p) from its group, if committed."""
        group = self.groups[n]
        found = group.copy(unit_index(self.shape, t, i, p)) if group is not None else None
        if found is None:
            return False
        self.kept[t, i, p, n], self.q_hat[:, t, i, p, n, :] = found
        return True

    async def _noisy(self, t: int, i: int, p: int, models: anyio.CapacityLimiter) -> None:
        """Build noisy model (t, i, p) and run the inputs whose unit under it is missing."""
        missing = [n for n in range(len(self.inputs)) if not self._read_back(t, i, p, n)]
        if not missing:
            return  # every input's unit is committed: the model is not built again
        async with models:
            rng = noisy_generator(self.seed, t, i, p)
            weights = self.weighted.noisy(self.sigmas[t], self.noise_type, rng)
            opened = open_variant(self.weighted, weights, self.config, self.backend_settings)
            async with opened as engine:
                model = engine.scheduler
                self._open[id(model)] = model
                run = ScoringSession(engine, RowScorer(model, engine.config.scoring))
                try:
                    async with anyio.create_task_group() as tasks:
                        for n in missing:
                            tasks.start_soon(self._judge_and_score, t, i, p, n, run)
                finally:
                    del self._open[id(model)]
                    self.queries += model.stats.mutants
                    self.calls += model.stats.calls

    async def _judge_and_score(self, t: int, i: int, p: int, n: int, run: ScoringSession) -> None:
        """Keep input n under noisy model (t, i, p) or not; if kept, q̂ of each method; commit
        the unit."""
        item = self.inputs[n]
        probe = Case(item.subject, np.zeros(1), 0, input_key=item.key).original()
        predicted = await run.scorer.classify(probe, None)
        held = predicted == item.target
        keep = held if TESTS[t] == "resilience" else not held
        self.kept[t, i, p, n] = keep
        if keep:
            self.q_hat[:, t, i, p, n, :] = await self._scores(item, run)
        group = self.groups[n]
        if group is not None:
            attributes = {"test": TESTS[t], "round": i, "copy": p}
            index = unit_index(self.shape, t, i, p)
            await group.commit_copy(index, predicted, keep, self.q_hat[:, t, i, p, n], attributes)
        self.progress.add()
