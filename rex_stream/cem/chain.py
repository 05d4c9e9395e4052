"""One CEM chain: FISTA on the elastic-net CEM loss with a zeroth-order gradient estimate.

Minimises ``c · hinge(v) + β‖v‖₁ + ‖v‖₂² [+ γ‖x_v − AE(x_v)‖²]`` over region values
``v ∈ [0, 1]^R``, where the hinge is on the logit margin ``z_t − max_{j≠t} z_j``
(log-probability differences, so κ is in logits whatever the model outputs): a pertinent
positive wants the margin ≥ κ, a pertinent negative wants it ≤ −κ. The hinge's gradient is
estimated from ``q`` seeded directions on the unit sphere,
``ĝ = R/(2μq) Σ [h(y + μu) − h(y − μu)] u``; the ``‖v‖²`` part is exact and the L1 part is the
proximal step (soft threshold). The optional autoencoder term is estimated from the same
probes, scored by the autoencoder's own scheduler. Each step also scores the current solution
(the feasibility probe), which is how a chain knows its best solution so far: the smallest
``β‖v‖₁ + ‖v‖₂² [+ γ · reconstruction error]`` whose input the model classifies as wanted.

A step's directions are drawn from ``(seed, input key, chain, step)``, so a chain's path does
not depend on batching, on the other chains, or on being resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import anyio
import numpy as np

from rex_stream.cem.config import CemConfig, CemKind
from rex_stream.cem.perturbation import Perturbation
from rex_stream.config import ScoreKind, ScoringConfig
from rex_stream.engine.scheduler import BlockWrite, Evaluator
from rex_stream.engine.verdicts import to_probabilities
from rex_stream.errors import BackendError

#: The smallest probability whose log a margin uses: a model that returns probabilities
#: saturated to exactly 0 gives margins of about ±69 there, not infinities.
TINY = 1e-30


#: Margins are rounded to this many decimals so that last-bit differences between batch
#: sizes in a backend's kernels do not steer a chain differently.
MARGIN_DECIMALS = 6


@dataclass
class ChainState:
    """Where one chain stands: iterate, FISTA momentum point, best solution, counters."""

    index: int
    penalty: float
    restart: int
    current: np.ndarray
    momentum: np.ndarray
    step: int = 0
    stale: int = 0
    done: bool = False
    queries: int = 0
    best: np.ndarray | None = None
    best_objective: float = float("inf")
    best_margin: float = float("nan")
    best_class: int = -1
    #: the smoothing radius μ in use (0: the configured one); it grows while the hinge is flat
    smoothing: float = 0.0
    best_reconstruction: float = float("nan")
    autoencoder_queries: int = 0

    @classmethod
    def initial(
        cls, index: int, penalty: float, restart: int, count: int, start: float
    ) -> ChainState:
        """A chain at its starting point (the whole input for PP, the input itself for PN)."""
        values = np.full(count, start, dtype=np.float64)
        return cls(index, penalty, restart, values, values.copy())


def margins(
    scores: np.ndarray, scoring: ScoringConfig, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the logit margin of ``target`` over the best other class, and the class."""
    raw = np.asarray(scores)
    if raw.ndim == 2 and raw.shape[1] == 1 and (raw > 1).any() and (raw == np.round(raw)).all():
        raise BackendError(
            "the model returns class labels, not scores; CEM needs a score or probability per class"
        )
    probabilities = to_probabilities(scores, scoring)  # also rejects bad shapes and NaNs
    logs = log_probabilities(raw, probabilities, scoring)
    others = logs.copy()
    others[:, target] = -np.inf
    margin = np.round(logs[:, target] - others.max(axis=1), MARGIN_DECIMALS)
    return margin, probabilities.argmax(axis=1)


def log_probabilities(
    raw: np.ndarray, probabilities: np.ndarray, scoring: ScoringConfig
) -> np.ndarray:
    """Log-probabilities of score rows: straight from logits (log-softmax, so a margin of 200
    logits stays 200 and never saturates), else the log of the probabilities (≥ ``TINY``)."""
    scores = np.asarray(raw, np.float64).reshape(len(probabilities), -1)
    if scoring.scores is ScoreKind.LOGITS and scores.shape[1] > 1:
        return scores - logsumexp(scores)
    if scoring.scores is ScoreKind.LOGITS and scoring.binary_threshold is None:
        z = scores[:, 0]  # one logit: log(1 − σ(z)) and log σ(z)
        return -np.stack([np.logaddexp(0.0, z), np.logaddexp(0.0, -z)], axis=1)
    return np.log(np.clip(probabilities, TINY, None))


def logsumexp(scores: np.ndarray) -> np.ndarray:
    """``log Σ exp`` of each row, as a column."""
    top = scores.max(axis=1, keepdims=True)
    return top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True))


def elastic_net(values: np.ndarray, beta: float) -> float:
    """``β‖v‖₁ + ‖v‖₂²``: the size of a solution (values are non-negative)."""
    return float(beta * values.sum() + values @ values)


