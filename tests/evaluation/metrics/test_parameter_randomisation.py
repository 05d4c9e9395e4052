"""Weight variants of real ONNX models, and MPRT / efficient-MPRT against hand computations."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest
import scipy.stats

from rex_stream import evaluate_sync
from rex_stream.config import ExplainConfig
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.explainers import explainer_from_spec
from rex_stream.evaluation.metric import MetricResult
from rex_stream.evaluation.metrics.parameter_randomisation import histogram_entropy
from rex_stream.evaluation.metrics.registry import choose
from rex_stream.evaluation.variants.files import open_variant, remove_orphaned_variants
from rex_stream.evaluation.variants.pool import VariantPool
from rex_stream.evaluation.variants.weights import WeightedModel, local_model
from tests.evaluation.weight_models import (
    SIZE,
    image,
    occluded,
    occlusion_explainer,
    occlusion_map,
    save_three_layer_model,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_three_layer_model(tmp_path_factory.mktemp("weights") / "three.onnx")


def _logits(model: WeightedModel, replacements: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The variant's logits for a batch, through a session of our own (no scheduler)."""
    data = model.with_weights(replacements).SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x})[0], np.float64)


def test_layers_are_listed_in_graph_order_with_their_biases(three_layers: Path) -> None:
    model = WeightedModel.load(three_layers)
    assert [(layer.op, layer.tensors) for layer in model.layers] == [
        ("Conv", ("conv_w", "conv_b")),
        ("MatMul", ("fc_w", "fc_b")),  # the Add after the MatMul holds its bias
        ("Gemm", ("out_w", "out_b")),
    ]
    assert [layer.fan_in for layer in model.layers] == [27, 4, 6]
    assert model.layers[-1].name == "head"
    top_down = [sorted(chosen) for _, chosen in model.cascade("top_down", 1)]
    assert top_down == [[2], [1, 2], [0, 1, 2]]
    assert [sorted(c) for _, c in model.cascade("bottom_up", 1)] == [[0], [0, 1], [0, 1, 2]]
    assert [sorted(c) for _, c in model.cascade("independent", 1)] == [[0], [1], [2]]
    with pytest.raises(ConfigError, match="layer_order"):
        model.cascade("sideways", 1)


def test_randomised_layers_are_seeded_resets_that_change_the_output(three_layers: Path) -> None:
    model = WeightedModel.load(three_layers)
    x = image()[None]
    original = _logits(model, {}, x)
    head = model.randomised({2}, seed=5)
    assert set(head) == {"out_w", "out_b"}
    bound = 1 / np.sqrt(6)
    assert all(np.abs(v).max() <= bound and v.dtype == np.float32 for v in head.values())
    assert not np.allclose(_logits(model, head, x), original)
    # the seeded draw is the same every time, whichever other layers are randomised with it
    again = model.randomised({0, 2}, seed=5)
    assert np.array_equal(again["out_w"], head["out_w"])
    assert not np.array_equal(model.randomised({2}, seed=6)["out_w"], head["out_w"])
    # the unchanged tensors stay as trained
    assert np.array_equal(_logits(model, {}, x), original)


def test_weight_noise_is_seeded_and_scales_with_sigma(three_layers: Path) -> None:
    model = WeightedModel.load(three_layers)
    x = image()[None]
    original = _logits(model, {}, x)
    small = model.noisy(0.001, "multiplicative", np.random.default_rng(3))
    same = model.noisy(0.001, "multiplicative", np.random.default_rng(3))
    assert all(np.array_equal(small[k], same[k]) for k in small)
    ratio = small["conv_w"] / model.originals["conv_w"]
    assert abs(float(ratio.mean()) - 1.0) < 1e-3 and 0.0005 < float(ratio.std()) < 0.002
    large = model.noisy(0.5, "multiplicative", np.random.default_rng(3))
    small_change = np.abs(_logits(model, small, x) - original).max()
    large_change = np.abs(_logits(model, large, x) - original).max()
    assert 0 < small_change < 0.05 < large_change
    added = model.noisy(0.01, "additive", np.random.default_rng(3))
    assert abs(float((added["fc_w"] - model.originals["fc_w"]).std()) - 0.01) < 0.005
    with pytest.raises(ConfigError, match="noise_type"):
        model.noisy(0.1, "gamma", np.random.default_rng(0))


