"""The public entry points: :mod:`~rex_stream.api.asynchronous` (the real functions) and
:mod:`~rex_stream.api.synchronous` (a blocking twin of each, raising the library's own
errors, never an exception group)."""

from rex_stream.api.asynchronous import (
    evaluate,
    explain,
    explain_cem,
    explain_l2x,
    explain_many,
    explain_rows,
    explain_stream,
    explain_text_rows,
    explain_texts,
    meta_evaluate,
    meta_evaluate_model,
    train_l2x,
)
from rex_stream.api.synchronous import (
    evaluate_sync,
    explain_cem_sync,
    explain_l2x_sync,
    explain_many_sync,
    explain_rows_sync,
    explain_sync,
    explain_text_rows_sync,
    explain_texts_sync,
    meta_evaluate_model_sync,
    meta_evaluate_sync,
    train_l2x_sync,
)

__all__ = [
    "evaluate",
    "evaluate_sync",
    "explain",
    "explain_cem",
    "explain_cem_sync",
    "explain_l2x",
    "explain_l2x_sync",
    "explain_many",
    "explain_many_sync",
    "explain_rows",
    "explain_rows_sync",
    "explain_stream",
    "explain_sync",
    "explain_text_rows",
    "explain_text_rows_sync",
    "explain_texts",
    "explain_texts_sync",
    "meta_evaluate",
    "meta_evaluate_model",
    "meta_evaluate_model_sync",
    "meta_evaluate_sync",
    "train_l2x",
    "train_l2x_sync",
]
