"""``python:tests.modes.text.score_module:score`` — the lexicon classifier on a list of str
(``slow_score``: the same, 20 ms per call, for runs that are killed partway)."""

import time

from tests.modes.text.lexicon import score_texts

input_type = "text"


def score(texts: list[str]):
    """Logits [-s, s] for each text."""
    assert isinstance(texts, list) and all(isinstance(t, str) for t in texts)
    return score_texts(texts)


def slow_score(texts: list[str]):
    """:func:`score`, after 20 ms (a model behind a network)."""
    time.sleep(0.02)
    return score(texts)
