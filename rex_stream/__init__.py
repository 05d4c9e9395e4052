"""rex-stream: causal-responsibility explanations for classifiers you can only query.

Async: :func:`explain`, :func:`explain_many`, :func:`explain_stream` (an async context
manager), :func:`explain_cem`, :func:`explain_detections`, :func:`explain_detections_many`,
:func:`train_l2x`, :func:`explain_l2x`, :func:`evaluate`, :func:`evaluate_detections`,
:func:`meta_evaluate`, :func:`meta_evaluate_model`. Sync: the same names ending in ``_sync``
(:mod:`rex_stream.api.synchronous`). Every entry point raises the library's own errors
(subclasses of :class:`RexStreamError`).
"""

__version__ = "0.1.0"

from rex_stream.api import (
    evaluate,
    evaluate_detections,
    evaluate_detections_sync,
    evaluate_sync,
    explain,
    explain_cem,
    explain_cem_sync,
    explain_detections,
    explain_detections_many,
    explain_detections_many_sync,
    explain_detections_sync,
    explain_l2x,
    explain_l2x_sync,
    explain_many,
    explain_many_sync,
    explain_stream,
    explain_sync,
    explain_texts,
    explain_texts_sync,
    meta_evaluate,
    meta_evaluate_model,
    meta_evaluate_model_sync,
    meta_evaluate_sync,
    train_l2x,
    train_l2x_sync,
)
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
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo, open_backend
from rex_stream.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
    InputError,
    OutputError,
    RexStreamError,
    StoreError,
    StoreLocked,
)
from rex_stream.evaluation.detection import DetectionEvaluation
from rex_stream.evaluation.meta.input_test import MetaEvaluation
from rex_stream.evaluation.report import Evaluation
from rex_stream.l2x import Explainer as L2xExplainer
from rex_stream.l2x import L2xConfig
from rex_stream.progress import Progress
from rex_stream.result import Explanation, InputFailure, RunStats
from rex_stream.runs.detect import DetectionResult, DetectionSettings

__all__ = [
    "Backend",
    "BackendError",
    "BackendSettings",
    "BackendTimeout",
    "CemConfig",
    "CemResult",
    "ConfigError",
    "DetectionEvaluation",
    "DetectionResult",
    "DetectionSettings",
    "Evaluation",
    "EvaluationConfig",
    "ExplainConfig",
    "Explanation",
    "ExtractionConfig",
    "ImageConfig",
    "InputError",
    "InputFailure",
    "L2xConfig",
    "L2xExplainer",
    "MetaEvaluation",
    "ModelInfo",
    "OutputError",
    "Progress",
    "RexStreamError",
    "RunStats",
    "SchedulerConfig",
    "ScoringConfig",
    "SearchConfig",
    "StoreError",
    "StoreLocked",
    "VisualConfig",
    "__version__",
    "evaluate",
    "evaluate_detections",
    "evaluate_detections_sync",
    "evaluate_sync",
    "explain",
    "explain_cem",
    "explain_cem_sync",
    "explain_detections",
    "explain_detections_many",
    "explain_detections_many_sync",
    "explain_detections_sync",
    "explain_l2x",
    "explain_l2x_sync",
    "explain_many",
    "explain_many_sync",
    "explain_stream",
    "explain_sync",
    "explain_texts",
    "explain_texts_sync",
    "meta_evaluate",
    "meta_evaluate_model",
    "meta_evaluate_model_sync",
    "meta_evaluate_sync",
    "open_backend",
    "train_l2x",
    "train_l2x_sync",
]
