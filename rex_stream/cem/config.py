"""The settings of a CEM run (one frozen dataclass: the method's own concern)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rex_stream.errors import ConfigError


class CemKind(str, Enum):
    """Which contrastive explanation: what must be present, or what must stay absent."""

    PERTINENT_POSITIVE = "pp"
    PERTINENT_NEGATIVE = "pn"


@dataclass(frozen=True)
class CemConfig:
    """Optimisation settings; defaults cost a few thousand queries per input (at most
    ``1 + chains × steps × (1 + 2q)``; a chain usually stops early).

    ``penalties`` are the constants ``c`` in front of the hinge (a parallel grid instead of
    CEM's sequential binary search); ``restarts`` chains per constant differ in their seeded
    directions. ``directions`` is ``q``: each step costs ``1 + 2q`` queries. ``smoothing`` is
    μ in mask units. ``region_size`` is a region's edge in elements (None: about 100 regions).
    A chain stops after ``steps`` steps, or ``patience`` steps without a better solution.
    ``gamma`` weighs the optional autoencoder term ``γ‖x_δ − AE(x_δ)‖²`` (0: off; > 0 needs an
    autoencoder), which keeps solutions close to what the autoencoder can rebuild.
    """

    kind: CemKind = CemKind.PERTINENT_POSITIVE
    penalties: tuple[float, ...] = (1.0, 10.0)
    restarts: int = 1
    directions: int = 20
    steps: int = 300
    patience: int = 40
    learning_rate: float = 0.02
    beta: float = 0.5
    kappa: float = 2.0
    smoothing: float = 0.05
    region_size: int | None = None
    block_steps: int = 10
    gamma: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in {k.value for k in CemKind} | set(CemKind):
            raise ConfigError(f"cem.kind = {self.kind!r}: must be pp or pn")
        object.__setattr__(self, "kind", CemKind(self.kind))
        object.__setattr__(self, "penalties", tuple(float(c) for c in self.penalties))
        checks = [
            (bool(self.penalties) and all(c > 0 for c in self.penalties), "penalties", "> 0"),
            (self.restarts > 0, "restarts", "> 0"),
            (self.directions > 0, "directions", "> 0"),
            (self.steps > 0, "steps", "> 0"),
            (self.patience > 0, "patience", "> 0"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (self.beta >= 0, "beta", ">= 0"),
            (0 <= self.kappa < float("inf"), "kappa", ">= 0 and finite"),
            (0 < self.smoothing < 1, "smoothing", "in (0, 1)"),
            (self.region_size is None or self.region_size > 0, "region_size", "> 0"),
            (self.block_steps > 0, "block_steps", "> 0"),
            (self.gamma >= 0, "gamma", ">= 0"),
            (self.seed >= 0, "seed", ">= 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ConfigError(f"cem.{name} = {getattr(self, name)!r}: must be {rule}")

    @property
    def chains(self) -> int:
        """Chains per input: every penalty constant × every restart."""
        return len(self.penalties) * self.restarts

    def settings(self) -> dict[str, object]:
        """Everything that shapes the result (kept in the store to check a resume)."""
        return {
            "kind": self.kind.value,
            "penalties": list(self.penalties),
            "restarts": self.restarts,
            "directions": self.directions,
            "steps": self.steps,
            "patience": self.patience,
            "learning_rate": self.learning_rate,
            "beta": self.beta,
            "kappa": self.kappa,
            "smoothing": self.smoothing,
            "region_size": self.region_size,
            "block_steps": self.block_steps,
            "gamma": self.gamma,
            "seed": self.seed,
        }
