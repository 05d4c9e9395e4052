"""A case: one input, one attribution map, the target class, and the conventions in force.

Features are what metrics rank and remove. By default they are the mode's spatial elements
(a pixel with all its channels, a voxel, a table feature), and a removed feature takes the
subject's baseline (the mode's mask value). Under Quantus' conventions
(:data:`~rex_stream.evaluation.conventions.QUANTUS`, ``--quantus-compatible``) they are Quantus
0.6.0's: the map broadcast over every element of the channel-first input tensor, ranked by an
unstable ``argsort``, removed to Quantus' baseline values.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.engine.ranking import rank_elements
from rex_stream.engine.scheduler import Fill
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError
from rex_stream.evaluation.conventions import REX_STREAM, Conventions
from rex_stream.evaluation.ranked import PositionRanking, Ranking, is_large, slab_ranges

if TYPE_CHECKING:
    from rex_stream.evaluation.explainers import BoundExplainer
    from rex_stream.evaluation.variants.pool import VariantPool

#: Quantus' named baselines (``perturb_baseline``).
BASELINES = ("black", "white", "mean", "uniform")


@dataclass(frozen=True)
class Row:
    """One model query: ``key`` names its content (equal keys are scored once), ``fill``
    writes it into a batch buffer."""

    key: tuple[object, ...]
    fill: Fill


@dataclass
class Case:
    """One (input, attribution) pair under evaluation."""

    subject: Subject
    attribution: np.ndarray  # over the subject's spatial axes
    target: int
    conventions: Conventions = REX_STREAM
    seed: int = 0
    input_key: str = "input"
    attribution_name: str = "attribution"
    mask: np.ndarray | None = None  # ground truth over the spatial axes (bool)
    #: the run's model as weights, for metrics that re-explain under changed weights (MPRT)
    variants: VariantPool | None = None
    explainer: BoundExplainer | None = None  # what re-explanation metrics call
    _tokens: dict[int, tuple[np.ndarray, bytes]] = field(default_factory=dict, repr=False)

    # -- the map ---------------------------------------------------------------------------

    def with_attribution(self, attribution: np.ndarray) -> Case:
        """The same case with another map (a re-explained one, say)."""
        return replace(self, attribution=attribution, _tokens={})

    def prepared(self, params: dict[str, object] | object) -> np.ndarray:
        """The map as the metric sees it: normalised by max |a|, then abs (Quantus' order)."""
        options = params if isinstance(params, dict) else {}
        float64 = self.conventions.float64_maps
        a = self.attribution.astype(np.float64) if float64 else self.attribution
        a = np.array(a, copy=True)
        if options.get("normalise", True) and not np.all(a == 0.0):
            a = a / np.max(np.abs(a))
        if options.get("abs", False):
            a = np.abs(a)
        return a

    def feature_weights(self, prepared: np.ndarray) -> np.ndarray:
        """The map over features, flat: spatial elements, or every tensor element."""
        if not self.conventions.element_features:
            return prepared.reshape(-1)
        expanded = self.subject.expand(prepared)
        return np.broadcast_to(expanded, self.subject.tensor.shape).reshape(-1)

    @property
    def feature_count(self) -> int:
        """How many features there are."""
        return self.subject.tensor.size if self.conventions.element_features else self.subject.size

    def descending(self, weights: np.ndarray) -> np.ndarray:
        """Feature indices from most to least relevant."""
        if not self.conventions.stable_ranking:
            return np.argsort(-weights)
        return rank_elements(weights)

    def ascending(self, weights: np.ndarray) -> np.ndarray:
        """Feature indices from least to most relevant."""
        if not self.conventions.stable_ranking:
            return np.argsort(weights)
        return rank_elements(-weights)

    # -- randomness ------------------------------------------------------------------------

    def generator(self, metric: str) -> np.random.Generator | np.random.RandomState:
        """The metric's random source: seeded by (seed, input, metric), or numpy's legacy
        generator seeded as ``np.random.seed(seed)`` is (Quantus' conventions)."""
        if not self.conventions.seeded_per_metric:
            return np.random.RandomState(self.seed)
        words = [zlib.crc32(text.encode()) for text in (self.input_key, metric)]
        return np.random.default_rng([self.seed, *words])

    # -- baselines -------------------------------------------------------------------------

    def baseline(
        self, name: str | float, rng: np.random.Generator | np.random.RandomState
    ) -> float | None:
        """The value removed features take for one perturbation (None: the subject's own
        baseline). Quantus' conventions draw one uniform number per call, as Quantus does."""
        conventions = self.conventions
        drawn = float(rng.uniform(0.0, 1.0, size=1)[0]) if conventions.draw_per_baseline else None
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            return float(name)
        text = str(name).strip().lower()
        x = self.subject.tensor
        if text == "black":
            return float(x.min()) if conventions.black_is_minimum else None
        if text == "white":
            return float(x.max())
        if text == "mean":
            return float(x.mean())
        if text == "uniform":
            return drawn if drawn is not None else float(rng.uniform(0.0, 1.0))
        try:
            return float(text)
        except ValueError:
            raise ConfigError(
                f"perturb_baseline={name!r}: use a number or one of {', '.join(BASELINES)}"
            ) from None

    # -- rows ------------------------------------------------------------------------------

    def original(self) -> Row:
        """The unmodified input."""
        subject = self.subject

        def fill(out: np.ndarray) -> None:
            np.copyto(out, subject.tensor)
            subject.after_fill()  # a memory-mapped volume hands its pages back

        return Row((self.input_key, "x"), fill)

    def token(self, array: np.ndarray) -> bytes:
        """A content digest of an array (cached per array object)."""
        held = self._tokens.get(id(array))
        if held is None:
            digest = hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()
            # the array is kept with its digest, so its id cannot be reused by another array
            held = self._tokens[id(array)] = (array, digest)
        return held[1]

    def removed_first(
        self, ranking: np.ndarray | Ranking, count: int, values: float | np.ndarray | None
    ) -> Row:
        """The input with the ``count`` highest-ranked features replaced (a position array:
        every feature whose position < ``count``).

        ``values``: one number, one per feature, or None (the subject's baseline).
        """
        if count <= 0:
            return self.original()
        ranked = self.ranking(ranking)
        key = (self.input_key, "first", ranked.key, int(count), self._value_key(values))
        return Row(key, self._fill_ranked(lambda a, b: ranked.first(count, a, b), values))

    def removed_band(self, ranking: Ranking, low: int, high: int, value: float | None) -> Row:
        """The input with the features ranked ``low`` … ``high`` − 1 replaced by ``value``."""
        if high <= low:
            return self.original()
        key = (self.input_key, "band", ranking.key, int(low), int(high), value)

        def select(start: int, stop: int) -> np.ndarray:
            return ranking.first(high, start, stop) & ~ranking.first(low, start, stop)

        return Row(key, self._fill_ranked(select, value))

    def ranking(self, ranking: np.ndarray | Ranking) -> Ranking:
        """A ranking; a position array is wrapped (its digest cached per array)."""
        if isinstance(ranking, Ranking):
            return ranking
        return PositionRanking(ranking, key=self.token(ranking))

    def _value_key(self, values: float | np.ndarray | None) -> object:
        if values is None:
            return None
        return self.token(values) if isinstance(values, np.ndarray) else float(values)

    def removed_set(self, indices: np.ndarray, value: float | None) -> Row:
        """The input with the features ``indices`` replaced by ``value``."""
        if indices.size == 0:
            return self.original()
        digest = hashlib.blake2b(np.sort(indices).tobytes(), digest_size=16).digest()
        key = (self.input_key, "set", digest, value)
        size = self.feature_count

        def select(start: int, stop: int) -> np.ndarray:
            chosen = np.zeros(size, dtype=bool)
            chosen[indices] = True
            return chosen[start:stop]

        return Row(key, self._fill_ranked(select, value))

    def _fill_ranked(
        self, select: Callable[[int, int], np.ndarray], values: float | np.ndarray | None
    ) -> Fill:
        """A fill replacing the features ``select(start, stop)`` picks in each flat range;
        spatial features are written slab by slab, so no input-sized mask is made."""
        subject = self.subject
        elements = self.conventions.element_features
        size = self.feature_count

        # a mode with its own masking (spectral interpolation) masks the whole input at once
        own_mask = type(subject).fill_mask is not Subject.fill_mask
        whole = elements or not is_large(size) or (values is None and own_mask)

        def fill(out: np.ndarray) -> None:
            if whole:
                _fill_whole(subject, elements, select(0, size), values, out)
                return
            np.copyto(out, subject.tensor)
            shape = subject.spatial_shape
            plane = size // shape[0]
            axis = subject.spatial_axes[0]
            baseline = np.broadcast_to(np.asarray(subject.baseline, out.dtype), out.shape)
            for start, stop in slab_ranges(shape):
                chosen = select(start, stop).reshape(stop // plane - start // plane, *shape[1:])
                index: list[slice] = [slice(None)] * out.ndim
                index[axis] = slice(start // plane, stop // plane)
                where = tuple(index)
                source: np.ndarray | float
                if values is None:
                    source = baseline[where]
                elif isinstance(values, np.ndarray):
                    source = subject.expand(values[start:stop].reshape(chosen.shape))
                else:
                    source = values
                np.copyto(out[where], source, where=subject.expand(chosen))
            subject.after_fill()

        return fill


def _fill_whole(
    subject: Subject,
    elements: bool,
    chosen: np.ndarray,
    values: float | np.ndarray | None,
    out: np.ndarray,
) -> None:
    """Write the input with the features ``chosen`` (a flat mask over all of them) replaced;
    ``elements``: the features are the tensor's elements, else its spatial positions."""
    if elements:
        np.copyto(out, subject.tensor)
        flat = out.reshape(-1)
        flat[chosen] = values[chosen] if isinstance(values, np.ndarray) else values
        return
    spatial = chosen.reshape(subject.spatial_shape)
    if values is None:
        subject.fill_mask(out, ~spatial)
        return
    region = subject.expand(spatial)
    if isinstance(values, np.ndarray):
        source: np.ndarray = subject.expand(values.reshape(subject.spatial_shape))
    else:
        source = np.asarray(values, dtype=out.dtype)
    np.copyto(out, subject.tensor)
    np.copyto(out, source, where=region)
