"""Typed configuration, grouped by concern; defaults follow ReX 0.4.1 unless noted."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from rex_stream.errors import ConfigError


class Distribution(str, Enum):
    """How split points are drawn inside a box."""

    UNIFORM = "uniform"
    BETABINOM = "betabinom"
    ADAPTIVE = "adaptive"


class QueueStyle(str, Enum):
    """How the passing mutants of one level are pruned into the next level's jobs."""

    AREA = "area"
    INTERSECTION = "intersection"
    ALL = "all"
    DC = "dc"


class ResponsibilityStyle(str, Enum):
    """How iterations combine: summed (ReX 0.3) or multiplied and max-normalised (ReX 0.4)."""

    ADDITIVE = "additive"
    MULTIPLICATIVE = "multiplicative"


class ScoreKind(str, Enum):
    """What the model's output rows are."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"


@dataclass(frozen=True)
class SearchConfig:
    """The causal-responsibility search (ReX's ``[causal]`` section)."""

    iters: int = 20
    tree_depth: int = 10
    search_limit: int | None = None
    min_box_size: int = 10
    confidence_filter: float = 0.0
    weighted: bool = True  # ReX: false; confidence-weighted credit measured better (README)
    concentrate: bool = False
    queue_style: QueueStyle = QueueStyle.AREA
    queue_len: int | None = 1  # None means "all"
    distribution: Distribution = Distribution.UNIFORM
    distribution_args: tuple[float, float] | None = None
    responsibility_style: ResponsibilityStyle = ResponsibilityStyle.MULTIPLICATIVE
    seed: int | None = None
    negative_responsibility: bool = False  # ReX 0.4.1: the target map minus the others'
    # iterations searched at once; None: as many as keep the backend's batches full, so each
    # iteration is committed soon after it starts (a killed run keeps what the time bought)
    max_concurrent_searches: int | None = None
    adaptive_lag: int = 4
    use_bounding_box: bool = False  # ReX 0.4.1: search only inside the target's bounding box
    bounding_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) in model pixels

    def __post_init__(self) -> None:
        _coerce(self, "queue_style", QueueStyle, "causal.queue_style")
        _coerce(self, "distribution", Distribution, "causal.distribution.distribution")
        _coerce(self, "responsibility_style", ResponsibilityStyle, "causal.responsibility_style")
        if self.distribution_args is not None:
            object.__setattr__(self, "distribution_args", tuple(self.distribution_args))
        for name in ("iters", "tree_depth", "min_box_size"):
            value = getattr(self, name)
            whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            _require(whole, f"causal.{name}", value, "must be a whole number")
        _require(self.iters > 0, "causal.iters", self.iters, "must be > 0")
        _require(self.iters <= MAX_ITERS, "causal.iters", self.iters, f"must be <= {MAX_ITERS}")
        _require(self.seed is None or self.seed >= 0, "rex.seed", self.seed, "must be >= 0")
        _require(self.tree_depth > 0, "causal.tree_depth", self.tree_depth, "must be > 0")
        _require(self.min_box_size > 0, "causal.min_box_size", self.min_box_size, "must be > 0")
        _require(
            self.search_limit is None or self.search_limit > 0,
            "causal.search_limit",
            self.search_limit,
            "must be > 0",
        )
        _require(
            0.0 <= self.confidence_filter <= 1.0,
            "causal.confidence_filter",
            self.confidence_filter,
            "must be in [0, 1]",
        )
        _require(
            self.queue_len is None or self.queue_len > 0,
            "causal.queue_len",
            self.queue_len,
            'must be > 0 or "all"',
        )
        _require(
            self.max_concurrent_searches is None or self.max_concurrent_searches > 0,
            "max_concurrent_searches",
            self.max_concurrent_searches,
            "must be > 0",
        )
        if self.bounding_box is not None:
            box = tuple(self.bounding_box)
            _require(
                len(box) == 4
                and all(isinstance(v, int) and v >= 0 for v in box)
                and box[0] < box[2]
                and box[1] < box[3],
                "causal.bounding_box",
                self.bounding_box,
                "must be [x0, y0, x1, y1]: whole numbers >= 0 with x0 < x1 and y0 < y1",
            )
            object.__setattr__(self, "bounding_box", box)
        if self.distribution is Distribution.BETABINOM:
            args = self.distribution_args
            _require(
                args is not None and len(args) == 2 and all(a > 0 for a in args),
                "causal.distribution.distribution_args",
                args,
                "betabinom needs two positive numbers [alpha, beta]",
            )


