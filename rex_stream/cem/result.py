"""What a CEM run returns for one input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rex_stream.cem.config import CemKind
from rex_stream.engine.regions import Regions
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target

#: The store array (and JSON key) each kind's solution is saved under.
ARRAY_NAMES = {
    CemKind.PERTINENT_POSITIVE: "pertinent_positive",
    CemKind.PERTINENT_NEGATIVE: "pertinent_negative",
}


def feature_names(subject: Subject) -> tuple[str, ...]:
    """A table's column names, one per spatial element (tabular inputs), else ``()``."""
    names = tuple(getattr(subject, "feature_names", ()) or ())
    if len(subject.spatial_shape) == 1 and len(names) == subject.spatial_shape[0]:
        return names
    return ()


@dataclass
class CemResult:
    """One input's contrastive explanation.

    ``values`` are the region values of the best solution (None when no chain found one);
    ``solution`` is that input in the model's units and shape, ready to feed to the model;
    ``solution_class`` and ``margin`` are what the model said of it (margin of the target in
    logits). ``queries`` counts every model input this input's chains used (resumed ones too);
    with the autoencoder term, ``reconstruction`` is the solution's ``‖x − AE(x)‖²`` and
    ``autoencoder_queries`` the autoencoder's rows.
    """

    subject: Subject
    kind: CemKind
    target: Target
    regions: Regions
    values: np.ndarray | None
    solution: np.ndarray | None
    solution_class: int
    margin: float
    penalty: float
    objective: float
    queries: int
    steps: int
    chains: int
    resumed_chains: int
    wall_s: float
    seed: int
    model: str = ""
    store: str | None = None
    #: the autoencoder term: γ, the solution's squared reconstruction error, its queries
    gamma: float = 0.0
    reconstruction: float = float("nan")
    autoencoder_queries: int = 0

    @property
    def found(self) -> bool:
        """Whether some chain found a solution the model classifies as wanted."""
        return self.values is not None

    @property
    def name(self) -> str:
        """``pertinent_positive`` or ``pertinent_negative``."""
        return ARRAY_NAMES[self.kind]

    @property
    def mask(self) -> np.ndarray | None:
        """The solution's region values over the spatial axes (float, 0 = untouched by PN,
        hidden by PP)."""
        return None if self.values is None else self.regions.expand(self.values)

    def top_regions(self, count: int) -> np.ndarray:
        """Indices of the ``count`` regions with the largest values (ties: lower index)."""
        values = np.zeros(self.regions.count) if self.values is None else self.values
        return np.argsort(-values, kind="stable")[:count]

    def named_features(self) -> list[str]:
        """A table's columns whose region value is over a half (kept by a pertinent positive,
        moved by a pertinent negative), largest first; ``[]`` for other inputs."""
        names = feature_names(self.subject)
        mask = self.mask
        if not names or mask is None:
            return []
        values = np.asarray(mask, np.float64).reshape(-1)
        return [names[i] for i in np.argsort(-values, kind="stable") if values[i] > 0.5]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json``); for a table, ``features`` names the
        columns over a half."""
        values = self.values if self.values is not None else np.zeros(self.regions.count)
        return {
            "input": self.subject.source or self.subject.name,
            "model": self.model,
            "method": f"cem-{self.kind.value}",
            "target": {"class": self.target.classification, "confidence": self.target.confidence},
            "found": self.found,
            self.name: {
                "class": self.solution_class,
                "margin": self.margin,
                "penalty": self.penalty,
                "elastic_net": self.objective
                - (self.gamma * self.reconstruction if self.gamma > 0 else 0.0),
                "l1": float(values.sum()),
                "regions_over_half": int((values > 0.5).sum()),
                "regions": self.regions.count,
                "region_edge": self.regions.edge,
                **({"features": self.named_features()} if feature_names(self.subject) else {}),
                **(
                    {"gamma": self.gamma, "reconstruction_error": self.reconstruction}
                    if self.gamma > 0
                    else {}
                ),
            },
            "stats": {
                "queries": self.queries,
                "steps": self.steps,
                "chains": self.chains,
                "resumed_chains": self.resumed_chains,
                "wall_s": self.wall_s,
                **({"autoencoder_queries": self.autoencoder_queries} if self.gamma > 0 else {}),
            },
            "seed": self.seed,
            "store": self.store,
        }
