"""A trained L2X explainer: the selector's weights and what it needs to read new inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.engine.regions import Regions
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError, OutputError, RexStreamError
from rex_stream.l2x.features import region_features
from rex_stream.l2x.networks import mlp, shared_region_logits

FORMAT = 1

#: Selector architectures: one MLP over all regions (L2X's), or one network per region with
#: shared weights (``L2xConfig.shared_regions``).
MLP, SHARED = "mlp", "shared_regions"


class ExplainerRejected(RexStreamError):
    """Training ended with a selector the model disagrees with (the encoding problem)."""

    exit_code = 7


@dataclass
class Explainer:
    """The selector ``selector_sizes``-MLP with weights ``selector``, over the regions of
    edge ``region_edge`` of inputs of ``input_shape``; features are divided by ``scale``.

    ``reading`` holds how inputs were read (mode, options) so new inputs are read alike;
    ``metrics`` what training measured (post-hoc accuracy, gap, queries).
    """

    selector: np.ndarray
    selector_sizes: list[int]
    scale: np.ndarray
    k: int
    region_edge: int
    spatial_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    model: str
    classes: int
    metrics: dict[str, Any] = field(default_factory=dict)
    reading: dict[str, Any] = field(default_factory=dict)
    architecture: str = MLP

    @property
    def regions(self) -> Regions:
        """The regions the selector chooses among."""
        return Regions.grid(self.spatial_shape, self.region_edge)

    def check(self, subject: Subject) -> None:
        """Refuse an input of another shape than the explainer was trained on."""
        if tuple(subject.tensor.shape) != self.input_shape:
            raise InputError(
                f"this L2X explainer was trained for model input shape {self.input_shape}, "
                f"the input has shape {tuple(subject.tensor.shape)}"
            )

    def logits(self, subject: Subject) -> np.ndarray:
        """The selector's score of each region for ``subject``."""
        self.check(subject)
        features = region_features(subject, self.regions) / self.scale
        if self.architecture == SHARED:
            return np.asarray(
                shared_region_logits(self.selector, self.selector_sizes, features[None])
            )[0]
        return np.asarray(mlp(self.selector, self.selector_sizes, features.reshape(1, -1)))[0]

    def select(self, subject: Subject) -> np.ndarray:
        """The ``k`` regions selected for ``subject`` (ties: lower index)."""
        return np.argsort(-self.logits(subject), kind="stable")[: self.k]

    def selection_mask(self, subject: Subject) -> np.ndarray:
        """Boolean mask over the spatial axes: true where a selected region lies."""
        chosen = np.zeros(self.regions.count, bool)
        chosen[self.select(subject)] = True
        return self.regions.expand(chosen)

    def save(self, path: str | Path) -> None:
        """Write the explainer as one ``.npz`` file."""
        meta = {
            "format": FORMAT,
            "selector_sizes": self.selector_sizes,
            "k": self.k,
            "region_edge": self.region_edge,
            "spatial_shape": list(self.spatial_shape),
            "input_shape": list(self.input_shape),
            "model": self.model,
            "classes": self.classes,
            "metrics": self.metrics,
            "reading": self.reading,
            "architecture": self.architecture,
        }
        try:
            with open(path, "wb") as handle:
                np.savez(handle, selector=self.selector, scale=self.scale, meta=json.dumps(meta))
        except OSError as exc:
            raise OutputError(f"cannot write the explainer {path}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Explainer:
        """Read an explainer written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                selector, scale = np.asarray(data["selector"]), np.asarray(data["scale"])
        except FileNotFoundError as exc:
            raise InputError(f"{path}: no such explainer file") from exc
        except (OSError, ValueError, KeyError, EOFError):
            raise InputError(
                f"{path} is not an L2X explainer (expected the .npz that "
                "rex-stream l2x-train --out wrote)"
            ) from None
        if meta.get("format") != FORMAT:
            raise InputError(f"{path}: explainer format {meta.get('format')} is not {FORMAT}")
        return cls(
            selector=selector,
            selector_sizes=list(meta["selector_sizes"]),
            scale=scale,
            k=int(meta["k"]),
            region_edge=int(meta["region_edge"]),
            spatial_shape=tuple(meta["spatial_shape"]),
            input_shape=tuple(meta["input_shape"]),
            model=str(meta["model"]),
            classes=int(meta["classes"]),
            metrics=dict(meta["metrics"]),
            reading=dict(meta["reading"]),
            architecture=str(meta.get("architecture", MLP)),
        )
