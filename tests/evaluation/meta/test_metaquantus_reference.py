"""The meta-evaluation against MetaQuantus 0.0.5 itself, run in the Quantus venv.

Two comparisons on one small case (the patch model, 6 inputs, 2 attributions, 2 rounds × 3
copies; the large noise lights the patch up in about half of the copies, flipping them):

1. **Statistics**: MetaQuantus' own IAC/IEC/MC reductions fed rex-stream's q, q̂ and kept flags
   equal rex-stream's, per round, to 1e-12 — with the metric's direction given as a bool.
   MetaQuantus' configs pass "higher"/"lower", both truthy, so its IEC_AR always counts
   q̂ > q*: for a ↑ metric that is the share of copies whose score got *better*; we check that
   it gives exactly that, which is where we deliberately differ.
2. **End to end**: MetaQuantus' ``MetaEvaluation`` with its ``InputPerturbationTest`` calling
   the model, its ``np.random.uniform`` draws replaced by rex-stream's noise (x̃ − x, in its
   order), scores every copy with Quantus' metric: the kept flags are equal, q and q̂ equal
   rex-stream's ``quantus_compatible`` scores within 1e-4 relative, and IAC/IEC/MC within 1e-6.
   Quantus' scores are float32, ours float64: a resilience noise whose score changes are near
   float32's resolution (e.g. 0.01 here, changes of 1e-7 relative) reorders |q − q̂| in
   Wilcoxon's ranks and moves IAC_NR by 1/64; the case uses 0.1 so that they are not.

Set ``REX_STREAM_QUANTUS_PYTHON`` to a venv with quantus==0.6.0 and metaquantus==0.0.5
(``.ci/run`` builds ``.venv-quantus``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rex_stream import meta_evaluate_sync
from rex_stream.evaluation.meta.input_test import copy_generator, perturbed
from rex_stream.evaluation.metrics.registry import choose
from rex_stream.evaluation.session import expand_inputs

QUANTUS_PYTHON = os.environ.get("REX_STREAM_QUANTUS_PYTHON")
HERE = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not QUANTUS_PYTHON,
    reason="REX_STREAM_QUANTUS_PYTHON (a venv with quantus==0.6.0 and metaquantus==0.0.5) is unset",
)

#: rex-stream metric → (Quantus class, its parameters, softmax): deterministic metrics, so
#: that the only random draws are the noise, which both tools share here. (Quantus' only
#: per-sample AUC is PixelFlipping's; the patch model's class-0 logit is constant, so logit
#: metrics such as FaithfulnessEstimate are NaN on it in both tools.) The map-only metrics
#: check the reductions on exactly unchanged scores (zero differences, tied rankings).
METRICS = {
    "pixel-flipping:features_in_step=48": (
        "PixelFlipping",
        {"features_in_step": 48, "return_auc_per_sample": True},
        True,
    ),
    "sparseness": ("Sparseness", {}, False),
    "complexity": ("Complexity", {}, False),
}
NOISES = (0.1, 2.2)
ROUNDS, COPIES, SEED = 2, 3, 7


def _case(tmp_path: Path) -> tuple[list[np.ndarray], np.ndarray, Path]:
    """Six inputs and a folder of maps per attribution (each map's maximum is 1)."""
    rng = np.random.default_rng(21)
    xs = [rng.uniform(0.0, 0.2, (1, 24, 24)).astype(np.float32) for _ in range(6)]
    maps = rng.random((2, 6, 24, 24)).astype(np.float32)
    yy, xx = np.mgrid[:24, :24]
    maps[0] += 2.0 * np.exp(-((yy - 9.0) ** 2 + (xx - 17.0) ** 2) / 30.0)
    maps /= maps.max(axis=(2, 3), keepdims=True)
    for a, name in enumerate(("blob", "noise")):
        folder = tmp_path / name
        folder.mkdir()
        for (key, _), m in zip(expand_inputs(xs), maps[a]):
            np.save(folder / f"{key}.npy", m)
    return xs, maps, tmp_path


def _noise(xs: list[np.ndarray]) -> np.ndarray:
    """x̃ − x of every copy rex-stream draws (tests, rounds, copies, inputs, *shape)."""
    keys = [key for key, _ in expand_inputs(xs)]
    drawn = np.zeros((2, ROUNDS, COPIES, len(xs), *xs[0].shape))
    for t, i, p, n in np.ndindex(drawn.shape[:4]):
        copy = perturbed(xs[n], NOISES[t], copy_generator(SEED, t, i, p, keys[n]))
        drawn[t, i, p, n] = copy.astype(np.float64) - xs[n].astype(np.float64)
    return drawn


def test_meta_evaluation_equals_metaquantus(patch_model: Path, tmp_path: Path) -> None:
    xs, maps, folder = _case(tmp_path)
    ours = meta_evaluate_sync(
        xs,
        str(patch_model),
        {"blob": folder / "blob", "noise": folder / "noise"},
        ",".join(METRICS),
        seed=SEED,
        iterations=ROUNDS,
        perturbations=COPIES,
        noise_resilience=NOISES[0],
        noise_adversary=NOISES[1],
        quantus_compatible=True,
    )
    labels = list(METRICS)
    kept = ours.arrays[labels[0]].kept
    assert kept.sum(axis=3).min() >= 2, "every copy must keep a few inputs for Wilcoxon"
    assert not kept[1].all(), "the adversary should flip some copies, not all"
    arrays: dict[str, np.ndarray] = {"x": np.stack(xs), "a": maps, "noise": _noise(xs)}
    arrays["kept"] = kept
    for m, label in enumerate(labels):
        arrays[f"q{m}"] = ours.arrays[label].q
        arrays[f"q_hat{m}"] = ours.arrays[label].q_hat
    case = tmp_path / "case.npz"
    np.savez(case, **arrays)
    spec = tmp_path / "spec.json"
    higher = {label: choose(label)[0].spec.higher_is_better for label in labels}
    entries = [[label, *METRICS[label], higher[label]] for label in labels]
    spec.write_text(json.dumps({"names": ["blob", "noise"], "noises": NOISES, "metrics": entries}))
    done = subprocess.run(
        [QUANTUS_PYTHON, HERE / "metaquantus_reference.py", patch_model, case, spec],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads(done.stdout)
    for label in labels:
        mine = ours.results[label]
        rounds = {
            "IAC_NR": mine.iac_nr,
            "IAC_AR": mine.iac_ar,
            "IEC_NR": mine.iec_nr,
            "IEC_AR": mine.iec_ar,
        }
        summary = mine.summary()
        fed, whole = reference[label]["statistics"], reference[label]["end_to_end"]
        raw = ours.arrays[label]
        # the same noisy inputs, predicted and scored by both tools
        np.testing.assert_array_equal(np.asarray(whole["kept"]), raw.kept, err_msg=label)
        np.testing.assert_allclose(np.asarray(whole["q"]), raw.q, rtol=1e-4, atol=1e-6)
        theirs = np.asarray(whole["q_hat"])
        chosen = np.broadcast_to(raw.kept[..., None], raw.q_hat.shape)
        np.testing.assert_allclose(theirs[chosen], raw.q_hat[chosen], rtol=1e-4, atol=1e-6)
        for key, values in rounds.items():
            np.testing.assert_allclose(values, fed[key], rtol=0, atol=1e-12, err_msg=label)
            np.testing.assert_allclose(values, whole[key], rtol=0, atol=1e-6, err_msg=label)
        for key in ("MC", "MC_std"):
            assert summary[key] == pytest.approx(fed[key], abs=1e-12), label
            assert summary[key] == pytest.approx(whole[key], abs=1e-6), label
        # MetaQuantus' truthy direction string: IEC_AR counts q̂ > q* whatever the direction
        improved = [
            np.mean(
                [
                    (raw.q_hat[1, i, p][raw.kept[1, i, p]] > raw.q.T[raw.kept[1, i, p]]).mean()
                    for p in range(COPIES)
                ]
            )
            for i in range(ROUNDS)
        ]
        np.testing.assert_allclose(fed["IEC_AR_string"], improved, atol=1e-12, err_msg=label)
