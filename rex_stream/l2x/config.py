"""The settings of L2X training (one frozen dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rex_stream.errors import ConfigError


@dataclass(frozen=True)
class L2xConfig:
    """``k`` regions are selected per input. Each training input is scored unmasked and under
    ``masks_per_input`` random masks; the approximator, then the selector, train for their
    epochs with Adam. ``held_out`` of the inputs measure post-hoc accuracy and the
    selector–model agreement gap; an explainer whose gap exceeds ``max_gap`` is refused.

    ``shared_regions``: the selector and approximator use the same weights for every region
    (a per-region network, pooled for the approximator) instead of one MLP over all regions;
    for inputs whose regions are alike and whose evidence may lie in any of them (volumes,
    images of objects anywhere), it learns from far fewer inputs. Off for tables, whose
    features each mean something of their own."""

    k: int = 4
    region_size: int | None = None
    masks_per_input: int = 8
    hidden: int = 64
    approximator_epochs: int = 30
    selector_epochs: int = 30
    batch: int = 64
    learning_rate: float = 1e-2
    temperature: float = 0.5
    held_out: float = 0.2
    max_gap: float = 0.1
    chunk_inputs: int = 64
    shared_regions: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.k > 0, "k", "> 0"),
            (self.region_size is None or self.region_size > 0, "region_size", "> 0"),
            (self.masks_per_input > 0, "masks_per_input", "> 0"),
            (self.hidden > 0, "hidden", "> 0"),
            (self.approximator_epochs > 0, "approximator_epochs", "> 0"),
            (self.selector_epochs > 0, "selector_epochs", "> 0"),
            (self.batch > 0, "batch", "> 0"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (self.temperature > 0, "temperature", "> 0"),
            (0 < self.held_out < 1, "held_out", "in (0, 1)"),
            (0 < self.max_gap <= 1, "max_gap", "in (0, 1]"),
            (self.chunk_inputs > 0, "chunk_inputs", "> 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ConfigError(f"l2x.{name} = {getattr(self, name)!r}: must be {rule}")

    def settings(self) -> dict[str, object]:
        """Everything that shapes training (kept in the store to check a resume)."""
        return asdict(self)
