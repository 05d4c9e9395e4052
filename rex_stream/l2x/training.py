"""Training an L2X explainer from black-box scores (REAL-X order: approximator, then selector).

1. Score every training input unmasked and under random region masks (:mod:`queries`).
2. Fit the *approximator* ``A([f ⊙ w, w]) ≈ model(x ⊙ w)`` on those scores, where ``f`` are
   the input's region features and ``w`` the mask; then freeze it.
3. Fit the *selector* ``S(f) → region logits`` so that the approximator, shown only the relaxed
   top-k of ``S`` (Gumbel-softmax draws), reproduces the model's prediction on the whole input.
4. On held-out inputs, ask the model itself about the hard top-k (post-hoc accuracy), compare
   with ``k`` random regions and with the approximator (the agreement gap).

Each phase's parameters and Adam moments are committed to the store after every epoch; every
epoch's shuffling and Gumbel noise come from ``(seed, phase, epoch)``, so a resumed run ends
with the same explainer as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np

from rex_stream.config import ScoringConfig
from rex_stream.engine.regions import Regions
from rex_stream.engine.scheduler import CountingEvaluator, Evaluator
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.l2x.config import L2xConfig
from rex_stream.l2x.explainer import MLP, SHARED, Explainer, ExplainerRejected
from rex_stream.l2x.features import region_features
from rex_stream.l2x.networks import (
    Adam,
    autograd_modules,
    gumbel_noise,
    init_mlp,
    log_softmax,
    mlp,
    pooled_regions,
    relaxed_top_k,
    shared_region_logits,
)
from rex_stream.l2x.queries import score_masks, training_scores

logger = logging.getLogger(__name__)

APPROXIMATOR, SELECTOR = "l2x_approximator", "l2x_selector"
_SPLIT_SALT, _RANDOM_SALT = 0x5B17, 0x2A4D


def split(count: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded training and held-out indices (at least one of each)."""
    if count < 2:
        raise InputError(f"L2X training needs at least 2 inputs, got {count}")
    order = np.random.default_rng([seed, _SPLIT_SALT]).permutation(count)
    held = min(count - 1, max(1, math.ceil(held_out * count)))
    return np.sort(order[held:]), np.sort(order[:held])


def _with_mask(features: Any, masks: Any, xp: Any) -> Any:
    """Approximator inputs ``[f ⊙ w, w]`` for features ``(B, R, F)`` and masks ``(B, R)``."""
    batch = features.shape[0]
    masked = xp.reshape(features * masks[:, :, None], (batch, -1))
    return xp.concatenate([masked, masks], axis=1)


