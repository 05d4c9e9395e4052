"""L2X checked against the models themselves: fidelity on held-out data, resume, batching."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import explain_l2x_sync, train_l2x_sync
from rex_stream.config import ExplainConfig, ScoreKind
from rex_stream.engine.backend import ModelInfo, open_backend
from rex_stream.errors import BackendError
from rex_stream.l2x import Explainer, L2xConfig
from rex_stream.runs.l2x import load_inputs
from tests.l2x.spectra import make_set

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
TABULAR = MODELS / "tabular-breast-cancer.onnx"
TRAIN = MODELS / "tabular-breast-cancer-train.csv"
HELD_OUT = MODELS / "tabular-breast-cancer-test.csv"
SPECTRAL = MODELS / "spectral-markers.onnx"
FAST = {"approximator_epochs": 20, "selector_epochs": 20}


def tabular_config(batch: int | None = None) -> ExplainConfig:
    config = ExplainConfig()
    return replace(
        config,
        image=replace(config.image, mode="tabular", mode_options={"baseline": str(TRAIN)}),
        scoring=replace(config.scoring, scores=ScoreKind.PROBABILITIES),
        scheduler=replace(config.scheduler, max_batch=batch),
    )


def classify(model: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: batch.astype(np.float32)})[0].argmax(axis=1)


def fidelity(
    explainer: Explainer, subjects: list, model: Path, seed: int = 1
) -> tuple[float, float]:
    """How often the model keeps its prediction on the selected regions alone, and on as
    many random regions (asked of the model directly, not through rex-stream)."""
    regions = explainer.regions
    rng = np.random.default_rng(seed)
    whole, chosen, random = [], [], []
    for subject in subjects:
        base = np.broadcast_to(np.asarray(subject.baseline, np.float32), subject.tensor.shape)
        keep = explainer.selection_mask(subject)
        other = np.zeros(regions.count, bool)
        other[rng.choice(regions.count, explainer.k, replace=False)] = True
        whole.append(subject.tensor)
        chosen.append(np.where(subject.expand(keep), subject.tensor, base))
        random.append(np.where(subject.expand(regions.expand(other)), subject.tensor, base))
    labels = classify(model, np.stack(whole))
    kept = float(np.mean(classify(model, np.stack(chosen)) == labels))
    baseline_kept = float(np.mean(classify(model, np.stack(random)) == labels))
    return kept, baseline_kept


def test_tabular_selection_keeps_the_prediction_on_held_out_rows() -> None:
    config = tabular_config()
    explainer = train_l2x_sync(str(TRAIN), str(TABULAR), L2xConfig(k=2, **FAST), config)
    assert explainer.metrics["gap"] <= 0.1
    info = ModelInfo("m", "X", (30,))
    held_out = load_inputs(
        str(HELD_OUT),
        info,
        replace(
            config,
            image=replace(config.image, mode_options={"baseline": str(TRAIN), "drop": "label"}),
        ),
    )
    kept, random_kept = fidelity(explainer, held_out, TABULAR)
    labels = classify(TABULAR, np.stack([s.tensor for s in held_out]))
    malignant = [s for s, y in zip(held_out, labels) if y == 0]
    kept_m, random_m = fidelity(explainer, malignant, TABULAR)
    print(
        f"tabular k=2: kept {kept:.3f} vs random {random_kept:.3f}; "
        f"malignant {kept_m:.3f} vs {random_m:.3f}"
    )
    assert kept >= 0.9 and kept > random_kept + 0.05
    assert kept_m >= random_m + 0.3


def test_spectral_selection_finds_the_markers_on_held_out_spectra() -> None:
    spectra, _ = make_set(240, seed=11)
    held, _ = make_set(60, seed=12)
    config = replace(ExplainConfig(), image=replace(ExplainConfig().image, mode="spectral"))
    l2x = L2xConfig(k=3, region_size=20, **FAST)
    explainer = train_l2x_sync(spectra[:, None, :], str(SPECTRAL), l2x, config)
    info = ModelInfo("m", "input", (1, 1356))
    subjects = load_inputs(held[:, None, :], info, config)
    kept, random_kept = fidelity(explainer, subjects, SPECTRAL)
    print(f"spectral k=3: kept {kept:.3f} vs random {random_kept:.3f}")
    assert kept >= random_kept + 0.3


class _FailingAfter:
    """A backend that fails from its ``calls``-th call on (a crash in the middle of a run)."""

    def __init__(self, inner: object, calls: int) -> None:
        self.inner, self.left = inner, calls
        self.info = inner.info  # type: ignore[attr-defined]

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("server went away")
        return await self.inner.infer(batch)  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self.inner.aclose()  # type: ignore[attr-defined]


def test_training_resumes_from_the_store_and_ignores_batch_size(tmp_path: Path) -> None:
    rows = np.loadtxt(TRAIN, delimiter=",", skiprows=1, dtype=np.float32)[:120]
    l2x = L2xConfig(k=3, approximator_epochs=6, selector_epochs=6, chunk_inputs=16)
    whole = train_l2x_sync(rows, str(TABULAR), l2x, tabular_config(batch=1))
    sixteen = train_l2x_sync(rows, str(TABULAR), l2x, tabular_config(batch=16))
    np.testing.assert_array_equal(whole.selector, sixteen.selector)

    async def failing() -> object:
        return _FailingAfter(await open_backend(str(TABULAR)), calls=20)

    store = tmp_path / "train.zarr"
    with pytest.raises(BackendError):
        train_l2x_sync(rows, anyio.run(failing), l2x, tabular_config(batch=16), store=store)
    resumed = train_l2x_sync(
        rows, str(TABULAR), l2x, tabular_config(batch=16), store=store, resume=True
    )
    np.testing.assert_array_equal(whole.selector, resumed.selector)
    assert resumed.metrics["training_queries"] < whole.metrics["training_queries"]
    again = train_l2x_sync(
        rows, str(TABULAR), l2x, tabular_config(batch=16), store=store, resume=True
    )
    np.testing.assert_array_equal(whole.selector, again.selector)
    assert again.metrics["training_queries"] == 3 * again.metrics["held_out"]


def test_explainer_round_trip_and_explaining_costs_no_query(tmp_path: Path) -> None:
    rows = np.loadtxt(TRAIN, delimiter=",", skiprows=1, dtype=np.float32)[:80]
    explainer = train_l2x_sync(
        rows,
        str(TABULAR),
        L2xConfig(k=3, approximator_epochs=3, selector_epochs=3, max_gap=1.0),
        tabular_config(),
    )
    path = tmp_path / "explainer.npz"
    explainer.save(path)
    loaded = Explainer.load(path)
    np.testing.assert_array_equal(loaded.selector, explainer.selector)
    result = explain_l2x_sync(rows[5], path)
    assert result.queries == 0 and len(result.regions) == 3
    checked = explain_l2x_sync(rows[5], path, str(TABULAR))
    assert checked.queries == 2 and checked.kept is not None
    np.testing.assert_array_equal(checked.regions, result.regions)


@pytest.mark.parametrize(
    ("name", "k", "rows", "epochs"),
    [
        ("xor", 2, 400, 12),
        ("orange_skin", 4, 400, 12),
        ("additive", 4, 400, 12),
        ("switch", 5, 600, 20),
    ],
)
def test_synthetic_sets_rank_the_true_features_within_k(
    name: str, k: int, rows: int, epochs: int
) -> None:
    from rex_stream.adapters.python import PythonBackend
    from tests.l2x.synthetic import SETS, make, model

    config = replace(
        ExplainConfig(),
        image=replace(ExplainConfig().image, mode="tabular"),
        scoring=replace(ExplainConfig().scoring, scores=ScoreKind.PROBABILITIES),
    )
    l2x = L2xConfig(k=k, approximator_epochs=epochs, selector_epochs=epochs)
    explainer = train_l2x_sync(make(name, rows, 0), PythonBackend(model(name), (10,)), l2x, config)
    held = make(name, 200, 1)
    subjects = load_inputs(held, ModelInfo("m", "X", (10,)), config)
    ranks = []
    for subject, true in zip(subjects, SETS[name][1](held)):
        order = np.argsort(-explainer.logits(subject), kind="stable")
        rank = {int(feature): position + 1 for position, feature in enumerate(order)}
        ranks.append(np.median([rank[f] for f in true]))
    print(f"{name}: median rank of the true features {np.median(ranks)} (k = {k})")
    assert np.median(ranks) <= k


def test_digits_selection_keeps_the_digit_far_more_often_than_random_pixels() -> None:
    digits = MODELS / "digits-mlp.onnx"
    train = (np.load(MODELS / "digits-train.npy")[:600, None] / 16.0).astype(np.float32)
    test = (np.load(MODELS / "digits-test.npy")[:, None] / 16.0).astype(np.float32)
    l2x = L2xConfig(k=8, approximator_epochs=15, selector_epochs=15)
    explainer = train_l2x_sync(train, str(digits), l2x, ExplainConfig())
    assert explainer.regions.count == 64 and explainer.metrics["gap"] <= 0.1
    subjects = load_inputs(test, ModelInfo("m", "input", (1, 8, 8)), ExplainConfig())
    kept, random_kept = fidelity(explainer, subjects, digits)
    print(f"digits k=8: kept {kept:.3f} vs random {random_kept:.3f} on {len(test)} held-out digits")
    assert kept >= 0.8 and kept >= random_kept + 0.4