@dataclass(frozen=True)
class SchedulerConfig:
    """How mutants are coalesced and sent to the backend."""

    max_batch: int | None = None  # None: the backend's preferred batch, else 32
    max_inflight: int | None = None  # None: 8 for network backends, else 2
    # add calls while round trips, not the backend, limit; None: when max_inflight is unset
    adaptive_inflight: bool | None = None
    linger_ms: float = 2.0
    queue_size: int = 4096  # requests (a row list or a block each) waiting to be batched
    retry_s: float = 120.0  # how long a failing backend call is retried (0: never)
    memory_gib: float | None = None  # None: a quarter of the machine's memory

    def __post_init__(self) -> None:
        _require(
            self.max_batch is None or self.max_batch > 0,
            "rex.batch_size",
            self.max_batch,
            "must be > 0",
        )
        _require(
            self.max_inflight is None or self.max_inflight > 0,
            "max_inflight",
            self.max_inflight,
            "must be > 0",
        )
        _require(
            0 <= self.linger_ms < math.inf, "linger_ms", self.linger_ms, "must be >= 0, finite"
        )
        _require(self.queue_size > 0, "queue_size", self.queue_size, "must be > 0")
        _require(self.retry_s >= 0, "retry_s", self.retry_s, "must be >= 0 (0: no retries)")
        _require(
            self.memory_gib is None or 0 < self.memory_gib < math.inf,
            "memory_gib",
            self.memory_gib,
            "must be a number > 0",
        )


@dataclass(frozen=True)
class ScoringConfig:
    """How model outputs become verdicts (class, confidence)."""

    scores: ScoreKind = ScoreKind.LOGITS
    binary_threshold: float | None = None
    target: int | None = None

    def __post_init__(self) -> None:
        _coerce(self, "scores", ScoreKind, "scores")
        if self.binary_threshold is not None:
            _require(
                0.0 <= self.binary_threshold <= 1.0,
                "rex.onnx.binary_threshold",
                self.binary_threshold,
                "must be in [0, 1]",
            )


@dataclass(frozen=True)
class ImageConfig:
    """Image preprocessing (ReX's ``[rex.onnx]``) and the mask value (``[rex] mask_value``)."""

    norm: float | None = 255.0
    means: tuple[float, ...] | None = None
    stds: tuple[float, ...] | None = None
    mask_value: float | str = 0.0
    mode: str | None = None
    mode_options: Mapping[str, str] = field(default_factory=dict)
    context: str | None = None  # ReX's --context: masked elements come from this input
    context_noise: float = 0.0  # ReX's --noise: Gaussian blur (sigma) of the context

    def __post_init__(self) -> None:
        _require(self.context_noise >= 0, "--noise", self.context_noise, "must be >= 0")
        _require(_finite(self.norm), "rex.onnx.norm", self.norm, "must be a finite number")
        _require(_finite(self.means), "rex.onnx.means", self.means, "must be finite numbers")
        _require(_finite(self.stds), "rex.onnx.stds", self.stds, "must be finite numbers")
        if isinstance(self.mask_value, str):
            _require(
                self.mode == "text"  # text: delete, attention, mask-token or a literal too
                or self.mask_value in ("min", "mean", "random", "linear"),
                "rex.mask_value",
                self.mask_value,
                'must be a number, "min", "mean", "random" or "linear"',
            )
        else:
            # NaN is ReX's "none"; an infinite value is a typo
            _require(
                not math.isinf(self.mask_value), "rex.mask_value", self.mask_value, "is infinite"
            )
        if self.stds is not None:
            _require(all(s != 0 for s in self.stds), "rex.onnx.stds", self.stds, "must be != 0")