async def train_explainer(
    subjects: Sequence[Subject],
    evaluator: Evaluator,
    model: str,
    config: L2xConfig,
    scoring: ScoringConfig,
    *,
    store: ExplanationStore | None = None,
) -> Explainer:
    """Train, measure on held-out inputs, and return the explainer (or refuse it)."""
    anp, grad = autograd_modules()
    shapes = {tuple(s.tensor.shape) for s in subjects}
    if len(shapes) != 1:
        raise InputError(f"L2X training inputs must share one shape, got {sorted(shapes)}")
    counting = CountingEvaluator(evaluator)
    regions = Regions.grid(subjects[0].spatial_shape, config.region_size)
    if config.k >= regions.count:
        raise InputError(f"k = {config.k} must be below the number of regions ({regions.count})")
    train_index, held_index = split(len(subjects), config.held_out, config.seed)
    features = np.stack([region_features(s, regions) for s in subjects])
    width = features.shape[2]
    if config.shared_regions:  # one scale per feature, so that regions stay comparable
        spread = features[train_index].reshape(-1, width).std(axis=0) + 1e-6
        scale = np.broadcast_to(spread, features.shape[1:]).copy()
    else:
        scale = features[train_index].std(axis=0) + 1e-6
    features = features / scale
    training = [subjects[i] for i in train_index]
    masks, scores = await training_scores(
        training,
        regions,
        counting,
        scoring,
        config.seed,
        config.masks_per_input,
        config.chunk_inputs,
        store,
    )
    classes = scores.shape[-1]
    train_features = features[train_index]
    rows = masks.shape[1]
    nets = _Networks(config, regions.count, width, classes)
    pair_inputs = nets.approximator_inputs(
        np.repeat(train_features, rows, axis=0), masks.reshape(-1, regions.count).astype(float), np
    )
    pair_targets = scores.reshape(-1, classes)

    def approx_loss(params: Any, inputs: Any, targets: Any, _noise: Any) -> Any:
        predicted = nets.approximate(params, inputs, anp)
        return -anp.mean(anp.sum(targets * log_softmax(predicted, anp), axis=1))

    approximator = await _fit(
        APPROXIMATOR,
        nets.initial_approximator(),
        grad(approx_loss),
        pair_inputs,
        pair_targets,
        None,
        config,
        store,
    )
    selector_inputs = nets.selector_inputs(train_features)
    labels = scores[:, 0, :]

    def selector_loss(params: Any, inputs: Any, targets: Any, noise: Any) -> Any:
        logits = nets.select(params, inputs, anp)
        weights = relaxed_top_k(logits, config.k, config.temperature, noise, anp)
        shaped = anp.reshape(inputs, (inputs.shape[0], regions.count, width))
        predicted = nets.approximate(
            approximator, nets.approximator_inputs(shaped, weights, anp), anp
        )
        return -anp.mean(anp.sum(targets * log_softmax(predicted, anp), axis=1))

    def noise(rng: np.random.Generator, batch: int) -> np.ndarray:
        return gumbel_noise(rng, (batch, config.k, regions.count))

    selector = await _fit(
        SELECTOR,
        nets.initial_selector(),
        grad(selector_loss),
        selector_inputs,
        labels,
        noise,
        config,
        store,
    )
    explainer = Explainer(
        selector=selector,
        selector_sizes=nets.select_sizes,
        scale=scale,
        k=config.k,
        region_edge=regions.edge,
        spatial_shape=tuple(subjects[0].spatial_shape),
        input_shape=tuple(subjects[0].tensor.shape),
        model=model,
        classes=classes,
        architecture=nets.architecture,
    )
    held = [subjects[i] for i in held_index]
    metrics = await measure(explainer, held, counting, scoring, config.seed)
    approx_hits = []
    for subject, chosen, label in zip(held, metrics.pop("selections"), metrics.pop("labels")):
        mask = np.zeros((1, regions.count))
        mask[0, chosen] = 1.0
        shaped = (region_features(subject, regions) / scale)[None]
        predicted = nets.approximate(approximator, nets.approximator_inputs(shaped, mask, np), np)
        approx_hits.append(int(np.argmax(predicted)) == label)
    metrics["approximator_accuracy"] = float(np.mean(approx_hits))
    metrics["gap"] = round(abs(metrics["approximator_accuracy"] - metrics["posthoc_accuracy"]), 6)
    metrics.update(
        training_inputs=len(train_index),
        regions=regions.count,
        k=config.k,
        training_queries=counting.queries,
    )
    explainer.metrics = metrics
    if metrics["gap"] > config.max_gap:
        raise ExplainerRejected(
            f"the selector and the model disagree on held-out inputs (approximator accuracy "
            f"{metrics['approximator_accuracy']:.2f}, model {metrics['posthoc_accuracy']:.2f}: "
            f"gap {metrics['gap']:.2f} > {config.max_gap}); not saved — train longer, with "
            "more masks per input, or another k"
        )
    return explainer


async def measure(
    explainer: Explainer,
    subjects: Sequence[Subject],
    evaluator: Evaluator,
    scoring: ScoringConfig,
    seed: int,
) -> dict[str, Any]:
    """Post-hoc accuracy of the selection on ``subjects`` against ``k`` random regions.

    The model scores each input whole, with only the selected regions, and with ``k`` random
    regions (3 queries per input); accuracy is how often the prediction is kept.
    """
    regions, k = explainer.regions, explainer.k
    selections = [explainer.select(s) for s in subjects]
    chosen, random = [], []
    for position, selection in enumerate(selections):
        mask = np.zeros(regions.count, bool)
        mask[selection] = True
        chosen.append(mask)
        rng = np.random.default_rng([seed, position, _RANDOM_SALT])
        other = np.zeros(regions.count, bool)
        other[rng.choice(regions.count, k, replace=False)] = True
        random.append(other)
    every = [np.stack([np.ones(regions.count, bool), c, r]) for c, r in zip(chosen, random)]
    probabilities = await score_masks(subjects, every, regions, evaluator, scoring)
    classes = probabilities.argmax(axis=1).reshape(len(subjects), 3)
    labels = classes[:, 0]
    return {
        "held_out": len(subjects),
        "posthoc_accuracy": float(np.mean(classes[:, 1] == labels)),
        "random_accuracy": float(np.mean(classes[:, 2] == labels)),
        "selections": selections,
        "labels": [int(v) for v in labels],
    }


