"""The CLI end to end: pictures, store, JSON, and one-line errors for every user mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def rex(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd or ROOT,
    )


def test_end_to_end_pictures_store_and_json(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    (tmp_path / "rex.toml").write_text("[causal]\nmin_box_size = 4\ntree_depth = 6\n")
    out = rex(
        str(tiny_image),
        "--model",
        str(tiny_cnn),
        "--iters",
        "3",
        "--seed",
        "4",
        "--output",
        str(tmp_path / "exp.png"),
        "--heatmap",
        str(tmp_path / "heat.png"),
        "--store",
        str(tmp_path / "run.zarr"),
        "--json",
        "--analyse",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["target"]["class"] in range(10)
    assert 0 < summary["explanation"]["area"] <= 1
    for key in ("queries", "calls", "mean_batch", "passing", "failing", "max_depth", "wall_s"):
        assert key in summary["stats"]
    assert summary["store"].endswith("run.zarr/tiny")
    assert (tmp_path / "exp.png").stat().st_size > 0
    assert (tmp_path / "heat.png").stat().st_size > 0
    assert (tmp_path / "run.zarr" / "tiny" / "responsibility").is_dir()
    assert "evaluation" in summary


def test_human_summary(tiny_cnn: Path, tiny_image: Path) -> None:
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "2", "--seed", "1", "-q")
    assert out.returncode == 0, out.stderr
    assert "class" in out.stdout and "queries" in out.stdout


def _one_line_error(out: subprocess.CompletedProcess[str], needle: str) -> None:
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("rex-stream: error:")
    assert needle in lines[0]
    assert "Traceback" not in out.stderr


@pytest.fixture
def bad_files(tmp_path: Path, tiny_cnn: Path) -> dict[str, Path]:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    import onnx
    from onnx import TensorProto, helper

    flat = tmp_path / "flat.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(flat))
    return {"text": text, "not_onnx": not_onnx, "flat": flat, "model": tiny_cnn}


def test_missing_file(bad_files: dict[str, Path]) -> None:
    _one_line_error(rex("nope.jpg", "--model", str(bad_files["model"])), "no such file")


def test_not_an_image(bad_files: dict[str, Path]) -> None:
    _one_line_error(rex(str(bad_files["text"]), "--model", str(bad_files["model"])), "not an image")


def test_model_not_onnx(bad_files: dict[str, Path], tiny_image: Path) -> None:
    _one_line_error(
        rex(str(tiny_image), "--model", str(bad_files["not_onnx"])), "not a loadable ONNX model"
    )
    _one_line_error(rex(str(tiny_image), "--model", str(bad_files["text"])), "ONNX")


def test_model_input_cannot_take_an_image(bad_files: dict[str, Path], tiny_image: Path) -> None:
    _one_line_error(rex(str(tiny_image), "--model", str(bad_files["flat"])), "cannot take an image")


def test_class_out_of_range(bad_files: dict[str, Path], tiny_image: Path) -> None:
    _one_line_error(
        rex(str(tiny_image), "--model", str(bad_files["model"]), "--target", "10"), "out of range"
    )


def test_unwritable_output(bad_files: dict[str, Path], tiny_image: Path) -> None:
    _one_line_error(
        rex(str(tiny_image), "--model", str(bad_files["model"]), "--output", "/nonexistent/x.png"),
        "does not exist",
    )


def test_store_with_different_settings(
    bad_files: dict[str, Path], tiny_image: Path, tmp_path: Path
) -> None:
    store = str(tmp_path / "s.zarr")
    first = rex(
        str(tiny_image),
        "--model",
        str(bad_files["model"]),
        "--iters",
        "2",
        "--seed",
        "1",
        "--store",
        store,
        "-q",
    )
    assert first.returncode == 0, first.stderr
    _one_line_error(
        rex(
            str(tiny_image),
            "--model",
            str(bad_files["model"]),
            "--iters",
            "2",
            "--seed",
            "2",
            "--store",
            store,
            "--resume",
        ),
        "different settings",
    )


def test_bad_config_file(bad_files: dict[str, Path], tiny_image: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[causal]\ntree_dept = 3\n")
    _one_line_error(
        rex(str(tiny_image), "--model", str(bad_files["model"]), "-c", str(config)),
        "unknown key 'tree_dept'",
    )
    config.write_text("[causal]\niters = 0\n")
    _one_line_error(
        rex(str(tiny_image), "--model", str(bad_files["model"]), "-c", str(config)), "causal.iters"
    )


def test_no_model_given(tiny_image: Path) -> None:
    _one_line_error(rex(str(tiny_image)), "no model")


def test_directory_mode_one_backend_one_store(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """Every input of a directory, one bad file reported without stopping the others."""
    import shutil

    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    shutil.copy(tiny_image, inputs / "a.png")
    shutil.copy(tiny_image, inputs / "sub" / "b.png")
    (inputs / "broken.png").write_text("not an image")
    out = rex(
        str(inputs),
        "--model",
        str(tiny_cnn),
        "--iters",
        "2",
        "--seed",
        "3",
        "--output",
        str(tmp_path / "pictures"),
        "--store",
        str(tmp_path / "many.zarr"),
        "--json",
    )
    assert out.returncode == 1, out.stderr
    assert "broken.png is not an image" in out.stderr
    summaries = json.loads(out.stdout)
    assert len(summaries) == 3
    assert sum("error" in s for s in summaries) == 1
    assert (tmp_path / "pictures" / "a.png.png").is_file()
    assert (tmp_path / "pictures" / "sub__b.png.png").is_file()
    assert (tmp_path / "many.zarr" / "sub__b.png" / "responsibility").is_dir()
