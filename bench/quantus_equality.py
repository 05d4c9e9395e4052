"""Issue 11's equality target on the shared model: rex-stream ``--quantus-compatible`` against
Quantus 0.6.0 itself, every metric the issue names, on EfficientNet-Lite0 + a photo + a map.

    python bench/quantus_equality.py     # Quantus from .venv-quantus (REX_STREAM_QUANTUS_PYTHON)

Prints one row per metric (Quantus' score, ours, the relative difference, model calls) and
exits non-zero if any differs by more than 1e-4 relative. Sensitivity-N correlates across
inputs, so it runs on three photos (the ladybird, its mirror image and it upside down) with
three maps (Gaussians of σ 40, 25 and 60 px, each scaled to a maximum of 1, since Quantus
normalises by the batch's maximum) in one batch.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_quantus import MODEL, PHOTO, gaussian_map, run_quantus  # noqa: E402

from rex_stream import evaluate_sync  # noqa: E402
from rex_stream.cli.demo import demo_config  # noqa: E402
from rex_stream.engine.backend import ModelInfo  # noqa: E402
from rex_stream.evaluation.metrics.registry import choose  # noqa: E402
from rex_stream.modes import load_subject  # noqa: E402

#: rex-stream label → (Quantus class, parameters, softmax), as quantus_reference.py takes them
METRICS: dict[str, tuple[str, dict[str, object], bool]] = {
    "pixel-flipping:features_in_step=224": ("PixelFlipping", {"features_in_step": 224}, True),
    "region-perturbation:patch_size=16": ("RegionPerturbation", {"patch_size": 16}, True),
    "selectivity:patch_size=16": ("Selectivity", {"patch_size": 16}, True),
    "faithfulness-correlation": ("FaithfulnessCorrelation", {}, False),
    "faithfulness-estimate:features_in_step=224": (
        "FaithfulnessEstimate",
        {"features_in_step": 224},
        False,
    ),
    "sparseness": ("Sparseness", {}, False),
    "complexity": ("Complexity", {}, False),
    "effective-complexity": ("EffectiveComplexity", {}, False),
    "pointing-game": ("PointingGame", {}, False),
    "attribution-localisation": ("AttributionLocalisation", {}, False),
}
ACROSS = {"sensitivity-n:features_in_step=3136": ("SensitivityN", {"features_in_step": 3136}, True)}


def compare(label: str, ours: object, theirs: dict) -> float:
    """Print one row; the relative difference."""
    mine = float(ours.score)  # type: ignore[attr-defined]
    ref = float(theirs["score"])
    rel = abs(mine - ref) / max(abs(ref), 1e-12)
    print(f"| {label} | {ref:.6g} | {mine:.6g} | {rel:.1e} | {theirs['calls']} |")
    return rel


def main() -> None:
    python = os.environ.get("REX_STREAM_QUANTUS_PYTHON", str(ROOT / ".venv-quantus/bin/python"))
    info = ModelInfo("efficientnet-lite0", "input", (3, 224, 224))
    photo = load_subject(PHOTO, info, demo_config()).tensor
    photos = [photo, np.ascontiguousarray(photo[:, :, ::-1]), np.ascontiguousarray(photo[:, ::-1])]
    maps = [m / m.max() for m in (gaussian_map(), gaussian_map(sigma=25), gaussian_map(sigma=60))]
    a = gaussian_map()
    s = np.zeros((224, 224), bool)
    s[56:168, 56:168] = True  # a centred 112² box
    print("| metric | Quantus 0.6.0 | rex-stream | relative difference | Quantus calls |")
    print("|---|---|---|---|---|")
    worst = 0.0
    ours = evaluate_sync(
        photos[0], str(MODEL), {"a": a}, ",".join(METRICS), mask=s, seed=0, quantus_compatible=True
    )
    target = ours.inputs[0].target
    theirs = run_quantus(python, photos[0], a, target, metrics=METRICS, mask=s)
    for label in METRICS:
        result = ours.inputs[0].results["a"][choose(label)[0].label]
        worst = max(worst, compare(label, result, theirs[label]))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for index, m in enumerate(maps):  # evaluate names array inputs array, array-2, …
            np.save(folder / ("array.npy" if index == 0 else f"array-{index + 1}.npy"), m)
        both = evaluate_sync(
            photos, str(MODEL), {"a": folder}, ",".join(ACROSS), quantus_compatible=True
        )
    targets = np.array([e.target for e in both.inputs])
    theirs = run_quantus(
        python, np.stack(photos), np.stack(maps), targets, metrics=ACROSS, mask=np.stack([s] * 3)
    )
    for label in ACROSS:
        rel = compare(label, both.inputs[0].results["a"][label], theirs[label])
        worst = max(worst, rel if np.isfinite(rel) else np.inf)
    print(f"largest relative difference: {worst:.1e} (target ≤ 1e-4)")
    if worst > 1e-4:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