class _Networks:
    """The selector and approximator of one training run: one MLP over all regions (L2X's),
    or networks shared by every region (``config.shared_regions``)."""

    def __init__(self, config: L2xConfig, count: int, width: int, classes: int) -> None:
        self.config, self.count, self.width = config, count, width
        hidden = config.hidden
        self.architecture = SHARED if config.shared_regions else MLP
        if config.shared_regions:
            self.select_sizes = [width, hidden, hidden, 1]
            self.encoder = [width + 1, hidden, hidden]
            self.head = [2 * hidden, hidden, classes]
        else:
            self.select_sizes = [count * width, hidden, hidden, count]
            self.approx_sizes = [count * width + count, hidden, hidden, classes]

    def initial_approximator(self) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, 1])
        if self.architecture == MLP:
            return init_mlp(self.approx_sizes, rng)
        return np.concatenate([init_mlp(self.encoder, rng), init_mlp(self.head, rng)])

    def initial_selector(self) -> np.ndarray:
        return init_mlp(self.select_sizes, np.random.default_rng([self.config.seed, 2]))

    def approximator_inputs(self, features: Any, masks: Any, xp: Any) -> Any:
        """Features ``(B, R, F)`` shown through masks ``(B, R)``, as the approximator reads them."""
        if self.architecture == MLP:
            return _with_mask(features, masks, xp)
        weights = xp.reshape(masks, (masks.shape[0], self.count, 1))
        return xp.concatenate([features * weights, weights], axis=2)

    def approximate(self, params: Any, inputs: Any, xp: Any) -> Any:
        if self.architecture == MLP:
            return mlp(params, self.approx_sizes, inputs, xp)
        return pooled_regions(params, self.encoder, self.head, inputs, xp)

    def selector_inputs(self, features: np.ndarray) -> np.ndarray:
        if self.architecture == MLP:
            return features.reshape(len(features), -1)
        return features

    def select(self, params: Any, inputs: Any, xp: Any) -> Any:
        if self.architecture == MLP:
            return mlp(params, self.select_sizes, inputs, xp)
        shaped = xp.reshape(inputs, (inputs.shape[0], self.count, self.width))
        return shared_region_logits(params, self.select_sizes, shaped, xp)


async def _fit(
    phase: str,
    initial: np.ndarray,
    gradient: Callable[..., np.ndarray],
    inputs: np.ndarray,
    targets: np.ndarray,
    noise: Callable[[np.random.Generator, int], np.ndarray] | None,
    config: L2xConfig,
    store: ExplanationStore | None,
) -> np.ndarray:
    """Adam over minibatches for the phase's epochs, resuming from its last checkpoint."""
    epochs = config.approximator_epochs if phase == APPROXIMATOR else config.selector_epochs
    salt = 1 if phase == APPROXIMATOR else 2
    params = initial
    adam = Adam.start(params.size, config.learning_rate)
    start = 0
    if store is not None:
        saved = (await anyio.to_thread.run_sync(store.committed, phase)).get(0)
        if saved is not None and saved.table.shape == (3, params.size):
            params, adam.first, adam.second = (np.array(row) for row in saved.table)
            adam.step = int(saved.attributes["step"])
            start = int(saved.attributes["epoch"])
    for epoch in range(start, epochs):
        rng = np.random.default_rng([config.seed, salt, epoch + 1])
        order = rng.permutation(len(inputs))
        for first in range(0, len(order), config.batch):
            batch = order[first : first + config.batch]
            extra = noise(rng, len(batch)) if noise is not None else None
            params = adam.update(params, gradient(params, inputs[batch], targets[batch], extra))
        if store is not None:
            record = Record(
                0,
                np.stack([params, adam.first, adam.second]),
                {"epoch": epoch + 1, "step": adam.step},
            )
            await anyio.to_thread.run_sync(store.commit, phase, record)
        await anyio.lowlevel.checkpoint()
    return params
