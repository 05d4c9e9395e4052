"""Warnings of re-explanations given once per run, not once per noisy copy.

A robustness metric re-explains hundreds of noisy copies of one input: the search's warnings
(a suspicious baseline, an empty map) would repeat for each. Within :func:`warnings_once` (one
run's scope; the run's tasks inherit it) each distinct message is given once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: The warnings already given by re-explanations (set while they run; their tasks inherit
#: it): a suspicious baseline or an empty map is said once per run, not once per noisy copy.
_SEEN: ContextVar[set[str] | None] = ContextVar("rex_stream_re_explained_warnings", default=None)
#: The loggers of the search's warnings.
_SEARCH_LOGGERS = ("rex_stream.runs.rex", "rex_stream.causal.baseline_check")


class _OncePerRun(logging.Filter):
    """Lets each distinct message through once while re-explaining; everything otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        seen = _SEEN.get()
        if seen is None:
            return True
        text = record.getMessage()
        if text in seen:
            return False
        seen.add(text)
        return True


_ONCE = _OncePerRun()
for _name in _SEARCH_LOGGERS:
    logging.getLogger(_name).addFilter(_ONCE)


@contextmanager
def warnings_once() -> Iterator[None]:
    """Within, the re-explanations' warnings are given once each (one run's scope)."""
    token = _SEEN.set(set())
    try:
        yield
    finally:
        _SEEN.reset(token)


@contextmanager
def search_scope() -> Iterator[None]:
    """Within, one search runs in the enclosing run's scope, or in its own when there is none
    (so its warnings are given once even outside a run)."""
    seen = _SEEN.get()
    token = _SEEN.set(seen if seen is not None else set())
    try:
        yield
    finally:
        _SEEN.reset(token)
