"""CEM's optional autoencoder term ``γ‖x_δ − AE(x_δ)‖²``: the autoencoder as a scorer.

The autoencoder is a model like the classifier (an ONNX file, a server, a Python function)
with its own scheduler, so its rows are batched the same way. :class:`ReconstructionError`
wraps its backend so that each row's "score" is the squared reconstruction error of that
row: the difference is taken where the batch is, and no reconstruction travels further.
The autoencoder answers with its reconstruction as one flat row per input (``(N, elements)``:
end an image autoencoder with a Reshape or Flatten), as backends answer with score rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rex_stream.engine.backend import Backend, ModelInfo
from rex_stream.engine.scheduler import Evaluator
from rex_stream.errors import BackendError, ConfigError


class ReconstructionError:
    """A backend whose score for each input row is ``‖x − AE(x)‖²`` (one column)."""

    def __init__(self, autoencoder: Backend) -> None:
        self.autoencoder = autoencoder

    @property
    def info(self) -> ModelInfo:
        """The autoencoder's metadata (its input shape, batch limits, identity)."""
        return self.autoencoder.info

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Squared reconstruction errors of the rows of ``batch``."""
        rows = np.asarray(batch, np.float64).reshape(len(batch), -1)
        try:
            rebuilt = np.asarray(await self.autoencoder.infer(batch), np.float64)
        except BackendError as exc:
            raise BackendError(
                f"the autoencoder {self.info.name}: {exc} (an autoencoder answers with its "
                f"reconstruction as one flat row of {rows.shape[1]} values per input)"
            ) from exc
        if rebuilt.size != rows.size:
            raise BackendError(
                f"the autoencoder {self.info.name} returned {rebuilt.size // max(1, len(batch))} "
                f"values per row for inputs of {rows.shape[1]}: it must reconstruct its input"
            )
        difference = rows - rebuilt.reshape(rows.shape)
        return np.einsum("ij,ij->i", difference, difference)[:, None]

    async def aclose(self) -> None:
        """Close the autoencoder's backend."""
        await self.autoencoder.aclose()


@dataclass(frozen=True)
class Autoencoder:
    """The autoencoder term of a CEM run: where to score reconstruction errors, and which
    autoencoder it is (kept with the run's settings)."""

    errors: Evaluator
    name: str


def check_shapes(model: ModelInfo, autoencoder: ModelInfo) -> None:
    """The autoencoder must take the classifier's inputs."""
    if tuple(model.input_shape) != tuple(autoencoder.input_shape):
        raise ConfigError(
            f"the autoencoder {autoencoder.name} takes inputs of shape "
            f"{tuple(autoencoder.input_shape)}, the model {model.name} {tuple(model.input_shape)}"
        )
