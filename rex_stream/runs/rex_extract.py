"""The map and extraction phases of a ReX run: the responsibility map from the iterations, and
the explanation extracted from it by the strategy the config names.

Extractors sit in one table, :data:`EXTRACTORS`, by strategy name: ``global``, ``spatial``,
``contrastive``, ``multi`` (several disjoint explanations) and ``complete`` (ReX's
``--complete``: the sufficient-and-necessary explanation at about the original confidence).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from rex_stream.causal.complete import CompleteExplanation, extract_complete
from rex_stream.causal.extraction import (
    LARGE_INPUT_ELEMENTS,
    Sufficiency,
    extract_contrastive,
    extract_global,
    extract_spatial,
)
from rex_stream.causal.multi import MultiExplanation, extract_multi
from rex_stream.causal.negative import negative_responsibility
from rex_stream.causal.responsibility import (
    build_map,
    build_map_chunked,
    check_finite,
    normalise,
)
from rex_stream.causal.search import IterationResult, input_key
from rex_stream.causal.shrink import shrink
from rex_stream.causal.tie_break import break_ties
from rex_stream.config import ExplainConfig, ExtractionConfig, ScoringConfig
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target


def build_responsibility(
    subject: Subject, ordered: list[IterationResult], target: Target, config: ExplainConfig
) -> np.ndarray:
    """The float32 responsibility map of the iterations, in iteration order (so a map built
    from a resumed or split run has the same bytes)."""
    style = config.search.responsibility_style
    ledgers = [r.ledger for r in ordered]
    if subject.size > LARGE_INPUT_ELEMENTS:
        # region by region into one float32 map: never a float64 map of a large volume
        chunked = build_map_chunked(ledgers, target.classification, subject.spatial_shape, style)
        check_finite(chunked, subject.name)
        return chunked
    raw = build_map(ledgers, target.classification, subject.spatial_shape, style)
    responsibility = normalise(raw, style).astype(np.float32)
    if config.search.negative_responsibility:
        responsibility = negative_responsibility(
            responsibility, ledgers, target.classification, subject.spatial_shape, style
        )
    if config.extraction.tie_break_radius:
        radius = config.extraction.tie_break_radius
        responsibility = break_ties(responsibility, radius).astype(np.float32)
    check_finite(responsibility, subject.name)
    return responsibility


def empty_map_message(ordered: list[IterationResult], target: Target) -> str | None:
    """Why the map is empty, when no mutant of any iteration was classified as the target."""
    if any(np.any(r.ledger.classes == target.classification) for r in ordered):
        return None
    return (
        f"the responsibility map is empty: no mutant was classified as class "
        f"{target.classification}, so nothing is responsible for it (is --target a class "
        "the model predicts here?)"
    )


@dataclass(frozen=True)
class Extracted:
    """What an extractor found: the sufficient explanation, and with ``multi`` or
    ``complete`` the fuller result it was taken from."""

    sufficiency: Sufficiency | None = None
    multi: MultiExplanation | None = None
    complete: CompleteExplanation | None = None


@dataclass(frozen=True)
class ExtractionInput:
    """Everything an extractor reads: the subject, its map, the target and the model."""

    subject: Subject
    responsibility: np.ndarray
    target: Target
    evaluator: Evaluator
    config: ExplainConfig
    seed: int


Extractor = Callable[[ExtractionInput], Awaitable[Extracted]]
SufficiencyExtractor = Callable[
    [Subject, np.ndarray, Target, Evaluator, ExtractionConfig, ScoringConfig],
    Awaitable[Sufficiency],
]


def _sufficient(extract: SufficiencyExtractor, shrinks: bool = False) -> Extractor:
    """An extractor of one sufficient explanation (``shrinks``: then shrunk when the config
    asks for ``shrink_rounds``)."""

    async def run(given: ExtractionInput) -> Extracted:
        arguments = (given.subject, given.responsibility, given.target, given.evaluator)
        settings = (given.config.extraction, given.config.scoring)
        found = await extract(*arguments, *settings)
        if shrinks and given.config.extraction.shrink_rounds:
            found = await shrink(*arguments[:2], found, *arguments[2:], *settings)
        return Extracted(found)

    return run


async def _multi(given: ExtractionInput) -> Extracted:
    """Several disjoint sufficient explanations (spotlights); the first is ``sufficiency``."""
    multi = await extract_multi(
        given.subject,
        given.responsibility,
        given.target,
        given.evaluator,
        given.config.extraction,
        given.config.multi,
        given.config.scoring,
        given.seed,
        input_key(given.subject),
    )
    return Extracted(multi.first, multi=multi)


async def _complete(given: ExtractionInput) -> Extracted:
    """ReX's complete explanation; its sufficient set is ``sufficiency``."""
    complete = await extract_complete(
        given.subject,
        given.responsibility,
        given.target,
        given.evaluator,
        given.config.extraction,
        given.config.scoring,
    )
    return Extracted(complete.complete, complete=complete)


#: Every extractor, by the name :func:`extractor_name` gives a config.
EXTRACTORS: dict[str, Extractor] = {
    "global": _sufficient(extract_global, shrinks=True),
    "spatial": _sufficient(extract_spatial, shrinks=True),
    "contrastive": _sufficient(extract_contrastive),
    "multi": _multi,
    "complete": _complete,
}


def extractor_name(extraction: ExtractionConfig) -> str:
    """The strategy, or ``complete`` when the complete explanation is asked for (a ``multi``
    run has no complete explanation: the strategy wins)."""
    if extraction.complete and extraction.strategy != "multi":
        return "complete"
    return extraction.strategy


async def extract_explanation(given: ExtractionInput) -> Extracted:
    """The explanation the config asks for (nothing when extraction is off)."""
    if not given.config.extraction.extract:
        return Extracted()
    return await EXTRACTORS[extractor_name(given.config.extraction)](given)
