"""Spectral mode: a planted peak, interpolated occlusion, file formats, the real marker CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rex_stream import ExplainConfig, InputError, explain_sync
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.geometry import Box
from rex_stream.modes import load_subject
from rex_stream.modes.spectral import SpectralSubject, explanation_intervals, render

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
REAL_MODEL = MODELS / "spectral-markers.onnx"
LENGTH = 200
WINDOW = (120, 130)
FAST = {"iters": 8, "seed": 2, "search_limit": 150, "chunk_size": 2}


def save_peak_model(path: Path) -> Path:
    """logits = [0.5, mean of samples 120–129]: class 1 when the peak there is seen."""
    weights = np.zeros((2, LENGTH), np.float32)
    weights[1, WINDOW[0] : WINDOW[1]] = 1.0 / (WINDOW[1] - WINDOW[0])
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
        ],
        "planted_peak",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, LENGTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([0.5, 0.0], np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def peak_signal() -> np.ndarray:
    """Small noise everywhere, a Gaussian peak of height 1 centred in the window."""
    rng = np.random.default_rng(4)
    x = np.arange(LENGTH)
    centre = (WINDOW[0] + WINDOW[1] - 1) / 2
    return 0.05 * rng.normal(size=LENGTH) + np.exp(-0.5 * ((x - centre) / 4.0) ** 2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planted model and the peak signal as a .npy file."""
    folder = tmp_path_factory.mktemp("spectral")
    np.save(folder / "peak.npy", peak_signal())
    return save_peak_model(folder / "peak.onnx"), folder / "peak.npy"


@pytest.mark.parametrize("options", [{}, {"interpolate": "true"}])
def test_planted_peak_is_the_explanation(planted: tuple[Path, Path], options: dict) -> None:
    model, signal = planted
    explanation = explain_sync(signal, str(model), mode_options=options, **FAST)
    assert explanation.target.classification == 1
    assert WINDOW[0] <= int(np.argmax(explanation.responsibility)) < WINDOW[1]
    intervals = explanation_intervals(explanation)
    assert intervals
    for start, stop in intervals:
        assert WINDOW[0] - 4 <= start and stop <= WINDOW[1] + 4
    assert explanation.mask is not None and explanation.mask.sum() <= 16


def test_interpolation_joins_the_visible_neighbours() -> None:
    info = ModelInfo("m", "input", (1, 8))
    config = ExplainConfig().with_overrides(mode="spectral", mode_options={"interpolate": "true"})
    signal = np.array([0, 1, 2, 3, 4, 5, 6, 10], np.float32)
    subject = load_subject(signal, info, config)
    assert isinstance(subject, SpectralSubject)
    out = np.zeros((1, 8), np.float32)
    subject.fill_boxes(out, [Box((0,), (1,)), Box((7,), (8,))])
    np.testing.assert_allclose(out[0], np.linspace(0, 10, 8), atol=1e-6)
    subject.fill_mask(out, np.array([0, 0, 1, 1, 0, 0, 0, 0], bool))
    np.testing.assert_allclose(out[0], [2, 2, 2, 3, 3, 3, 3, 3])
    plain = load_subject(signal, info, ExplainConfig().with_overrides(mode="spectral"))
    plain.fill_boxes(out, [Box((0,), (1,)), Box((7,), (8,))])
    np.testing.assert_allclose(out[0], [0, 0, 0, 0, 0, 0, 0, 10])


def test_noise_is_opt_in_and_deterministic() -> None:
    info = ModelInfo("m", "input", (16,))
    options = {"interpolate": "true", "noise": "0.1"}
    config = ExplainConfig().with_overrides(mode="spectral", mode_options=options)
    subject = load_subject(np.zeros(16, np.float32), info, config)
    first, second = np.zeros(16, np.float32), np.zeros(16, np.float32)
    subject.fill_boxes(first, [Box((0,), (4,))])
    subject.fill_boxes(second, [Box((0,), (4,))])
    np.testing.assert_array_equal(first, second)
    assert np.all(first[:4] == 0) and np.any(first[4:] != 0)


def test_real_model_finds_its_marker_peak(tmp_path: Path) -> None:
    explanation = explain_sync(
        MODELS / "spectral-markers-A.npy",
        str(REAL_MODEL),
        mode_options={"interpolate": "true"},
        **FAST,
    )
    assert explanation.target.classification == 1
    assert 330 <= int(np.argmax(explanation.responsibility)) < 430
    picture = tmp_path / "spectrum.png"
    render(explanation, picture)
    assert picture.stat().st_size > 1000


def test_mat_and_csv_files(planted: tuple[Path, Path], tmp_path: Path) -> None:
    model, signal = planted
    values = np.load(signal)
    np.savetxt(tmp_path / "s.csv", values[None, :], delimiter=",")
    explanation = explain_sync(tmp_path / "s.csv", str(model), mode="spectral", **FAST)
    assert explanation.target.classification == 1
    scipy_io = pytest.importorskip("scipy.io")
    scipy_io.savemat(tmp_path / "s.mat", {"spectrum": values[None, :]})
    explanation = explain_sync(tmp_path / "s.mat", str(model), **FAST)
    assert explanation.subject.mode == "spectral"
    scipy_io.savemat(tmp_path / "two.mat", {"a": values, "b": values})
    with pytest.raises(InputError, match="key=NAME"):
        explain_sync(tmp_path / "two.mat", str(model), **FAST)


@pytest.mark.parametrize(
    ("array", "options", "message"),
    [
        (np.zeros(150), {}, "has 150 samples but the model takes 200"),
        (np.full(LENGTH, np.nan), {}, "NaN"),
        (np.zeros((2, 3, LENGTH)), {}, "must be 1-D"),
        (np.zeros(LENGTH), {"interpolate": "maybe"}, "must be true or false"),
    ],
)
def test_bad_inputs_give_one_line_errors(
    planted: tuple[Path, Path], tmp_path: Path, array: np.ndarray, options: dict, message: str
) -> None:
    model, _ = planted
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputError) as error:
        explain_sync(path, str(model), mode_options=options, **FAST)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_resample_option_and_unreadable_files(planted: tuple[Path, Path], tmp_path: Path) -> None:
    model, signal = planted
    values = np.load(signal)
    longer = np.interp(np.linspace(0, LENGTH - 1, 400), np.arange(LENGTH), values)
    np.save(tmp_path / "long.npy", longer)
    explanation = explain_sync(
        tmp_path / "long.npy", str(model), mode_options={"resample": "true"}, **FAST
    )
    assert explanation.target.classification == 1
    (tmp_path / "junk.npy").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="cannot read signal"):
        explain_sync(tmp_path / "junk.npy", str(model), **FAST)
    (tmp_path / "junk.mat").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"junk\.mat"):
        explain_sync(tmp_path / "junk.mat", str(model), **FAST)


def test_mismatched_mode(tmp_path: Path) -> None:
    tabular_model = MODELS / "tabular-breast-cancer.onnx"
    with pytest.raises(InputError, match="1356 samples but the model takes 30"):
        explain_sync(MODELS / "spectral-markers-A.npy", str(tabular_model), **FAST)
