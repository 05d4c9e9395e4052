"""MetaQuantus' model-perturbation test on a real ONNX model, checked against hand computations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import meta_evaluate_model_sync
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.store import ExplanationStore
from rex_stream.errors import ConfigError, StoreError
from rex_stream.evaluation.meta.model_test import noisy_generator
from rex_stream.evaluation.variants.weights import WeightedModel
from tests.evaluation.meta.committed import committed_copies
from tests.evaluation.weight_models import (
    SIZE,
    occluded,
    occlusion_explainer,
    occlusion_map,
    save_three_layer_model,
)
from tests.killing import kill_mid_run

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_three_layer_model(tmp_path_factory.mktemp("mpt") / "three.onnx")


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    return [rng.uniform(0.0, 1.0, (3, SIZE, SIZE)).astype(np.float32) for _ in range(4)]


async def _uniform(
    x: np.ndarray, target: int, scheduler: Scheduler, info: ModelInfo, config: ExplainConfig
) -> np.ndarray:
    """A method that ignores the model: its maps never change."""
    return np.linspace(0.0, 1.0, SIZE * SIZE).reshape(SIZE, SIZE)


def _run(path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    explainers = {"occlusion": occlusion_explainer, "uniform": _uniform}
    settings = {"iterations": 2, "perturbations": 2, "seed": 3, **kwargs}
    return meta_evaluate_model_sync(_inputs(), str(path), explainers, "sparseness", **settings)


def _hand_sparseness(a: np.ndarray) -> float:
    """Gini of the normalised |map| (Quantus' Sparseness)."""
    flat = np.sort(np.abs(a / np.max(np.abs(a))).reshape(-1)) + 1e-7
    n = flat.size
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * flat) / (n * np.sum(flat)))


def test_model_perturbation_test_against_hand_computations(three_layers: Path) -> None:
    result = _run(three_layers, noise_adversary=0.5)
    again = _run(three_layers, noise_adversary=0.5)
    assert result.summary()["model_perturbation_test"] == again.summary()["model_perturbation_test"]
    arrays = result.arrays["sparseness"]
    weighted = WeightedModel.load(three_layers)

    def logits(replacements: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        data = weighted.with_weights(replacements).SerializeToString()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"input": x})[0], np.float64)

    inputs = _inputs()
    targets = [int(np.argmax(logits({}, x[None])[0])) for x in inputs]
    for n, x in enumerate(inputs):
        expected = _hand_sparseness(occlusion_map(logits({}, occluded(x)), targets[n]))
        assert arrays.q[0, n] == pytest.approx(expected, rel=1e-9)
    # every kept flag and every q̂ of the model-dependent method, from the noisy weights
    for t, i, p in np.ndindex(arrays.kept.shape[:3]):
        sigma = 0.001 if t == 0 else 0.5
        noisy = weighted.noisy(sigma, "multiplicative", noisy_generator(3, t, i, p))
        for n, x in enumerate(inputs):
            held = int(np.argmax(logits(noisy, x[None])[0])) == targets[n]
            assert arrays.kept[t, i, p, n] == (held if t == 0 else not held)
            if arrays.kept[t, i, p, n]:
                hand = _hand_sparseness(occlusion_map(logits(noisy, occluded(x)), targets[n]))
                assert arrays.q_hat[t, i, p, n, 0] == pytest.approx(hand, rel=1e-6)
                assert arrays.q_hat[t, i, p, n, 1] == pytest.approx(arrays.q[1, n])
            else:
                assert np.isnan(arrays.q_hat[t, i, p, n]).all()
    assert arrays.kept[0].mean() > 0.9  # a tiny noise keeps the predictions
    assert arrays.kept[1].any()  # a large one flips some
    values = result.summary()["model_perturbation_test"]["sparseness"]
    assert all(0.0 <= v <= 1.0 for v in values.values())


def test_model_perturbation_test_refusals(three_layers: Path) -> None:
    with pytest.raises(ConfigError, match="needs a local ONNX model"):
        _run("triton://127.0.0.1:8001/m")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot meta-evaluate mprt"):
        meta_evaluate_model_sync(_inputs(), str(three_layers), {"u": _uniform}, "mprt")
    with pytest.raises(ConfigError, match="noise_type"):
        _run(three_layers, noise_type="gamma")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rex_stream.cli", "evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli_meta_model(tiny_cnn: Path, tiny_image: Path) -> None:
    common = [str(tiny_image), "--model", str(tiny_cnn), "--metrics", "sparseness", "--meta"]
    out = _cli(
        *common,
        "model",
        "--explainer",
        "rex:iters=1",
        "--meta-iterations",
        "1",
        "--meta-perturbations",
        "2",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary["model_perturbation_test"]["sparseness"]) >= {"IAC_NR", "MC", "MC_std"}
    assert summary["settings"]["noise_adversary"] == 0.5
    missing = _cli(*common, "model")
    assert missing.returncode != 0
    assert missing.stderr.strip().startswith("rex-stream: error: --meta model re-explains")
    unstored = _cli(*common, "model", "--explainer", "rex:iters=1", "--resume")
    assert unstored.returncode != 0
    assert unstored.stderr.strip() == (
        "rex-stream: error: --resume needs --store (the store of the run to continue)"
    )


