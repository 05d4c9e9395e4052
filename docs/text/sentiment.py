"""A tiny lexicon sentiment classifier that takes strings — the model of docs/modes-text.md
(``--backend python:docs.text.sentiment:score``). Class 0 negative, 1 positive."""

import re

import numpy as np

input_type = "text"  # rex-stream sends a list of str

WEIGHTS = {"excellent": 2.0, "wonderful": 2.0, "superb": 1.5, "terrible": -2.0, "awful": -2.0}


def score(texts: list[str]) -> np.ndarray:
    """Logits [-s, s]: s is the sum of the words' weights."""
    sums = [sum(WEIGHTS.get(w, 0.0) for w in re.findall(r"\w+", t.lower())) for t in texts]
    s = np.asarray(sums, np.float32)[:, None]
    return np.concatenate([-s, s], axis=1)
