"""MetaQuantus 0.0.5 itself on rex-stream's meta-evaluation (run with the Quantus venv's python).

    python metaquantus_reference.py MODEL.onnx CASE.npz SPEC.json

``CASE.npz``: ``x`` (N×C×H×W float32), ``a`` (A×N×H×W maps, one per attribution and input),
``noise`` (T×I×K×N×C×H×W float64: x̃ − x of every copy rex-stream drew, T = resilience,
adversary), ``kept`` (T×I×K×N) and per metric m ``q{m}`` (A×N) and ``q_hat{m}`` (T×I×K×N×A):
rex-stream's raw arrays. ``SPEC.json``: ``names`` (attributions), ``noises`` ([resilience,
adversary]) and ``metrics``: ``[label, QuantusClass, params, softmax, higher_is_better]``.

Prints, per metric label, two results of MetaQuantus' own code:

- ``statistics``: its ``run_intra_analysis`` / ``run_inter_analysis`` /
  ``run_meta_consistency_analysis`` fed rex-stream's q, q̂ and kept flags, with the metric's
  direction as a bool (and ``IEC_AR_string``: the same with its config's string, "higher" or
  "lower", which is always truthy);
- ``end_to_end``: ``MetaEvaluation(...)(estimator=QuantusClass(...), model=…)`` with its
  ``InputPerturbationTest`` calling the model (onnxruntime in a ``torch.nn.Module``), whose
  ``np.random.uniform`` draws are replaced by rex-stream's x̃ − x in MetaQuantus' order
  (test, round, copy), so both tools score the very same noisy inputs; its q, q̂, kept and
  statistics.

MetaQuantus' package ``__init__`` imports ``torchvision`` for its ImageNet model zoo (configs
only); a stub module stands in for it, as nothing here uses it. Its ``gc.collect()`` calls
(memory housekeeping between estimator calls) are skipped.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
import warnings
from collections.abc import Iterator

import numpy as np

sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))

import metaquantus  # noqa: E402
import quantus  # noqa: E402
from metaquantus import meta_evaluation as _meta_module  # noqa: E402
from metaquantus.helpers import utils as _helpers  # noqa: E402
from metaquantus.perturbation_tests import ipt  # noqa: E402
from quantus_reference import OnnxModule  # noqa: E402

# MetaQuantus runs gc.collect() around every estimator call (0.2 s each with torch loaded,
# nine tenths of this script's time); housekeeping only, so skipped here.
for _module in (_meta_module, _helpers, ipt):
    _module.gc = types.SimpleNamespace(collect=lambda: 0)

TESTS = ("Input Resilience Test", "Input Adversary Test")


class NumpyWithGivenNoise:
    """numpy, except that ``random.uniform`` hands out the given noise arrays in order."""

    def __init__(self, noises: Iterator[tuple[float, np.ndarray]]) -> None:
        def uniform(low: float, high: float, size: tuple[int, ...]) -> np.ndarray:
            noise, values = next(noises)
            assert (low, high) == (-noise, noise) and values.shape == tuple(size)
            return values

        self.random = types.SimpleNamespace(uniform=uniform)

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)


def meta_evaluation(names: list[str], noises: list[float], rounds: int, copies: int):
    suite = {
        TESTS[0]: metaquantus.InputPerturbationTest(type="Resilience", noise=noises[0]),
        TESTS[1]: metaquantus.InputPerturbationTest(type="Adversary", noise=noises[1]),
    }
    return metaquantus.MetaEvaluation(
        test_suite=suite,
        xai_methods={name: {} for name in names},
        iterations=rounds,
        nr_perturbations=copies,
        write_to_file=False,
    )


def statistics(meta: object) -> dict[str, list[float] | float]:
    """IAC/IEC per round, MC and MC_std, from MetaQuantus' own results."""
    found = meta.results_meta_consistency_scores["Input"]  # type: ignore[attr-defined]
    scores = found["consistency_scores"]
    out: dict[str, list[float] | float] = {
        key: np.asarray(scores[key.replace("_", "_{") + "}"], float).tolist()
        for key in ("IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR")
    }
    out["MC"] = float(found["MC_mean"])
    out["MC_std"] = float(found["MC_std"])
    return out


