"""MetaQuantus' input-perturbation test through the shared scheduler, on a real ONNX model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rex_stream.evaluation.meta import meta_evaluate_sync, perturbed

ROOT = Path(__file__).resolve().parents[2]


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
