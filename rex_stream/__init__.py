"""rex-stream: causal-responsibility explanations for classifiers you can only query."""

from __future__ import annotations

__version__ = "0.1.0"

from rex_stream.api import explain_stream, explain_sync
from rex_stream.cem import CemConfig, CemResult
from rex_stream.config import (
    EvaluationConfig,
    ExplainConfig,
    ExtractionConfig,
    ImageConfig,
    SchedulerConfig,
    ScoringConfig,
    SearchConfig,
    VisualConfig,
)
from rex_stream.contrastive import explain_cem, explain_cem_sync
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo, open_backend
from rex_stream.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
    InputError,
    OutputError,
    RexStreamError,
    StoreError,
)
from rex_stream.explain import explain
from rex_stream.many import InputFailure, explain_many
from rex_stream.progress import Progress
from rex_stream.result import Explanation, RunStats

__all__ = [
    "Backend",
    "BackendError",
    "BackendSettings",
    "BackendTimeout",
    "CemConfig",
    "CemResult",
    "ConfigError",
    "EvaluationConfig",
    "ExplainConfig",
    "Explanation",
    "ExtractionConfig",
    "ImageConfig",
    "InputError",
    "InputFailure",
    "ModelInfo",
    "OutputError",
    "Progress",
    "RexStreamError",
    "RunStats",
    "SchedulerConfig",
    "ScoringConfig",
    "SearchConfig",
    "StoreError",
    "VisualConfig",
    "__version__",
    "explain",
    "explain_cem",
    "explain_cem_sync",
    "explain_many",
    "explain_stream",
    "explain_sync",
    "open_backend",
]