def test_a_variant_opens_as_a_backend_and_its_file_is_removed(
    three_layers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a private temporary folder: other runs (a killed one included) may leave their own
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = WeightedModel.load(three_layers)
    replacements = model.randomised({0, 1, 2}, seed=9)
    x = image()[None]

    async def run() -> np.ndarray:
        async with open_variant(model, replacements, ExplainConfig(), None) as engine:
            assert len(await anyio.to_thread.run_sync(_variant_folders)) == 1
            return np.asarray(await engine.backend.infer(x))

    scores = anyio.run(run)
    assert np.allclose(scores, _logits(model, replacements, x), atol=1e-5)
    assert not np.allclose(scores, _logits(model, {}, x), atol=1e-3)
    assert _variant_folders() == []


def _variant_folders() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("rex-stream-weights-*"))


def test_remote_backends_are_refused_in_one_line(three_layers: Path) -> None:
    for spec in ("triton://127.0.0.1:8001/m", "http://127.0.0.1:9/v2", "python:m:f"):
        with pytest.raises(ConfigError, match="MPRT needs a local ONNX model") as caught:
            local_model(spec)
        assert "\n" not in str(caught.value)
    assert local_model(str(three_layers)) == three_layers


def _case(path: Path, pool: VariantPool | None) -> Case:
    x = image()
    target = int(np.argmax(_logits(WeightedModel.load(path), {}, x[None])[0]))
    given = np.random.default_rng(2).normal(size=x.shape[1:])
    subject = Subject("s", x, (1, 2), 0.0, "RGB")
    return Case(subject, given, target, variants=pool, input_key="x")


def _evaluate(path: Path, metrics: str) -> tuple[list[MetricResult], Case, VariantPool]:
    model = WeightedModel.load(path)

    async def run() -> tuple[list[MetricResult], Case, VariantPool]:
        async with VariantPool(model, occlusion_explainer, ExplainConfig()) as pool:
            case = _case(path, pool)
            results = [
                await choice.spec.compute(case, choice.params, None)  # type: ignore[arg-type]
                for choice in choose(metrics)
            ]
        return results, case, pool

    return anyio.run(run)


def _hand_map(model: WeightedModel, layers: set[int], seed: int, case: Case) -> np.ndarray:
    replacements = model.randomised(layers, seed) if layers else {}
    logits = _logits(model, replacements, occluded(case.subject.tensor))
    return occlusion_map(logits, case.target)


def test_mprt_against_a_hand_computation(three_layers: Path) -> None:
    (result, average), case, pool = _evaluate(
        three_layers, "mprt,mprt:return_average_correlation=true"
    )
    model = pool.model
    given = np.abs(case.attribution).reshape(-1)
    expected = [
        scipy.stats.spearmanr(given, np.abs(_hand_map(model, layers, 42, case)).reshape(-1))[0]
        for layers in (set(), {2}, {1, 2}, {0, 1, 2})
    ]
    assert result.curve is not None
    assert np.allclose(result.curve, expected, atol=1e-9)
    assert result.score == pytest.approx(expected[-1], abs=1e-9)
    assert average.score == pytest.approx(np.mean(expected[1:]), abs=1e-9)
    # 4 variants, each explained once: the second metric reused every map
    assert pool.explanations == 4


def test_efficient_mprt_against_a_hand_computation(three_layers: Path) -> None:
    (result,), case, pool = _evaluate(three_layers, "efficient-mprt:n_bins=10")
    model = pool.model
    before = scipy.stats.entropy(np.histogram(_hand_map(model, set(), 42, case), 10)[0])
    after = scipy.stats.entropy(np.histogram(_hand_map(model, {0, 1, 2}, 42, case), 10)[0])
    assert result.score == pytest.approx((after - before) / before, rel=1e-9)
    assert result.extras["entropy_original"] == pytest.approx(before, rel=1e-12)
    assert pool.explanations == 2


def test_histogram_entropy_matches_scipy() -> None:
    a = np.random.default_rng(0).normal(size=500)
    expected = scipy.stats.entropy(np.histogram(a, bins=100)[0])
    assert histogram_entropy(a, 100) == pytest.approx(expected, rel=1e-12)
    assert histogram_entropy(np.ones(10), 100) == 0.0


def test_weight_metrics_without_a_model_say_what_they_need(three_layers: Path) -> None:
    choice = choose("mprt")[0]
    with pytest.raises(ConfigError, match="needs a local ONNX model"):
        anyio.run(choice.spec.compute, _case(three_layers, None), choice.params, None)