@dataclass(frozen=True)
class ExtractionConfig:
    """Turning the map into an explanation (ReX's ``[explanation]``)."""

    strategy: str = "global"  # or "spatial", "contrastive", "multi"
    search: str = "bracket"  # or "linear": every candidate in order
    chunk_size: int = 10
    minimum_confidence_threshold: float = 0.0
    extract: bool = True
    complete: bool = False  # ReX's --complete: with contrastive, about the original confidence
    spatial_initial_radius: int = 25
    spatial_radius_eta: float = 0.2
    # rex-stream: ties of the map ranked by their neighbourhood's mean over this many elements
    # (0: by element index, as ReX); the map's order between distinct values is kept
    tie_break_radius: int = 0
    # rex-stream: rounds of dropping pieces of a global/spatial explanation the model does not
    # need (rex_stream/causal/shrink.py; 0: ReX's top-ranked set as it is). 2: area 0.218 →
    # 0.131 (ReX 0.156) on 8 held-out photos at 20 iterations for +143 queries (bench/RESULTS.md)
    shrink_rounds: int = 2

    def __post_init__(self) -> None:
        aliases = {"linear": "global", "spotlight": "multi"}  # ReX's aliases
        object.__setattr__(self, "strategy", aliases.get(self.strategy, self.strategy))
        _require(
            self.strategy in ("global", "spatial", "contrastive", "multi"),
            "explanation.strategy",
            self.strategy,
            'must be "global", "spatial", "contrastive" or "multi"',
        )
        _require(
            self.spatial_initial_radius > 0,
            "explanation.spatial.spatial_initial_radius",
            self.spatial_initial_radius,
            "must be > 0",
        )
        _require(
            0.0 < self.spatial_radius_eta <= 1.0,
            "explanation.spatial.spatial_radius_eta",
            self.spatial_radius_eta,
            "must be in (0, 1]",
        )
        _require(
            self.search in ("bracket", "linear"),
            "explanation.search",
            self.search,
            'must be "bracket" or "linear"',
        )
        _require(self.chunk_size > 0, "explanation.chunk_size", self.chunk_size, "must be > 0")
        _require(
            isinstance(self.tie_break_radius, int) and self.tie_break_radius >= 0,
            "explanation.tie_break_radius",
            self.tie_break_radius,
            "must be a whole number >= 0",
        )
        _require(
            isinstance(self.shrink_rounds, int) and self.shrink_rounds >= 0,
            "explanation.shrink_rounds",
            self.shrink_rounds,
            "must be a whole number >= 0",
        )
        _require(
            0.0 <= self.minimum_confidence_threshold <= 1.0,
            "explanation.minimum_confidence_threshold",
            self.minimum_confidence_threshold,
            "must be in [0, 1]",
        )


