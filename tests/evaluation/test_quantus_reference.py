"""``--quantus-compatible`` against Quantus 0.6.0 itself, run in its own venv.

The Quantus side (``quantus_reference.py``) wraps the same ONNX model in a ``torch.nn.Module``
and scores the same tensor, map and mask with Quantus' classes, ``np.random.seed(seed)``
before each metric. Set ``REX_STREAM_QUANTUS_PYTHON`` to that venv's python (``.ci/run``
builds ``.venv-quantus``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rex_stream import evaluate_sync
from rex_stream.evaluation.metrics.registry import choose

QUANTUS_PYTHON = os.environ.get("REX_STREAM_QUANTUS_PYTHON")
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    not QUANTUS_PYTHON, reason="REX_STREAM_QUANTUS_PYTHON (a venv with quantus==0.6.0) is unset"
)

#: rex-stream metric string → (Quantus class, its constructor parameters, softmax).
METRICS = {
    "pixel-flipping:features_in_step=32": ("PixelFlipping", {"features_in_step": 32}, True),
    "region-perturbation:patch_size=8:regions_evaluation=10": (
        "RegionPerturbation",
        {"patch_size": 8, "regions_evaluation": 10},
        True,
    ),
    "region-perturbation:patch_size=6:order=lerf": (
        "RegionPerturbation",
        {"patch_size": 6, "order": "lerf"},
        True,
    ),
    "selectivity:patch_size=8": ("Selectivity", {"patch_size": 8}, True),
    "faithfulness-correlation:nr_runs=30:subset_size=64": (
        "FaithfulnessCorrelation",
        {"nr_runs": 30, "subset_size": 64},
        False,
    ),
    "faithfulness-estimate:features_in_step=64": (
        "FaithfulnessEstimate",
        {"features_in_step": 64},
        False,
    ),
    "monotonicity-correlation:features_in_step=128:nr_samples=4": (
        "MonotonicityCorrelation",
        {"features_in_step": 128, "nr_samples": 4},
        True,
    ),
    "irof": ("IROF", {}, True),
    "infidelity": ("Infidelity", {}, False),
    "sparseness": ("Sparseness", {}, False),
    "complexity": ("Complexity", {}, False),
    "effective-complexity": ("EffectiveComplexity", {}, False),
    "pointing-game": ("PointingGame", {}, False),
    "attribution-localisation": ("AttributionLocalisation", {}, False),
    "top-k-intersection:k=100": ("TopKIntersection", {"k": 100}, False),
    "relevance-rank-accuracy": ("RelevanceRankAccuracy", {}, False),
    "relevance-mass-accuracy": ("RelevanceMassAccuracy", {}, False),
    "auc": ("AUC", {}, False),
}


def quantus_scores(model: Path, case: Path, metrics: dict[str, object]) -> dict[str, dict]:
    """Run the reference script in the Quantus venv."""
    spec = case.with_suffix(".json")
    spec.write_text(json.dumps(metrics))
    done = subprocess.run(
        [str(QUANTUS_PYTHON), str(HERE / "quantus_reference.py"), str(model), str(case), str(spec)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_compatible_mode_equals_quantus(tiny_cnn: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (3, 32, 32)).astype(np.float32)
    yy, xx = np.mgrid[:32, :32]
    a = np.exp(-((yy - 12.0) ** 2 + (xx - 19.0) ** 2) / 60.0) + 0.05 * rng.random((32, 32))
    a = a.astype(np.float32)
    s = np.zeros((32, 32), bool)
    s[6:20, 10:26] = True
    ours = evaluate_sync(
        x, str(tiny_cnn), {"a": a}, ",".join(METRICS), mask=s, seed=5, quantus_compatible=True
    )
    target = ours.inputs[0].target
    case = tmp_path / "case.npz"
    np.savez(case, x=x, a=a, s=s, y=target, seed=5)
    reference = quantus_scores(tiny_cnn, case, METRICS)
    for label in METRICS:
        mine = ours.inputs[0].results["a"][choose(label)[0].label]
        theirs = reference[label]
        assert mine.score == pytest.approx(theirs["score"], rel=1e-4, abs=1e-6), label
        if "curve" in theirs:
            assert mine.curve is not None
            np.testing.assert_allclose(mine.curve, theirs["curve"], rtol=1e-4, atol=1e-6)
        calls = theirs["calls"]
        if label == "infidelity":  # Quantus repeats identical perturbations 10 times
            calls = 1 + (calls - 1) // 10
        if calls:
            # Quantus predicts f(x) in every metric that needs it; we count it once per input
            assert mine.queries in (calls, calls + 1), label


def test_sensitivity_n_across_inputs_equals_quantus(tiny_cnn: Path, tmp_path: Path) -> None:
    """Sensitivity-N correlates across inputs: four inputs in one run, maps from a folder.
    Each map's maximum is 1, since Quantus normalises by the maximum of the whole batch."""
    rng = np.random.default_rng(12)
    xs = [rng.normal(0, 1, (3, 32, 32)).astype(np.float32) for _ in range(4)]
    maps = [rng.random((32, 32)).astype(np.float32) for _ in range(4)]
    folder = tmp_path / "maps"
    folder.mkdir()
    for name, a in zip(("array", "array-2", "array-3", "array-4"), maps):
        a[0, 0] = 1.0
        np.save(folder / f"{name}.npy", a)
    label = "sensitivity-n:features_in_step=64"
    ours = evaluate_sync(xs, str(tiny_cnn), {"a": folder}, label, quantus_compatible=True)
    scores = {e.results["a"][label].score for e in ours.inputs}
    assert len(scores) == 1
    case = tmp_path / "batch.npz"
    targets = np.array([e.target for e in ours.inputs])
    empty = np.zeros((4, 32, 32), bool)
    np.savez(case, x=np.stack(xs), a=np.stack(maps), s=empty, y=targets, seed=0)
    spec = {label: ("SensitivityN", {"features_in_step": 64}, True)}
    reference = quantus_scores(tiny_cnn, case, spec)
    assert scores.pop() == pytest.approx(reference[label]["score"], rel=1e-4, abs=1e-6)