def test_evaluate_runs_mprt_through_the_library(three_layers: Path) -> None:
    """evaluate() opens the variants itself; the scores equal the hand-checked ones."""
    (mprt, efficient), case, _ = _evaluate(three_layers, "mprt,efficient-mprt:n_bins=10")
    x = case.subject.tensor

    def run(explainer: object) -> dict[str, float]:
        result = evaluate_sync(
            x,
            str(three_layers),
            {"noise": case.attribution},
            "mprt,efficient-mprt:n_bins=10",
            explainer=explainer,
        )
        scores = result.inputs[0].results["noise"]
        # the three randomised variants' queries are counted (through their own schedulers)
        assert result.queries >= 3 * len(occluded(x))
        return {label: r.score for label, r in scores.items()}

    scores = run(occlusion_explainer)
    assert scores["mprt"] == pytest.approx(mprt.score, abs=1e-9)
    assert scores["efficient-mprt:n_bins=10"] == pytest.approx(efficient.score, rel=1e-9)
    with pytest.raises(ConfigError, match="pass --explainer"):
        evaluate_sync(x, str(three_layers), {"a": case.attribution}, "mprt")


def test_cli_refuses_mprt_on_a_remote_backend_in_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((SIZE, SIZE)))
    np.save(tmp_path / "x.npy", image())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rex_stream.cli",
            "evaluate",
            str(tmp_path / "x.npy"),
            "--backend",
            "triton://127.0.0.1:9/none",
            "--attribution",
            str(tmp_path / "a.npy"),
            "--metrics",
            "mprt",
            "--explainer",
            "rex",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rex-stream: error: MPRT needs a local ONNX")


def test_pool_evicts_reopens_and_survives_a_cancelled_request(three_layers: Path) -> None:
    """One variant open at a time; a request cancelled mid-explanation leaves the map to the
    next caller, and its lease is given back."""
    model = WeightedModel.load(three_layers)
    x = image()
    calls: list[str] = []
    started = anyio.Event()

    async def explainer(*args):  # type: ignore[no-untyped-def]
        calls.append("call")
        if len(calls) == 1:
            started.set()
            await anyio.sleep_forever()  # cancelled below
        return await occlusion_explainer(*args)

    async def run() -> tuple[np.ndarray, VariantPool]:
        async with VariantPool(model, explainer, ExplainConfig(), max_open=1) as pool:
            found: dict[str, np.ndarray] = {}
            first = anyio.CancelScope()

            async def cancelled() -> None:
                with first:
                    await pool.explain(("a",), dict, x, 0, "x")

            async def waiting() -> None:
                found["a"] = await pool.explain(("a",), dict, x, 0, "x")

            async with anyio.create_task_group() as group:
                group.start_soon(cancelled)
                await started.wait()
                group.start_soon(waiting)
                await anyio.wait_all_tasks_blocked()
                first.cancel()
            assert pool.opened == 1
            randomised = lambda: model.randomised({0}, 1)  # noqa: E731
            await pool.explain(("b",), randomised, x, 0, "x")  # evicts "a"
            await pool.explain(("a",), dict, x, 0, "other input")  # opens "a" again
            assert pool.opened == 3
            return found["a"], pool

    explained, pool = anyio.run(run)
    assert np.allclose(explained, _hand_map(model, set(), 0, _case_for(x)), atol=1e-5)
    assert len(calls) == 4 and pool.explanations == 3


def _case_for(x: np.ndarray) -> Case:
    return Case(Subject("s", x, (1, 2), 0.0, "RGB"), np.zeros(x.shape[1:]), 0)


def test_plans_count_the_explanations_under_changed_weights(three_layers: Path) -> None:
    plans: dict[str, dict[str, int]] = {}
    with pytest.raises(ConfigError, match="max-queries"):
        evaluate_sync(
            image(),
            str(three_layers),
            {"a": np.ones((SIZE, SIZE))},
            "mprt,efficient-mprt,mprt:skip_layers=true",
            explainer="rex:iters=1",
            max_queries=10,
            on_plan=lambda key, plan: plans.update({key: plan}),
        )
    per_explanation = explainer_from_spec("rex:iters=1").estimate_queries((SIZE, SIZE))
    assert per_explanation > 0
    assert plans["array"] == {
        "mprt": 4 * per_explanation,  # the unchanged model and 3 cascade steps
        "efficient-mprt": 2 * per_explanation,
        "mprt:skip_layers=true": 2 * per_explanation,
    }


def test_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    host = socket.gethostname()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    folders = {
        "killed": tmp_path / f"rex-stream-weights-{ended.pid}@{host}-abc123",
        "running": tmp_path / f"rex-stream-weights-{os.getpid()}@{host}-def456",
        "elsewhere": tmp_path / f"rex-stream-weights-{ended.pid}@not-{host}-ghi789",
        "unnamed": tmp_path / "rex-stream-weights-jkl012",
    }
    for folder in folders.values():
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"onnx")
    assert remove_orphaned_variants(tmp_path) == [folders["killed"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        folders[k].name for k in ("running", "elsewhere", "unnamed")
    )
