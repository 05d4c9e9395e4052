"""Re-explanation metrics (max-/avg-sensitivity, random-logit) on a real onnxruntime model:
against hand computations with a deterministic explainer, with rex-stream's own ReX search,
through the CLI, and their errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from rex_stream import evaluate_sync
from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.metrics.randomisation import off_class, ssim
from tests.onnx_models import patch_weights, planted_image

ROOT = Path(__file__).resolve().parents[3]
SENSITIVITY = "max-sensitivity:nr_samples=12,avg-sensitivity:nr_samples=12"


def squares(x: np.ndarray, target: int) -> np.ndarray:
    """A deterministic, non-linear explainer: the squared input, shifted by the class."""
    return x[0] ** 2 + 0.5 * target * np.linspace(0.0, 1.0, x[0].size).reshape(x[0].shape)


def _scores(evaluation: Any) -> dict[str, Any]:
    """The results of the one input's one attribution."""
    return next(iter(evaluation.inputs[0].results.values()))  # type: ignore[no-any-return]


def _map() -> np.ndarray:
    return patch_weights()[0, 0] + np.linspace(0.0, 0.3, 576).reshape(24, 24)


def test_sensitivity_against_a_hand_computation(patch_model: Path) -> None:
    x = planted_image()
    a = _map()
    result = evaluate_sync(
        x, str(patch_model), a, SENSITIVITY, explainer=squares, seed=7, quantus_compatible=True
    )
    scores = _scores(result)
    # by hand, as Quantus: np.random.seed(7), then one uniform draw of every element per sample
    rng = np.random.RandomState(7)
    expected = []
    for _ in range(12):
        noisy = x.astype(np.float64) + rng.uniform(-0.2, 0.2, size=x.size).reshape(x.shape)
        b = squares(noisy.astype(np.float32), 1)
        expected.append(np.linalg.norm(a - b) / np.linalg.norm(a))
    maximum = scores["max-sensitivity:nr_samples=12"]
    average = scores["avg-sensitivity:nr_samples=12"]
    assert maximum.score == pytest.approx(max(expected), rel=1e-9)
    assert average.score == pytest.approx(np.mean(expected), rel=1e-9)
    np.testing.assert_allclose(maximum.curve, expected, rtol=1e-9)  # type: ignore[arg-type]
    assert result.queries == 1  # the function calls no model through the scheduler


def test_sensitivity_in_rex_streams_conventions(patch_model: Path) -> None:
    x = planted_image()
    identity = lambda x, target: x[0]  # noqa: E731 - ‖a − a′‖ is then the noise's norm
    metrics = ",".join(f"{m}-sensitivity:lower_bound=0.1:nr_samples=40" for m in ("max", "avg"))
    first = evaluate_sync(x, str(patch_model), x[0], metrics, explainer=identity, seed=1)
    again = evaluate_sync(x, str(patch_model), x[0], metrics, explainer=identity, seed=1)
    other = evaluate_sync(x, str(patch_model), x[0], metrics, explainer=identity, seed=2)
    label = "avg-sensitivity:lower_bound=0.1:nr_samples=40"
    scores = _scores(first)
    # E‖noise‖ for U(−0.1, 0.1) on 576 elements: √(576 · 0.01/3)
    expected = np.sqrt(576 * 0.01 / 3) / np.linalg.norm(x[0])
    assert scores[label].score == pytest.approx(expected, rel=0.03)
    assert scores[label.replace("avg", "max")].score > scores[label].score
    assert _scores(again)[label].score == scores[label].score
    assert _scores(other)[label].score != scores[label].score