#: Re-explanation metrics, both sides explaining with ``reference_explainer.explain_map``.
EXPLAINED = {
    "max-sensitivity:nr_samples=20": ("MaxSensitivity", {"nr_samples": 20}, False),
    "avg-sensitivity:nr_samples=20:lower_bound=0.05": (
        "AvgSensitivity",
        {"nr_samples": 20, "lower_bound": 0.05},
        False,
    ),
    "max-sensitivity:nr_samples=8:normalise=true:abs=true": (
        "MaxSensitivity",
        {"nr_samples": 8, "normalise": True, "abs": True},
        False,
    ),
    "random-logit:num_classes=10": ("RandomLogit", {"num_classes": 10}, False),
}


def test_re_explanation_metrics_equal_quantus(tiny_cnn: Path, tmp_path: Path) -> None:
    """The noise (one U(−b, b) draw per element and sample from ``np.random.seed(seed)``),
    the off class (``np.random.seed(42)``) and the scores all line up with Quantus'."""
    from tests.evaluation.reference_explainer import explain_map

    rng = np.random.default_rng(13)
    x = rng.normal(0, 1, (3, 32, 32)).astype(np.float32)
    a = explain_map(x, 0).astype(np.float32) + 0.1 * rng.random((32, 32)).astype(np.float32)
    ours = evaluate_sync(
        x,
        str(tiny_cnn),
        {"a": a},
        ",".join(EXPLAINED),
        seed=3,
        quantus_compatible=True,
        explainer=explain_map,
    )
    case = tmp_path / "case.npz"
    np.savez(case, x=x, a=a, s=np.zeros((32, 32), bool), y=ours.inputs[0].target, seed=3)
    reference = quantus_scores(tiny_cnn, case, EXPLAINED)
    for label in EXPLAINED:
        mine = ours.inputs[0].results["a"][choose(label)[0].label]
        assert mine.score == pytest.approx(reference[label]["score"], rel=1e-4), label
        assert np.isfinite(mine.score) and mine.score != 0.0, label
