"""Large-volume memory: fills without input-sized masks, memory-mapped volumes, ORT's arena."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rex_stream import explain_sync
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings, ModelInfo
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError
from rex_stream.modes.voxel import MappedSubject, subject_from_array
from tests.modes.test_voxel import MODEL, blob_volume


@pytest.mark.parametrize("layout", [(0, (1, 2, 3)), (3, (0, 1, 2))], ids=["CDHW", "DHWC"])
@pytest.mark.parametrize("slab", [1, 40, 1 << 22])
def test_fill_at_least_equals_a_masked_fill(layout: tuple[int, tuple[int, ...]], slab: int) -> None:
    channel_axis, spatial = layout
    rng = np.random.default_rng(0)
    shape = [7, 6, 5]
    shape.insert(channel_axis, 2)
    tensor = rng.normal(size=shape).astype(np.float32)
    subject = Subject("v", tensor, spatial, baseline=-1.0, mode="voxel")
    weights = rng.integers(0, 4, (7, 6, 5)).astype(np.float32)
    for level in (0.0, 1.0, 3.0, 9.0):
        expected = np.empty_like(tensor)
        subject.fill_mask(expected, weights >= level)
        got = np.full_like(tensor, np.nan)
        subject.fill_at_least(got, weights, level, slab=slab)
        assert np.array_equal(got, expected)


def test_a_memory_mapped_volume_explains_as_the_array_does(tmp_path: Path) -> None:
    volume = blob_volume()[None]
    npy = tmp_path / "blob.npy"
    np.save(npy, volume)
    mapped = subject_from_array(
        np.load(npy, mmap_mode="r"), ModelInfo("m", "x", (1, 32, 32, 32)), ExplainConfig()
    )
    assert isinstance(mapped, MappedSubject) and mapped.mapping is not None
    from_file = explain_sync(npy, str(MODEL), iters=3, seed=3, mode="voxel")
    from_array = explain_sync(volume, str(MODEL), iters=3, seed=3, mode="voxel")
    assert isinstance(from_file.subject, MappedSubject)
    assert not isinstance(from_array.subject, MappedSubject)
    assert np.array_equal(from_file.responsibility, from_array.responsibility)
    assert from_file.mask is not None and from_array.mask is not None
    assert np.array_equal(from_file.mask, from_array.mask)


def test_a_read_only_volume_can_still_be_normalised(tmp_path: Path) -> None:
    npy = tmp_path / "v.npy"
    np.save(npy, np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8))
    config = ExplainConfig().with_overrides(mode_options={"normalise": "zscore"})
    subject = subject_from_array(
        np.load(npy, mmap_mode="r"), ModelInfo("m", "x", (8, 8, 8)), config
    )
    assert abs(float(subject.tensor.mean())) < 1e-5
    assert not isinstance(subject, MappedSubject)


def _wide_model(path: Path, width: int) -> Path:
    """(N, width) → (N, 2): ReduceMean over the row, twice (a large static input)."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=1, axes=[1]),
        helper.make_node("Concat", ["m", "m"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("width", "option", "arena"),
    [(16, "auto", True), (1 << 24, "auto", False), (16, "off", False), (1 << 24, "on", True)],
)
def test_onnx_arena_is_off_for_large_inputs(
    tmp_path: Path, width: int, option: str, arena: bool
) -> None:
    from rex_stream.adapters.onnx import OnnxBackend

    backend = OnnxBackend(
        _wide_model(tmp_path / "wide.onnx", width), BackendSettings(options={"arena": option})
    )
    assert backend._session.get_session_options().enable_cpu_mem_arena is arena
    scores = backend.infer_blocking(np.ones((1, width), np.float32))
    assert np.allclose(scores, 1.0)


def test_onnx_arena_option_is_checked(tmp_path: Path) -> None:
    from rex_stream.adapters.onnx import OnnxBackend

    with pytest.raises(ConfigError, match="arena='maybe' must be on, off or auto"):
        OnnxBackend(
            _wide_model(tmp_path / "w.onnx", 4), BackendSettings(options={"arena": "maybe"})
        )