def test_random_logit_against_a_hand_computation(patch_model: Path) -> None:
    x, a = planted_image(), _map()
    for compatible in (True, False):
        result = evaluate_sync(
            x,
            str(patch_model),
            a,
            "random-logit:num_classes=2",
            explainer=squares,
            quantus_compatible=compatible,
        )
        score = _scores(result)["random-logit:num_classes=2"].score
        assert off_class(1, 2, 42) == 0  # the only other class
        mine, other = a / np.abs(a).max(), squares(x, 0) / np.abs(squares(x, 0)).max()
        if compatible:  # Quantus: SSIM of the flattened maps
            mine, other = mine.reshape(-1), other.reshape(-1)
        low, high = min(mine.min(), other.min()), max(mine.max(), other.max())
        expected = structural_similarity(mine, other, data_range=high - low)
        assert score == pytest.approx(expected, rel=1e-6), compatible


def test_off_class_and_ssim_match_quantus_and_scikit_image() -> None:
    for target in (0, 3, 999):
        np.random.seed(42)  # Quantus' draw for one input
        index = np.random.randint(0, 999, 1)[0]
        others = [c for c in range(1000) if c != target]
        assert off_class(target, 1000, 42) == others[index]
    rng = np.random.default_rng(0)
    first, second = rng.random((9, 12)), rng.random((9, 12))
    assert ssim(first, second) == pytest.approx(
        structural_similarity(first, second, data_range=1.0 * np.ptp([first, second])), rel=1e-9
    )


def test_re_explaining_with_rex_streams_search(patch_model: Path, tmp_path: Path) -> None:
    plans: list[dict[str, int]] = []
    store = tmp_path / "eval.zarr"
    metrics = "max-sensitivity:nr_samples=6,avg-sensitivity:nr_samples=6,random-logit:num_classes=2"
    kwargs = {"explainer": "rex:iters=2", "store": store}
    first = evaluate_sync(
        planted_image(),
        str(patch_model),
        _map(),
        metrics,
        on_plan=lambda k, p: plans.append(p),
        **kwargs,
    )
    scores = _scores(first)
    # a dim copy of the input still shows the patch: the map moves little, not nothing
    assert 0.0 < scores["avg-sensitivity:nr_samples=6"].score < 2.0
    assert (
        scores["max-sensitivity:nr_samples=6"].score >= scores["avg-sensitivity:nr_samples=6"].score
    )
    assert -1.0 <= scores["random-logit:num_classes=2"].score <= 1.0
    # the re-explanations went through the run's scheduler and are counted; both sensitivity
    # metrics drew the same noisy copies, so the second re-explained nothing
    assert first.queries > 100 and first.calls < first.queries
    assert scores["max-sensitivity:nr_samples=6"].queries > 0
    assert scores["avg-sensitivity:nr_samples=6"].queries == 0
    assert plans[0]["max-sensitivity:nr_samples=6"] > 6 * 20  # an estimate, not zero
    resumed = evaluate_sync(
        planted_image(), str(patch_model), _map(), metrics, resume=True, **kwargs
    )
    assert resumed.inputs[0].resumed == 3 and resumed.queries <= 1
    before, after = first.summary()["inputs"][0], resumed.summary()["inputs"][0]
    assert after["attributions"] == before["attributions"]
    with pytest.raises(ConfigError, match="more than --max-queries 100"):
        evaluate_sync(
            planted_image(), str(patch_model), _map(), metrics, explainer="rex", max_queries=100
        )