@dataclass(frozen=True)
class MultiConfig:
    """Multiple explanations by spotlight search (ReX's ``[explanation.multi]``)."""

    spotlights: int = 10
    spotlight_size: int = 20  # recorded only, as in ReX (spotlights use the spatial radius)
    spotlight_eta: float = 0.2  # recorded only, as in ReX
    spotlight_step: int = 5
    max_spotlight_budget: int = 40
    spotlight_objective_function: str = "none"
    permitted_overlap: float = 0.0
    no_expansions: int = 4
    rescue: bool = True  # rex-stream: look again, without the kept elements, where ReX gives up

    def __post_init__(self) -> None:
        _require(
            self.spotlights > 0, "explanation.multi.spotlights", self.spotlights, "must be > 0"
        )
        _require(
            self.spotlight_step > 0,
            "explanation.multi.spotlight_step",
            self.spotlight_step,
            "must be > 0",
        )
        _require(
            self.max_spotlight_budget > 0,
            "explanation.multi.max_spotlight_budget",
            self.max_spotlight_budget,
            "must be > 0",
        )
        _require(
            self.spotlight_objective_function in ("none", "mean", "max"),
            "explanation.multi.spotlight_objective_function",
            self.spotlight_objective_function,
            'must be "none", "mean" or "max"',
        )
        _require(
            0.0 <= self.permitted_overlap <= 1.0,
            "explanation.multi.permitted_overlap",
            self.permitted_overlap,
            "must be in [0, 1]",
        )
        _require(
            self.no_expansions > 0,
            "explanation.spatial.no_expansions",
            self.no_expansions,
            "must be > 0",
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """Insertion/deletion curves (ReX's ``[explanation.evaluation]``)."""

    analyse: bool = False
    insertion_step: int = 100
    normalise_curves: bool = True

    def __post_init__(self) -> None:
        _require(
            self.insertion_step > 0,
            "explanation.evaluation.insertion_step",
            self.insertion_step,
            "must be > 0",
        )


@dataclass(frozen=True)
class VisualConfig:
    """Pictures (ReX's ``[rex.visual]``)."""

    colour: int = 200
    alpha: float = 0.2
    heatmap_colours: str = "magma"
    multi_style: str = "composite"  # or "separate"

    def __post_init__(self) -> None:
        _require(
            self.multi_style in ("composite", "separate"),
            "rex.visual.multi_style",
            self.multi_style,
            'must be "composite" or "separate"',
        )
        _require(0 <= self.colour <= 255, "rex.visual.colour", self.colour, "must be 0..255")
        _require(0.0 <= self.alpha <= 1.0, "rex.visual.alpha", self.alpha, "must be in [0, 1]")


@dataclass(frozen=True)
class ExplainConfig:
    """Everything one explanation needs, grouped by concern."""

    search: SearchConfig = field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    multi: MultiConfig = field(default_factory=MultiConfig)
    #: the rex.toml these settings came from (reported in summaries and stores), if any
    config_file: str | None = None

    def with_overrides(self, **overrides: Any) -> ExplainConfig:
        """Return a copy with flat field overrides (``iters=5``, ``max_batch=14``…) applied."""
        groups = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config_file"}
        changes: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            owners = [name for name, group in groups.items() if key in _field_names(group)]
            if not owners:
                raise ConfigError(f"unknown setting {key!r}", key=key)
            changes.setdefault(owners[0], {})[key] = value
        for name, values in changes.items():
            groups[name] = replace(groups[name], **values)
        return ExplainConfig(**groups, config_file=self.config_file)


def _coerce(group: Any, name: str, kind: type[Enum], key: str) -> None:
    """Accept an enum's value (``"probabilities"``) wherever the enum is expected."""
    value = getattr(group, name)
    if not isinstance(value, kind):
        try:
            object.__setattr__(group, name, kind(str(value).lower()))
        except ValueError:
            choices = ", ".join(str(k.value) for k in kind)
            detail = f"{value!r} must be one of {choices}"
            raise ConfigError(f"{key} = {detail}", key=key, detail=detail) from None


def _field_names(group: Any) -> set[str]:
    return {f.name for f in fields(group)}


#: The most iterations a search takes (each is a search of its own; more is a typo).
MAX_ITERS = 1_000_000


def _finite(value: float | tuple[float, ...] | None) -> bool:
    """Whether a number (or every number of a tuple) is finite; None is."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    try:
        return all(v is None or math.isfinite(v) for v in values)
    except TypeError:  # not numbers at all
        return False


def _require(condition: bool, key: str, value: object, why: str) -> None:
    if not condition:
        detail = f"{value!r} {why}"
        raise ConfigError(f"{key} = {detail}", key=key, detail=detail)