def fed_statistics(case: dict, m: int, names: list[str], noises: list[float], higher: bool):
    """MetaQuantus' reductions of rex-stream's arrays."""
    kept, q, q_hat = case["kept"], case[f"q{m}"], case[f"q_hat{m}"]
    _, rounds, copies, inputs = kept.shape
    meta = meta_evaluation(names, noises, rounds, copies)
    meta.results_y_preds = np.zeros(inputs, dtype=int)
    for t, test in enumerate(TESTS):
        meta.results_eval_scores[test] = {name: q[a] for a, name in enumerate(names)}
        meta.results_indices_perturbed[test] = {i: kept[t, i] for i in range(rounds)}
        meta.results_eval_scores_perturbed[test] = {
            i: {name: q_hat[t, i, :, :, a] for a, name in enumerate(names)} for i in range(rounds)
        }
    meta.run_intra_analysis()
    meta.run_inter_analysis(score_direction=not higher)  # truthy: "q̂ > q*" counts as worse
    meta.run_meta_consistency_analysis()
    out = statistics(meta)
    meta.run_inter_analysis(score_direction="higher" if higher else "lower")
    string = meta.results_inter_scores[TESTS[1]].mean(axis=1)
    out["IEC_AR_string"] = np.asarray(string, float).tolist()
    return out


def end_to_end(case: dict, spec: list, names: list[str], noises: list[float], model: OnnxModule):
    """MetaQuantus' whole input-perturbation test with its model calls, on rex-stream's noise."""
    _, cls, params, softmax, higher = spec
    x, maps, drawn = case["x"], case["a"], case["noise"]
    tests, rounds, copies = drawn.shape[:3]
    given = (
        (noises[t], drawn[t, i, p])
        for t in range(tests)
        for i in range(rounds)
        for p in range(copies)
    )
    ipt.np = NumpyWithGivenNoise(iter(given))

    def explain(model: object, inputs: np.ndarray, targets: np.ndarray, **kwargs: object):
        return maps[names.index(str(kwargs["method"]))][:, None].astype(np.float32)

    meta = meta_evaluation(names, noises, rounds, copies)
    meta.explain_func = explain
    estimator = getattr(quantus, cls)(disable_warnings=True, **params)
    try:
        meta(
            estimator=estimator,
            model=model,
            x_batch=x,
            y_batch=np.zeros(len(x), dtype=int),
            channel_first=True,
            softmax=softmax,
            device="cpu",
            score_direction=not higher,
        )
    finally:
        ipt.np = np
    q = np.stack([meta.results_eval_scores[TESTS[0]][name] for name in names])
    q_hat = np.stack(
        [
            [
                [np.asarray(meta.results_eval_scores_perturbed[test][i][name]) for name in names]
                for i in range(rounds)
            ]
            for test in TESTS
        ]
    )  # T, I, A, K, N
    kept = np.stack(
        [[meta.results_indices_perturbed[test][i] for i in range(rounds)] for test in TESTS]
    )
    return {
        "q": q.tolist(),
        "q_hat": np.moveaxis(q_hat, 2, -1).tolist(),  # T, I, K, N, A
        "kept": kept.astype(bool).tolist(),
        **statistics(meta),
    }


def main() -> None:
    model_path, case_path, spec_path = sys.argv[1:4]
    warnings.filterwarnings("ignore")
    case = dict(np.load(case_path))
    spec = json.loads(open(spec_path).read())
    names, noises = spec["names"], spec["noises"]
    model = OnnxModule(model_path).eval()
    out = {}
    with contextlib.redirect_stdout(sys.stderr):  # MetaQuantus prints its progress
        for m, entry in enumerate(spec["metrics"]):
            out[entry[0]] = {
                "statistics": fed_statistics(case, m, names, noises, entry[4]),
                "end_to_end": end_to_end(case, entry, names, noises, model),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