def test_errors(patch_model: Path) -> None:
    x, a = planted_image(), _map()
    with pytest.raises(
        ConfigError, match="max-sensitivity re-explain perturbed inputs: pass --explainer"
    ):
        evaluate_sync(x, str(patch_model), a, "max-sensitivity")
    with pytest.raises(ConfigError, match="num_classes=1000 but the model has 2 classes"):
        evaluate_sync(x, str(patch_model), a, "random-logit", explainer=squares)
    with pytest.raises(InputError, match=r"returned a map of shape \(5, 5\)"):
        evaluate_sync(
            x,
            str(patch_model),
            a,
            "avg-sensitivity:nr_samples=2",
            explainer=lambda x, t: np.ones((5, 5)),
        )
    with pytest.raises(ConfigError, match=r"upper_bound=0\.1 must exceed lower_bound=0\.2"):
        evaluate_sync(x, str(patch_model), a, "avg-sensitivity:upper_bound=0.1", explainer=squares)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_cli(patch_model: Path, tmp_path: Path) -> None:
    image, attribution = tmp_path / "x.npy", tmp_path / "a.npy"
    np.save(image, planted_image())
    np.save(attribution, _map())
    common = [str(image), "--model", str(patch_model), "--attribution", f"mine={attribution}"]
    metrics = ["--metrics", "avg-sensitivity:nr_samples=3,random-logit:num_classes=2"]
    out = _cli(*common, *metrics, "--explainer", "rex:iters=1", "--json")
    assert out.returncode == 0, out.stderr
    assert "avg-sensitivity:nr_samples=3 ~" in out.stderr and "(3 re-explanations)" in out.stderr
    summary = json.loads(out.stdout)
    entry = summary["inputs"][0]["attributions"]["mine"]
    assert len(entry["avg-sensitivity:nr_samples=3"]["curve"]) == 3
    assert summary["queries"] > 3 and summary["explainer"].startswith("rex:iters=1,")
    function = "python:tests.evaluation.metrics.test_robustness:squares"
    table = _cli(*common, *metrics, "--explainer", function)
    assert table.returncode == 0, table.stderr
    assert "random-logit:num_classes=2" in table.stdout
    for extra, message in (
        ([], "pass --explainer rex[:iters=N]"),
        (["--explainer", "lime"], "--explainer 'lime': expected rex"),
        (["--explainer", "rex:iters=-1"], "iters=-1 must be > 0"),
    ):
        failed = _cli(*common, *metrics, *extra)
        assert failed.returncode != 0
        lines = [x for x in failed.stderr.strip().splitlines() if not x.startswith("plan for")]
        assert len(lines) == 1 and lines[0].startswith("rex-stream: error: "), failed.stderr
        assert message in lines[0]


def test_a_warning_of_the_re_explanations_appears_once(
    patch_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # explaining class 0 of the patch model: the all-baseline input is class 0, which every
    # ReX search warns about; six noisy copies give one warning, not six
    config = ExplainConfig()
    config = replace(config, scoring=replace(config.scoring, target=0))
    with caplog.at_level(logging.WARNING):
        evaluate_sync(
            planted_image(),
            str(patch_model),
            _map(),
            "avg-sensitivity:nr_samples=6",
            explainer="rex:iters=1",
            config=config,
        )
    warned = [r for r in caplog.records if "mask value alone" in r.getMessage()]
    assert len(warned) == 1


def test_a_changed_prediction_makes_the_sample_nan(patch_model: Path) -> None:
    import onnxruntime

    x, a = planted_image(), _map()
    label = "avg-sensitivity:lower_bound=10.0:nr_samples=8:return_nan_when_prediction_changes=true"
    result = evaluate_sync(
        x, str(patch_model), a, label, explainer=squares, seed=4, quantus_compatible=True
    )
    found = _scores(result)[label]
    # the same noisy copies by hand, classified by onnxruntime directly
    rng = np.random.RandomState(4)
    copies = np.stack(
        [
            (x.astype(np.float64) + rng.uniform(-10, 10, x.size).reshape(x.shape)).astype(
                np.float32
            )
            for _ in range(8)
        ]
    )
    session = onnxruntime.InferenceSession(str(patch_model), providers=["CPUExecutionProvider"])
    changed = session.run(None, {"input": copies})[0].argmax(axis=1) != 1
    assert 0 < changed.sum() < 8  # some copies flip, some do not
    np.testing.assert_array_equal(np.isnan(found.curve), changed)  # type: ignore[arg-type]
    assert np.isnan(found.score)  # mean, not nanmean, as Quantus with this flag
    assert found.queries == 9  # f(x) and the copies (rows asked, as every metric counts)
