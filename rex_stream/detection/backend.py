"""A detector as a backend: the model's named outputs read, through its layout, into
``(n, K, 6)`` rows of detections that the scheduler carries like any score rows."""

from __future__ import annotations

from dataclasses import replace

import anyio
import numpy as np

from rex_stream.detection.boxes import COLUMNS
from rex_stream.detection.layouts import Layout
from rex_stream.engine.backend import Backend, ModelInfo, OutputsBackend
from rex_stream.engine.inflight import FollowsInflight
from rex_stream.errors import ConfigError

#: rows of detections per answer (the best; the rest of a padded answer is zeros)
DEFAULT_MAX_DETECTIONS = 100


class DetectionBackend:
    """Wraps a backend that answers with named outputs (:class:`OutputsBackend`); answers
    with ``(n, max_detections, 6)`` rows ``x0, y0, x1, y1, score, class`` padded with zeros.

    A layout that takes one image per call (torchvision) caps ``max_batch`` at 1, so the
    scheduler sends one mutant per call.
    """

    def __init__(
        self, inner: Backend, layout: Layout, max_detections: int = DEFAULT_MAX_DETECTIONS
    ) -> None:
        if not isinstance(inner, OutputsBackend):
            raise ConfigError(
                f"--detections {layout.name}: the {inner.info.name} backend cannot answer with "
                "named outputs",
                key="--detections",
            )
        if max_detections < 1:
            raise ConfigError("max_detections must be >= 1", key="max_detections")
        self.inner = inner
        self.layout = layout
        self.max_detections = max_detections
        self._seen = inner.info
        self._info = self._described(self._seen)

    def _described(self, info: ModelInfo) -> ModelInfo:
        return replace(
            info,
            max_batch=1 if self.layout.one_per_call else info.max_batch,
            num_classes=None,
            output_name="detections",
            identity={**dict(info.identity), "detections": self.layout.name},
        )

    @property
    def info(self) -> ModelInfo:
        """The model's metadata, with the batch limit of the layout (following the wrapped
        backend's, which an HTTP server's 413 lowers during the run)."""
        current = self.inner.info
        if current is not self._seen:
            self._seen, self._info = current, self._described(current)
        return self._info

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Detections of every image of a batch, padded to ``max_detections`` rows."""
        rows = len(batch)
        outputs = await self.inner.infer_outputs(batch)
        if self.layout.raw:  # thousands of proposals to suppress: off the event loop
            found = await anyio.to_thread.run_sync(
                self.layout.decode, outputs, rows, self.max_detections
            )
        else:  # a few padded rows: cheaper than a hop to a worker thread
            found = self.layout.decode(outputs, rows, self.max_detections)
        answer = np.zeros((rows, self.max_detections, len(COLUMNS)), dtype=np.float64)
        for i, table in enumerate(found):
            answer[i, : len(table)] = table
        if not np.isfinite(answer).all():
            raise ConfigError(
                f"{self._info.name} returned NaN or infinite detections", key="--detections"
            )
        return answer

    def follow_inflight(self, calls: int) -> None:
        """Pass the scheduler's in-flight window on to the wrapped backend's own gate (its
        limiter or connection pool), which would otherwise stay at its opening size and
        queue the calls the window grew by: their round trips would then look slowed, and
        the window would stop growing."""
        if isinstance(self.inner, FollowsInflight):
            self.inner.follow_inflight(calls)

    async def aclose(self) -> None:
        """Close the wrapped backend."""
        await self.inner.aclose()
