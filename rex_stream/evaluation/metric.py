"""What a metric is: its name, Quantus' name, its parameters (Quantus' names and defaults),
what it needs, which direction is better, and the parsing of ``--metrics`` strings."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rex_stream.errors import ConfigError

if TYPE_CHECKING:
    from rex_stream.evaluation.case import Case
    from rex_stream.evaluation.scoring import RowScorer

Params = Mapping[str, Any]

#: Parameters every metric takes (Quantus' base-class arguments).
COMMON = ("abs", "normalise")


@dataclass(frozen=True)
class MetricResult:
    """One metric on one (input, attribution): the score, its curve if it has one, the rows
    it asked for, and the seed its random draws came from."""

    score: float
    curve: np.ndarray | None = None
    queries: int = 0
    seed: int = 0
    extras: Mapping[str, float] = field(default_factory=dict)


Compute = Callable[["Case", Params, "RowScorer"], Awaitable[MetricResult]]


@dataclass(frozen=True)
class MetricSpec:
    """A metric: ``compute`` turns a case into a result; ``defaults`` are Quantus 0.6.0's."""

    name: str
    quantus: str
    needs: str  # "queries", "map", "mask" or "explainer" (re-explains: --explainer)
    higher_is_better: bool
    defaults: Mapping[str, Any]
    compute: Compute
    curve: bool = False
    #: For a metric defined over a set of inputs (sensitivity-n): the per-input results'
    #: reduction to the one score every input then reports.
    across_inputs: Callable[[list[MetricResult], Params], float] | None = None
    #: A curve's x values from (params, feature count, curve length); None: equal steps
    #: over (0, 1], each a fraction of the features.
    curve_x: Callable[[Params, int, int], np.ndarray] | None = None
    #: A curve's x values from (params, the input's spatial shape, curve length), for a curve
    #: whose steps depend on the input's geometry (patches); preferred to ``curve_x``.
    curve_x_spatial: Callable[[Params, tuple[int, ...], int], np.ndarray] | None = None
    #: What a curve's x axis counts.
    curve_axis: str = "fraction of features removed"
    #: Whether a curve is better "higher" or "lower" (None: as the score is).
    curve_better: str | None = None

    def x_values(
        self, params: Params, features: int, length: int, shape: tuple[int, ...] = ()
    ) -> np.ndarray:
        """The x value of every point of a curve of ``length`` points (``shape``: the input's
        spatial shape, when known)."""
        if self.curve_x_spatial is not None and shape:
            return np.asarray(self.curve_x_spatial(params, shape, length), np.float64)
        if self.curve_x is not None:
            return np.asarray(self.curve_x(params, features, length), np.float64)
        return np.arange(1, length + 1, dtype=np.float64) / max(1, length)

    @property
    def better_curve(self) -> str:
        """``"higher"`` or ``"lower"``: which way this metric's curve is better."""
        return self.curve_better or ("higher" if self.higher_is_better else "lower")

    def params(self, given: Mapping[str, str]) -> dict[str, Any]:
        """Defaults overridden by ``given`` (strings parsed to the default's type)."""
        params = dict(self.defaults)
        for key, raw in given.items():
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults))
                raise ConfigError(
                    f"metric {self.name} has no parameter {key!r}; its parameters: {known}"
                )
            params[key] = _parse_value(self.name, key, raw, self.defaults[key])
        return params


@dataclass(frozen=True)
class MetricChoice:
    """A metric with its parameters as the user set them."""

    spec: MetricSpec
    params: Mapping[str, Any]

    @property
    def label(self) -> str:
        """The metric's name with its non-default parameters: ``pixel-flipping:k=224``."""
        changed = [
            f"{k}={_show(v)}" for k, v in sorted(self.params.items()) if self.spec.defaults[k] != v
        ]
        return ":".join([self.spec.name, *changed])


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_value(metric: str, key: str, raw: str, default: Any) -> Any:
    text = raw.strip()
    what = f"metric {metric}: {key}={raw!r}"
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{what} must be true or false")
    if isinstance(default, int):
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{what} must be an integer") from None
        # a seed may be 0; every other whole-number parameter counts something
        if value < 0 or (value == 0 and key != "seed"):
            raise ConfigError(f"{what} must be {'>= 0' if key == 'seed' else '> 0'}")
        return value
    if isinstance(default, float):
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{what} must be a number") from None
        # every number parameter is a size, a noise or a threshold; a fraction is at most 1
        if key in FRACTIONS and not 0 < number <= 1:
            raise ConfigError(f"{what} must be in (0, 1]")
        if not 0 <= number < math.inf:
            raise ConfigError(f"{what} must be a number >= 0")
        return number
    return text


#: Number parameters that are fractions of the input's features.
FRACTIONS = ("n_max_percentage", "step_fraction")


def parse_metrics(text: str, registry: Mapping[str, MetricSpec]) -> list[MetricChoice]:
    """``"pixel-flipping:features_in_step=224,selectivity:patch_size=16"`` → choices.

    Names are case-insensitive and accept Quantus' class names (``PixelFlipping``) and
    underscores; several parameters chain with ``:`` (``m:a=1:b=2``).
    """
    aliases = {_canonical(spec.quantus): spec for spec in registry.values()}
    aliases.update({_canonical(name): spec for name, spec in registry.items()})
    choices: list[MetricChoice] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, *settings = item.split(":")
        spec = aliases.get(_canonical(name))
        if spec is None:
            raise ConfigError(
                f"unknown metric {name.strip()!r}; valid metrics: {', '.join(sorted(registry))}"
            )
        given: dict[str, str] = {}
        for setting in settings:
            key, sep, value = setting.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"metric {spec.name}: expected key=value, got {setting!r}")
            given[key.strip()] = value
        choices.append(MetricChoice(spec, spec.params(given)))
    if not choices:
        raise ConfigError("no metrics given: --metrics pixel-flipping,sparseness,…")
    labels = [c.label for c in choices]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"metric {repeated[0]} is listed twice")
    return choices


def _canonical(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")