def _record_dirs(store: Path, kind: str) -> list[Path]:
    return sorted(store.glob(f"*/{kind}/0*"))


def _unpack(store: Path, *kinds: str) -> None:
    """Finished groups keep their records packed (engine/store_pack.py): back to one record
    per unit, as a killed run leaves them, through the store's own writes."""
    for group in (p for p in store.iterdir() if p.is_dir()):
        attached = ExplanationStore.attach(store, group.name, 2)
        for kind in kinds:
            for record in attached.committed(kind).values():
                attached.commit(kind, record)
            for pack in (group / kind).glob("pack-*"):
                shutil.rmtree(pack)


def test_store_resumes_every_unit_and_reports_progress(three_layers: Path, tmp_path: Path) -> None:
    store = tmp_path / "mpt.zarr"
    plain = _run(three_layers)
    seen: list[tuple[int, int, int]] = []
    stored = _run(three_layers, store=store, on_progress=lambda *a: seen.append(a))
    key = "model_perturbation_test"
    assert stored.summary()[key] == plain.summary()[key]
    planned = 4 * (1 + 2 * 2 * 2)  # per input: x, and one unit per noisy model
    assert [done for done, _, _ in seen] == list(range(1, planned + 1))
    assert {p for _, p, _ in seen} == {planned}
    queries = [q for _, _, q in seen]
    assert queries == sorted(queries) and 0 < queries[-1] <= stored.queries
    _unpack(store, "meta-copy", "meta-original")
    copies = _record_dirs(store, "meta-copy")
    assert len(copies) == 4 * 8 and len(_record_dirs(store, "meta-original")) == 4
    # as if killed part way: one input lost two units, every input lost noisy model 5's unit
    lost = [*copies[:2], *(c for c in copies if c.name == "000005")]
    for record in lost:
        shutil.rmtree(record)
    seen.clear()
    again = _run(three_layers, store=store, resume=True, on_progress=lambda *a: seen.append(a))
    assert again.resumed == planned - len(set(lost))
    assert seen[0][0] == again.resumed and seen[-1][0] == planned
    for label, arrays in again.arrays.items():
        np.testing.assert_array_equal(arrays.q, plain.arrays[label].q)
        np.testing.assert_array_equal(arrays.q_hat, plain.arrays[label].q_hat)
        np.testing.assert_array_equal(arrays.kept, plain.arrays[label].kept)
    assert again.summary()[key] == plain.summary()[key]
    whole = _run(three_layers, store=store, resume=True)
    assert whole.resumed == planned and whole.queries == 4  # f(x) of each input for its target
    changed = r"meta_evaluation\.noise_type: 'multiplicative' → 'additive'"
    with pytest.raises(StoreError, match=changed):
        _run(three_layers, store=store, resume=True, noise_type="additive")
    with pytest.raises(StoreError, match="already exists"):
        _run(three_layers, store=store)


def test_cli_meta_model_resume_after_kill_9_gives_identical_results(
    tiny_cnn: Path, tmp_path: Path
) -> None:
    """A run re-explaining through a slow explainer is killed with SIGKILL part way;
    ``--resume`` ends with exactly the IAC/IEC/MC of an uninterrupted run."""
    from PIL import Image

    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for n in range(3):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"p{n}.png")
    store = tmp_path / "mpt.zarr"
    command = [
        sys.executable, "-m", "rex_stream.cli", "evaluate", str(folder), "--model", str(tiny_cnn),
        "--metrics", "selectivity:patch_size=8,sparseness", "--meta", "model",
        "--explainer", "python:tests.evaluation.slow_explainer:explain",
        "--meta-iterations", "2", "--meta-perturbations", "3", "--seed", "2", "--json",
    ]  # fmt: skip
    units = 3 * 2 * 2 * 3

    def run(*extra: str, tmp: Path | None = None) -> dict:
        env = {**os.environ, "REX_STREAM_TEST_DELAY_S": "0", "TMPDIR": str(tmp or tmp_path)}
        done = subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    reference = run()
    # a SIGKILL leaves the noisy models' temporary folders behind: keep them out of /tmp
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "REX_STREAM_TEST_DELAY_S": "0.2", "TMPDIR": str(scratch)}
    kill_mid_run(
        [*command, "--store", str(store)], lambda: committed_copies(store), 6, "unit", 120,
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    before = committed_copies(store)
    assert 6 <= before < units
    resumed = run("--store", str(store), "--resume", tmp=scratch)
    assert not list(scratch.glob("rex-stream-weights-*"))  # the killed run's, removed
    assert before <= resumed["resumed"] < units + 3
    assert resumed["model_perturbation_test"] == reference["model_perturbation_test"]
    assert committed_copies(store) == units
    assert run("--store", str(store), "--resume")["resumed"] == units + 3
    changed = _cli(*command[4:], "--store", str(store), "--resume", "--weight-noise", "additive")
    assert changed.returncode != 0
    assert changed.stderr.startswith("rex-stream: error:") and changed.stderr.count("\n") == 1
    assert "meta_evaluation.noise_type: 'multiplicative' → 'additive'" in changed.stderr