def hinge(margin: np.ndarray, kind: CemKind, kappa: float) -> np.ndarray:
    """The CEM attack loss: PP wants ``margin ≥ κ``, PN wants ``margin ≤ −κ``."""
    if kind is CemKind.PERTINENT_POSITIVE:
        return np.maximum(kappa - margin, 0.0)
    return np.maximum(margin + kappa, 0.0)


def directions(seed: int, key: int, state: ChainState, count: int, q: int) -> np.ndarray:
    """This step's ``q`` unit directions in region space."""
    rng = np.random.default_rng([seed, key, state.index, state.step])
    raw = rng.standard_normal((q, count))
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


async def advance(
    state: ChainState,
    evaluator: Evaluator,
    perturbation: Perturbation,
    config: CemConfig,
    scoring: ScoringConfig,
    target: int,
    key: int,
    autoencoder: Evaluator | None = None,
) -> None:
    """One FISTA step of ``state`` (``1 + 2q`` queries, as many of ``autoencoder``'s when the
    run has the autoencoder term), in place."""
    count = state.current.size
    q, mu = config.directions, state.smoothing or config.smoothing
    units = directions(config.seed, key, state, count, q)
    probes = np.concatenate([state.momentum + mu * units, state.momentum - mu * units])
    if mu > config.smoothing:  # a grown radius reaches far past the box: stay where inputs are
        np.clip(probes, 0.0, 1.0, out=probes)
    points = np.concatenate([state.current[None], probes])
    write = partial(_write_points, perturbation, points)
    errors: np.ndarray | None = None
    if autoencoder is None:
        scores = await evaluator.evaluate_block(write, len(points))
    else:
        scores, errors = await _score_both(evaluator, autoencoder, write, len(points))
        state.autoencoder_queries += len(points)
    state.queries += len(points)
    margin, classes = margins(scores, scoring, target)
    error = 0.0 if errors is None else float(errors[0])
    _record_probe(state, config, float(margin[0]), int(classes[0]), target, error)
    loss = hinge(margin[1:], config.kind, config.kappa)
    difference = loss[:q] - loss[q:]
    state.smoothing = _next_smoothing(mu, config.smoothing, math.sqrt(count), difference, loss)
    gradient = state.penalty * (count / (2 * mu * q)) * (difference @ units)
    if errors is not None:
        rebuilt = errors[1:]
        gradient += config.gamma * (count / (2 * mu * q)) * ((rebuilt[:q] - rebuilt[q:]) @ units)
    gradient += 2 * state.momentum
    step_size = config.learning_rate
    proposal = state.momentum - step_size * gradient - step_size * config.beta
    new = np.clip(proposal, 0.0, 1.0)
    factor = state.step / (state.step + 3)
    state.momentum = new + factor * (new - state.current)
    state.current = new
    state.step += 1
    if state.step >= config.steps or (state.best is not None and state.stale >= config.patience):
        state.done = True


def _next_smoothing(
    radius: float, configured: float, largest: float, difference: np.ndarray, loss: np.ndarray
) -> float:
    """The radius for the next step: doubled (up to ``largest``, the box's diagonal) while
    the hinge is flat and unmet around the chain (every pair of probes scores the same: a
    model saturated to exactly 0/1 shows no gradient at radius μ), back toward ``configured``
    once it slopes."""
    if not difference.any():
        return min(largest, 2 * radius) if loss.min() > 0 else radius
    return max(configured, radius / 2)


async def _score_both(
    evaluator: Evaluator, autoencoder: Evaluator, write: BlockWrite, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The model's scores and the autoencoder's reconstruction errors of one block, at once."""
    found: dict[str, np.ndarray] = {}

    async def one(name: str, scorer: Evaluator) -> None:
        found[name] = await scorer.evaluate_block(write, count)

    async with anyio.create_task_group() as group:
        group.start_soon(one, "scores", evaluator)
        group.start_soon(one, "errors", autoencoder)
    errors = np.round(np.asarray(found["errors"], np.float64).reshape(-1), MARGIN_DECIMALS)
    return found["scores"], errors


def _write_points(
    perturbation: Perturbation, points: np.ndarray, out: np.ndarray, start: int, stop: int
) -> None:
    """Rows ``start … stop − 1`` of a step's block: all written in one vectorised call."""
    perturbation.write(out, points[start:stop])


def _record_probe(
    state: ChainState,
    config: CemConfig,
    margin: float,
    cls: int,
    target: int,
    reconstruction: float = 0.0,
) -> None:
    """Keep the current solution if the model classifies it as wanted and it is smaller
    (elastic net, plus γ × its reconstruction error when the run has an autoencoder)."""
    if config.kind is CemKind.PERTINENT_POSITIVE:
        wanted = cls == target and margin >= 0
    else:
        wanted = cls != target
    objective = elastic_net(state.current, config.beta)
    if config.gamma > 0:
        objective += config.gamma * reconstruction
    if wanted and objective < state.best_objective - 1e-12:
        state.best = state.current.copy()
        state.best_objective = objective
        state.best_margin = margin
        state.best_class = cls
        state.best_reconstruction = reconstruction if config.gamma > 0 else float("nan")
        state.stale = 0
    else:
        state.stale += 1
