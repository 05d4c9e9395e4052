"""MetaQuantus' input-perturbation test through the shared scheduler, on a real ONNX model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rex_stream import ConfigError, StoreError, meta_evaluate_sync
from rex_stream.evaluation.meta.input_test import perturbed
from tests.evaluation.meta.committed import committed_copies
from tests.killing import kill_mid_run

ROOT = Path(__file__).resolve().parents[3]


def _inputs() -> list[np.ndarray]:
    """Dim greyscale images without the bright patch: the patch model says class 0, and
    large noise (clipped from below) lights the patch up and flips it to class 1."""
    rng = np.random.default_rng(4)
    return [rng.uniform(0.0, 0.2, (1, 24, 24)).astype(np.float32) for _ in range(6)]


def _maps(size: int = 24) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    centred = np.exp(-((yy - 9.0) ** 2 + (xx - 17.0) ** 2) / 30.0)
    return {"centred": centred, "corner": centred[::-1, ::-1] + 0.2 * (xx > 12)}


def test_perturbed_copies_are_clipped_from_below() -> None:
    x = np.linspace(-1, 1, 100).astype(np.float32)
    noisy = perturbed(x, 0.5, np.random.default_rng(0))
    assert noisy.min() >= x.min() and not np.array_equal(noisy, x)


def test_input_perturbation_test_is_deterministic_and_telling(patch_model: Path) -> None:
    metrics = "sparseness,selectivity:patch_size=4"
    kwargs = {"iterations": 2, "perturbations": 3, "seed": 1, "noise_adversary": 5.0}
    first = meta_evaluate_sync(_inputs(), str(patch_model), _maps(), metrics, **kwargs)
    again = meta_evaluate_sync(_inputs(), str(patch_model), _maps(), metrics, **kwargs)
    assert first.summary()["input_perturbation_test"] == again.summary()["input_perturbation_test"]
    for values in first.summary()["input_perturbation_test"].values():
        assert all(0.0 <= v <= 1.0 for v in values.values())
    # a map-only metric cannot see the input: rankings never change, scores never worsen
    sparse = first.results["sparseness"].summary()
    assert sparse["IEC_NR"] == 1.0 and sparse["IEC_AR"] == 0.0
    selectivity = first.results["selectivity:patch_size=4"].summary()
    assert selectivity["IAC_AR"] > 0.5 and sparse["IAC_AR"] == 0.0


def test_re_explaining_metrics_are_meta_evaluated_with_the_explainer(patch_model: Path) -> None:
    seen: list[np.ndarray] = []

    def explain(x: np.ndarray, target: int) -> np.ndarray:
        seen.append(x)
        return np.abs(x[0]) + 0.01 * target  # a map that moves with the input

    metrics = "max-sensitivity:nr_samples=3"
    kwargs = {"iterations": 1, "perturbations": 2, "seed": 3, "noise_adversary": 5.0}
    with pytest.raises(ConfigError, match="max-sensitivity:nr_samples=3 re-explain"):
        meta_evaluate_sync(_inputs()[:2], str(patch_model), _maps(), metrics, **kwargs)
    result = meta_evaluate_sync(
        _inputs()[:2], str(patch_model), _maps(), metrics, explainer=explain, **kwargs
    )
    arrays = result.arrays[metrics]
    assert np.all(np.isfinite(arrays.q)) and np.all(arrays.q > 0)
    # every input and every kept noisy copy had its own noisy neighbours re-explained
    kept = int(arrays.kept.sum())
    assert kept > 0 and len(seen) == 3 * (2 + kept)
    assert np.all(np.isfinite(arrays.q_hat[arrays.kept]))
    assert result.settings["explainer"] is not None


def test_the_plan_bounds_the_queries_and_max_queries_refuses_a_larger_one(
    patch_model: Path,
) -> None:
    metrics = "selectivity:patch_size=4,sparseness"  # 36 rows per scored copy, and none
    kwargs = {"iterations": 1, "perturbations": 2, "seed": 3, "noise_adversary": 5.0}
    plans: list[tuple[str, int]] = []
    result = meta_evaluate_sync(
        _inputs()[:2], str(patch_model), _maps(), metrics,
        on_plan=lambda key, n: plans.append((key, n)), **kwargs,
    )  # fmt: skip
    # per input: x and 4 noisy copies, each predicted (1) and scored by 2 attributions (2 × 36)
    assert sorted(n for _, n in plans) == [5 * (1 + 2 * 36)] * 2
    assert 0 < result.queries <= sum(n for _, n in plans)
    with pytest.raises(ConfigError, match=r"plan needs up to 365 queries so far .* 300"):
        meta_evaluate_sync(
            _inputs()[:2], str(patch_model), _maps(), metrics, max_queries=300, **kwargs
        )


def test_cli_meta_evaluation(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    for name, a in _maps(32).items():
        np.save(tmp_path / f"{name}.npy", a)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rex_stream.cli",
            "evaluate",
            str(tiny_image),
            "--model",
            str(tiny_cnn),
            "--attribution",
            f"c={tmp_path / 'centred.npy'}",
            "--attribution",
            f"k={tmp_path / 'corner.npy'}",
            "--metrics",
            "complexity",
            "--meta-evaluation",
            "--meta-iterations",
            "1",
            "--meta-perturbations",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary["input_perturbation_test"]["complexity"]) >= {"IAC_NR", "MC", "MC_std"}
    # complexity sends no rows: x and 4 copies are only predicted
    assert "up to 5 queries (x and 4 noisy copies)" in out.stderr


def test_store_resumes_every_unit_and_refuses_changed_settings(
    patch_model: Path, tmp_path: Path
) -> None:
    metrics = "selectivity:patch_size=4,sparseness"
    kwargs = {"iterations": 2, "perturbations": 2, "seed": 3}
    store = tmp_path / "meta.zarr"
    plain = meta_evaluate_sync(_inputs()[:3], str(patch_model), _maps(), metrics, **kwargs)
    seen: list[tuple[int, int, int]] = []
    stored = meta_evaluate_sync(
        _inputs()[:3], str(patch_model), _maps(), metrics, store=store,
        on_progress=lambda *a: seen.append(a), **kwargs,
    )  # fmt: skip
    planned = 3 * (1 + 2 * 2 * 2)  # per input: x and every noisy copy
    assert [done for done, _, _ in seen] == list(range(1, planned + 1))
    assert {p for _, p, _ in seen} == {planned}
    queries = [q for _, _, q in seen]
    assert queries == sorted(queries) and 0 < queries[-1] <= stored.queries
    assert stored.summary()["input_perturbation_test"] == plain.summary()["input_perturbation_test"]
    seen.clear()
    again = meta_evaluate_sync(
        _inputs()[:3], str(patch_model), _maps(), metrics, store=store, resume=True,
        on_progress=lambda *a: seen.append(a), **kwargs,
    )  # fmt: skip
    assert again.resumed == planned and again.queries == 3  # f(x) for the target
    assert [done for done, _, _ in seen] == [9, 18, 27] and {p for _, p, _ in seen} == {27}
    for label, arrays in again.arrays.items():
        np.testing.assert_array_equal(arrays.q_hat, plain.arrays[label].q_hat)
        np.testing.assert_array_equal(arrays.kept, plain.arrays[label].kept)
    with pytest.raises(StoreError, match=r"meta_evaluation\.perturbations: 2 → 3"):
        meta_evaluate_sync(
            _inputs()[:3], str(patch_model), _maps(), metrics, store=store, resume=True,
            iterations=2, perturbations=3, seed=3,
        )  # fmt: skip


def test_cli_resume_after_kill_9_gives_identical_results(tmp_path: Path) -> None:
    """A run scoring through a slow backend is killed with SIGKILL part way; ``--resume``
    ends with exactly the IAC/IEC/MC of an uninterrupted run."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    for n, x in enumerate(_inputs()):
        Image.fromarray(np.round(x[0] * 255).astype(np.uint8), "L").save(folder / f"p{n}.png")
    for name, a in _maps().items():
        np.save(tmp_path / f"{name}.npy", a)
    store = tmp_path / "meta.zarr"
    command = [
        sys.executable, "-m", "rex_stream.cli", "evaluate", str(folder),
        "--backend", "python:tests.evaluation.slow_patch:score",
        "--attribution", f"c={tmp_path / 'centred.npy'}",
        "--attribution", f"k={tmp_path / 'corner.npy'}",
        "--metrics", "selectivity:patch_size=4,sparseness",
        "--meta", "--meta-iterations", "2", "--meta-perturbations", "3", "--seed", "1", "--json",
    ]  # fmt: skip
    copies = 6 * 2 * 2 * 3

    def run(*extra: str, delay_s: float = 0.0) -> dict:
        env = {**os.environ, "REX_STREAM_TEST_DELAY_S": str(delay_s)}
        done = subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    reference = run()
    env = {**os.environ, "REX_STREAM_TEST_DELAY_S": "0.03"}
    kill_mid_run(
        [*command, "--store", str(store)], lambda: committed_copies(store), 10, "copy", 120,
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    before = committed_copies(store)
    assert 10 <= before < copies
    resumed = run("--store", str(store), "--resume")
    assert before <= resumed["resumed"] < copies + 6
    assert resumed["input_perturbation_test"] == reference["input_perturbation_test"]
    assert committed_copies(store) == copies
    changed = subprocess.run(
        [*command, "--store", str(store), "--resume", "--noise-adversary", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert changed.returncode != 0
    assert changed.stderr.startswith("rex-stream: error:") and changed.stderr.count("\n") == 1
    assert "meta_evaluation.noise_adversary: 5.0 → 4.0" in changed.stderr
