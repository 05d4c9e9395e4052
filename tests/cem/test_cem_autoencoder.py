"""CEM's autoencoder term: a PCA autoencoder of the digits, exported to ONNX here, scored
through its own scheduler; the term changes the solutions and lowers their reconstruction
error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rex_stream import explain_cem_sync
from rex_stream.cem import CemConfig
from rex_stream.cli.main import main
from rex_stream.config import ExplainConfig
from rex_stream.errors import BackendError, ConfigError
from tests.cem.test_cem_digits import DIGITS, MODELS, classify, held_out_digits

COMPONENTS = 12


def pca(components: int = COMPONENTS) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the leading principal directions (64 × k) of the bundled training digits."""
    train = (np.load(MODELS / "digits-train.npy") / 16.0).reshape(-1, 64)
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    return mean, vt[:components].T


def reconstruction_errors(batch: np.ndarray) -> np.ndarray:
    mean, basis = pca()
    rows = batch.reshape(len(batch), -1).astype(np.float64) - mean
    rebuilt = rows @ basis @ basis.T
    return ((rows - rebuilt) ** 2).sum(axis=1)


def export_autoencoder(
    path: Path, shape: tuple[int, ...] = (1, 8, 8), answer: tuple[int, ...] | None = None
) -> Path:
    """x ↦ mean + (x − mean) W Wᵀ as an ONNX model taking ``(N, *shape)`` and answering with
    the reconstruction as flat rows ``(N, elements)`` (as backends answer with score rows)."""
    mean, basis = pca()
    size = int(np.prod(shape))
    initializers = [
        numpy_helper.from_array(mean[:size].astype(np.float32), "mean"),
        numpy_helper.from_array(basis[:size].astype(np.float32), "encode"),
        numpy_helper.from_array(basis[:size].T.astype(np.float32).copy(), "decode"),
        numpy_helper.from_array(np.array([-1, size], np.int64), "flat"),
        numpy_helper.from_array(np.array([-1, *(answer or (size,))], np.int64), "answer"),
    ]
    nodes = [
        helper.make_node("Reshape", ["input", "flat"], ["rows"]),
        helper.make_node("Sub", ["rows", "mean"], ["centred"]),
        helper.make_node("MatMul", ["centred", "encode"], ["code"]),
        helper.make_node("MatMul", ["code", "decode"], ["decoded"]),
        helper.make_node("Add", ["decoded", "mean"], ["rebuilt"]),
        helper.make_node("Reshape", ["rebuilt", "answer"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pca_autoencoder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *(answer or (size,))])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_the_autoencoder_term_is_applied(tmp_path: Path) -> None:
    autoencoder = export_autoencoder(tmp_path / "ae.onnx")
    digits = held_out_digits(6)
    targets = classify(digits)
    plain = explain_cem_sync(list(digits), str(DIGITS), CemConfig(steps=120), ExplainConfig())
    cem = CemConfig(steps=120, gamma=5.0)
    with_term = explain_cem_sync(
        list(digits), str(DIGITS), cem, ExplainConfig(), autoencoder=str(autoencoder)
    )
    assert all(r.found for r in plain + with_term)
    kept = classify(np.stack([r.solution for r in with_term]))
    np.testing.assert_array_equal(kept, targets)
    assert any(not np.array_equal(a.values, b.values) for a, b in zip(plain, with_term))
    before = reconstruction_errors(np.stack([r.solution for r in plain]))
    after = reconstruction_errors(np.stack([r.solution for r in with_term]))
    print(f"reconstruction error of the PPs: {before.mean():.3f} without, {after.mean():.3f} with")
    assert after.mean() < 0.8 * before.mean()
    for result, error in zip(with_term, after):
        assert result.reconstruction == pytest.approx(error, rel=1e-3, abs=1e-4)
        assert result.autoencoder_queries == result.queries - 1  # all but the prediction
        assert result.summary()["pertinent_positive"]["reconstruction_error"] == (
            result.reconstruction
        )
    assert all(r.autoencoder_queries == 0 and np.isnan(r.reconstruction) for r in plain)


def test_autoencoder_mistakes_are_config_errors(tmp_path: Path) -> None:
    digit = held_out_digits(1)[0]
    with pytest.raises(ConfigError, match="gamma"):
        explain_cem_sync(digit, str(DIGITS), CemConfig(gamma=1.0))
    wrong = export_autoencoder(tmp_path / "wrong.onnx", shape=(1, 4, 8))
    with pytest.raises(ConfigError, match="shape"):
        explain_cem_sync(digit, str(DIGITS), CemConfig(gamma=1.0), autoencoder=str(wrong))
    with pytest.raises(ConfigError, match="gamma"):
        CemConfig(gamma=-1.0)
    shaped = export_autoencoder(tmp_path / "shaped.onnx", answer=(1, 8, 8))
    with pytest.raises(BackendError, match="one flat row of 64 values per input"):
        explain_cem_sync(digit, str(DIGITS), CemConfig(gamma=1.0), autoencoder=str(shaped))


def test_cli_autoencoder_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    autoencoder = export_autoencoder(tmp_path / "ae.onnx")
    digit = tmp_path / "digit.npy"
    np.save(digit, held_out_digits(1)[0])
    arguments = ["cem", str(digit), "--model", str(DIGITS), "--steps", "30", "--json"]
    code = main([*arguments, "--cem-autoencoder", str(autoencoder), "--cem-gamma", "5"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pertinent_positive"]["gamma"] == 5.0
    assert summary["stats"]["autoencoder_queries"] > 0
    plain = [a for a in arguments if a != "--json"]
    assert main([*plain, "--autoencoder", str(autoencoder), "--gamma", "5"]) == 0
    assert "reconstruction error" in capsys.readouterr().out
    assert main([*arguments, "--autoencoder", str(tmp_path / "missing.onnx"), "--gamma", "1"])
    assert "rex-stream: error:" in capsys.readouterr().err
