"""Re-explanation: the explanation method that robustness, randomisation and meta-evaluation
call again, on perturbed inputs or under changed weights.

Two kinds (:mod:`.kinds`): ``rex[:iters=N,…]``, rex-stream's own ReX search through the run's
scheduler (so concurrent re-explanations and the metrics' rows share batches), and
``python:module:function``, a user's ``(x, target) -> map``, sync or async, like Quantus'
``explain_func``. :mod:`.specs` parses specs; :class:`~.bound.BoundExplainer` binds one to a
run and explains equal requests once; :mod:`.once` gives the searches' warnings once per run.
"""

from rex_stream.evaluation.explainers.bound import BoundExplainer
from rex_stream.evaluation.explainers.kinds import (
    ExplainFunction,
    FunctionExplainer,
    ReExplain,
    RexExplainer,
    spatial_map,
)
from rex_stream.evaluation.explainers.once import warnings_once
from rex_stream.evaluation.explainers.specs import (
    as_re_explainer,
    explainer_from_function,
    explainer_from_spec,
    explainer_name,
)

__all__ = [
    "BoundExplainer",
    "ExplainFunction",
    "FunctionExplainer",
    "ReExplain",
    "RexExplainer",
    "as_re_explainer",
    "explainer_from_function",
    "explainer_from_spec",
    "explainer_name",
    "spatial_map",
    "warnings_once",
]
