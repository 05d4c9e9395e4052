"""Learned explanations (L2X): a selector trained once from black-box scores, then fast.

Training follows REAL-X's fix of L2X's encoding failure: an *approximator* is first fitted to
the model's scores of randomly masked inputs (plain mutant traffic through the scheduler), then
frozen, and the *selector* learns which ``k`` regions let the approximator reproduce the
model's prediction (a Gumbel-softmax relaxation of top-k). Explaining a new input is one
selector pass: no model query (one more to verify the selection with the model).

Imports only the engine and the leaf modules ``rex_stream.config`` / ``rex_stream.errors``;
``autograd`` (the ``l2x`` extra) is needed for training only.
"""

from rex_stream.l2x.config import L2xConfig
from rex_stream.l2x.explainer import Explainer, ExplainerRejected

__all__ = ["Explainer", "ExplainerRejected", "L2xConfig"]
