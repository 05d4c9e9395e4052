"""The units a text is explained in — words, sentences or a tokenizer's tokens — with their
character offsets, and the masked texts built from them.

Words are runs of letters and digits (with inner apostrophes and hyphens: ``don't``,
``well-made``); every punctuation mark is a unit of its own. Sentences end at ``.``, ``!`` or
``?`` (runs of them, and closing quotes or brackets) followed by white space, or at a line
break. A masked text keeps each visible unit with the white space before it, so deleting
``not`` from ``was not good.`` gives ``was good.``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rex_stream.errors import InputError

UNITS = ("word", "sentence", "token")

_WORD = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n\s*")


@dataclass(frozen=True)
class Units:
    """The units of one text: their strings and ``[start, stop)`` character offsets."""

    text: str
    starts: np.ndarray
    stops: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def strings(self) -> list[str]:
        """Every unit's text, in order."""
        return [self.text[a:b] for a, b in zip(self.starts.tolist(), self.stops.tolist())]

    @property
    def gaps(self) -> list[str]:
        """The text before each unit (white space, mostly), after the previous one."""
        previous = [0, *self.stops.tolist()[:-1]]
        return [self.text[a:b] for a, b in zip(previous, self.starts.tolist())]

    def render(self, visible: np.ndarray, literal: str | None = None) -> str:
        """The text with only the ``visible`` units; the others deleted, or each replaced by
        ``literal``."""
        pieces = []
        for gap, unit, shown in zip(self.gaps, self.strings, np.asarray(visible, bool).tolist()):
            if shown:
                pieces.append(gap + unit)
            elif literal is not None:
                pieces.append(gap + literal)
        return "".join(pieces).lstrip()


def split_text(text: str, unit: str) -> Units:
    """Split ``text`` into words or sentences (tokens come from a tokenizer instead)."""
    if unit == "word":
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    elif unit == "sentence":
        spans = _sentences(text)
    else:
        raise InputError(
            f"mode option unit={unit!r}: one of word, sentence, token (token needs --tokenizer)"
        )
    return from_spans(text, spans)


def from_spans(text: str, spans: Sequence[tuple[int, int]]) -> Units:
    """Units at the given character spans (in order, not overlapping)."""
    starts = np.array([a for a, _ in spans], dtype=np.int64)
    stops = np.array([b for _, b in spans], dtype=np.int64)
    return Units(text, starts, stops)


def _sentences(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        stop = match.end() if not match.group().isspace() else match.start()
        spans.append((start, stop))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for a, b in spans:  # no white space at either end of a sentence; none empty
        piece = text[a:b]
        a, b = a + len(piece) - len(piece.lstrip()), b - (len(piece) - len(piece.rstrip()))
        if b > a:
            trimmed.append((a, b))
    return trimmed


def units_of_tokens(starts: np.ndarray, units: Units) -> np.ndarray:
    """For each token's start offset, the index of the unit it lies in (−1: in no unit)."""
    index = np.searchsorted(units.stops, starts, side="right")
    inside = index < len(units)
    found = np.full(len(starts), -1, dtype=np.int64)
    clipped = np.minimum(index, max(len(units) - 1, 0))
    if len(units):
        found[inside & (units.starts[clipped] <= starts)] = clipped[
            inside & (units.starts[clipped] <= starts)
        ]
    return found
