"""ReX 0.4.1's per-iteration mask values (``random``, ``linear``): every iteration's mutants
are masked with its own value, the values are seeded, stored with each iteration and checked
on resume. Real onnxruntime sessions (tests/onnx_models.py); ReX's own values are compared in
tests/test_rex_parity.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.config import ImageConfig
from rex_stream.engine.mask_values import constant_mask_value, swept_mask_value
from rex_stream.errors import ConfigError, StoreError
from tests.cli.test_cli import rex
from tests.onnx_models import planted_image

IMAGE = planted_image()  # values in [0, 0.2] plus a patch of 1.0


class RecordingBackend(PythonBackend):
    """The patch model in onnxruntime; remembers every value a mutant holds that the input
    does not (the mask values it was filled with). All-zero rows are the adapter's probes of
    the model's output, not mutants."""

    def __init__(self, model: Path) -> None:
        session = ort.InferenceSession(str(model))
        self.foreign: set[float] = set()
        known = set(np.unique(IMAGE).tolist())

        def score(batch: np.ndarray) -> np.ndarray:
            for row in batch[batch.reshape(len(batch), -1).any(axis=1)]:  # not the probes
                self.foreign.update(v for v in np.unique(row).tolist() if v not in known)
            return session.run(None, {"input": batch})[0]

        super().__init__(score, (1, 24, 24))


@pytest.mark.parametrize("kind", ["random", "linear"])
def test_each_iteration_masks_with_its_own_value(patch_model: Path, kind: str) -> None:
    backend = RecordingBackend(patch_model)
    result = explain_sync(
        IMAGE, backend, iters=4, seed=11, mask_value=kind, min_box_size=4, extract=False
    )
    values = result.mask_values
    low, high = float(IMAGE.min()), float(IMAGE.max())
    assert len(values) == 4 and len(set(values)) == 4
    assert all(low <= v <= high for v in values)
    if kind == "linear":
        assert values == pytest.approx(np.linspace(low, high, 4).tolist())
    # the mutants hold exactly these values where they are masked, plus the mean that the
    # baseline check (outside the search) masks with
    swept = {float(np.float32(v)) for v in values if v not in (low, high)}
    mean = float(np.float32(IMAGE.mean()))
    assert swept <= backend.foreign <= swept | {mean}
    assert result.summary()["mask_values"] == values


def test_random_values_follow_the_seed(patch_model: Path) -> None:
    """The same seed gives the same values and the same map; another seed other values."""
    runs = [
        explain_sync(IMAGE, RecordingBackend(patch_model), iters=3, seed=s, mask_value="random")
        for s in (3, 3, 4)
    ]
    assert runs[0].mask_values == runs[1].mask_values
    assert np.array_equal(runs[0].responsibility, runs[1].responsibility)
    assert runs[0].mask_values != runs[2].mask_values
    # ReX's draw: numpy's legacy generator seeded with seed + iteration (1-based), first value
    legacy = np.random.RandomState(3 + 2)
    assert runs[0].mask_values[1] == legacy.uniform(IMAGE.min(), IMAGE.max())


def test_swept_values_against_a_fixed_mask() -> None:
    """A constant run reads no sweep; the helpers' ranges and refusals."""
    assert constant_mask_value(IMAGE, "random") == pytest.approx(float(IMAGE.mean()))
    assert constant_mask_value(IMAGE, "min") == float(IMAGE.min())
    assert swept_mask_value("linear", 0, 1, 0, 0.2, 0.9) == 0.2
    with pytest.raises(ValueError):
        swept_mask_value("mean", 0, 3, 0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="random"):
        ImageConfig(mask_value="spectrum")


def test_resume_keeps_and_checks_the_values(patch_model: Path, tmp_path: Path) -> None:
    """A random sweep extends (the values do not depend on --iters) and ends as an
    uninterrupted run; a linear sweep's values do, so a resume with other --iters refuses."""
    store = tmp_path / "run.zarr"
    common = {"seed": 5, "min_box_size": 4, "extract": False}
    explain_sync(
        IMAGE, RecordingBackend(patch_model), iters=2, mask_value="random", store=store, **common
    )
    resumed = explain_sync(
        IMAGE,
        RecordingBackend(patch_model),
        iters=4,
        mask_value="random",
        store=store,
        resume=True,
        **common,
    )
    whole = explain_sync(
        IMAGE, RecordingBackend(patch_model), iters=4, mask_value="random", **common
    )
    assert resumed.stats.resumed_iterations == 2
    assert resumed.mask_values == whole.mask_values
    assert np.array_equal(resumed.responsibility, whole.responsibility)

    linear = tmp_path / "linear.zarr"
    explain_sync(
        IMAGE, RecordingBackend(patch_model), iters=2, mask_value="linear", store=linear, **common
    )
    with pytest.raises(StoreError, match="iteration 1 was searched with mask value"):
        explain_sync(
            IMAGE,
            RecordingBackend(patch_model),
            iters=3,
            mask_value="linear",
            store=linear,
            resume=True,
            **common,
        )


def test_cli_sweep_settings_and_errors(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    """-v names the sweep and logs each iteration's value; a bad value is one line."""
    out = rex(
        str(tiny_image),
        "--model",
        str(tiny_cnn),
        "--mask-value",
        "linear",
        "--iters",
        "3",
        "--seed",
        "1",
        "-n",
        "-v",
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "linear (per iteration" in out.stderr
    assert "iteration 2 masks with 0.901961 (mask value linear)" in out.stderr
    assert json.loads(out.stdout)["mask_values"][0] == 0.0
    bad = rex(str(tiny_image), "--model", str(tiny_cnn), "--mask-value", "sweep", cwd=tmp_path)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "rex-stream: error: --mask-value 'sweep': a number, min, mean, random or linear"
    ]


def test_tabular_rows_sweep_unless_a_reference_table_is_the_baseline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The tabular mode's per-iteration views (permuted features) mask with the iteration's
    value; a reference table is a per-feature baseline, so nothing is swept (one warning)."""
    from rex_stream.config import ScoreKind

    models = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
    common = {
        "scores": ScoreKind.PROBABILITIES,
        "mode": "tabular",
        "iters": 3,
        "seed": 3,
        "min_box_size": 4,
        "search_limit": 100,
        "mask_value": "linear",
        "extract": False,
    }
    data, model = (
        models / "tabular-breast-cancer-test.csv",
        str(models / "tabular-breast-cancer.onnx"),
    )
    swept = explain_sync(data, model, mode_options={"row": "3", "drop": "label"}, **common)
    row = swept.subject.tensor
    assert swept.mask_values == pytest.approx([row.min(), (row.min() + row.max()) / 2, row.max()])
    reference = {
        "row": "3",
        "drop": "label",
        "baseline": str(models / "tabular-breast-cancer-train.csv"),
    }
    with caplog.at_level(logging.WARNING, logger="rex_stream.runs.rex"):
        fixed = explain_sync(data, model, mode_options=reference, **common)
    assert fixed.mask_values is None
    assert any("mask value linear is not swept" in r.getMessage() for r in caplog.records)
