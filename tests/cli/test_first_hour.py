"""What a newcomer meets first: flags that say what they do, errors that name the flag,
messages that tell what happened, and library entry points that raise the library's errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest

import rex_stream
from rex_stream import InputError, explain_many_sync, explain_stream, explain_sync
from tests.cli.test_cli import _one_line_error, rex

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = ROOT / "rex_stream" / "data" / "efficientnet-lite0.onnx"
BUNDLED_PHOTO = ROOT / "rex_stream" / "data" / "ladybird.jpg"
MODELS = ROOT / "rex_stream" / "data" / "models"


def test_means_and_stds_on_the_command_line_normalise_and_silence_the_warning() -> None:
    common = (str(BUNDLED_PHOTO), "--model", str(BUNDLED_MODEL), "--iters", "1", "--seed", "0")
    raw = rex(*common, "-n", "--json")
    normalised = rex(
        *common, "-n", "--json", "--means", "0.485,0.456,0.406", "--stds", "0.229,0.224,0.225"
    )
    assert raw.returncode == 0 and normalised.returncode == 0, raw.stderr + normalised.stderr
    raw_summary, norm_summary = json.loads(raw.stdout), json.loads(normalised.stdout)
    assert norm_summary["target"]["confidence"] > raw_summary["target"]["confidence"] + 0.1
    assert "may expect normalised input" in raw.stderr
    assert raw_summary["warnings"] and "--means" in raw_summary["warnings"][0]
    assert "may expect" not in normalised.stderr and "warnings" not in norm_summary


def test_the_config_file_used_is_reported(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    (tmp_path / "rex.toml").write_text("[causal]\nmin_box_size = 4\n")
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"settings from {tmp_path / 'rex.toml'}" in out.stderr or "settings from rex.toml" in (
        out.stderr
    )
    summary = json.loads(out.stdout)
    assert summary["config_file"].endswith("rex.toml")
    assert summary["mode"] == "RGB"
    assert len(summary["model_identity"]["sha256"]) == 64


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--iters", "0"), "--iters 0"),
        (("--seed", "-1"), "--seed -1"),
        (("--chunk-size", "0"), "--chunk-size 0"),
        (("--means", "a,b"), "--means"),
        (("--resume",), "--resume needs --store"),
        (("-n", "--output", "x.png"), "--no-extract"),
        (("--mode-option", "means=1"), "--mode-option means"),
        (("--input-shape", "3,64,64"), "contradicts"),
        (("--scores", "probabilities"), "look like logits"),
    ],
)
def test_options_that_would_do_nothing_are_one_line_errors(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "2", *args, cwd=tmp_path)
    _one_line_error(out, needle)


def test_directory_output_must_be_a_directory(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(tiny_image.read_bytes())
    out = rex(str(inputs), "--model", str(tiny_cnn), "--output", str(tmp_path / "out.png"))
    _one_line_error(out, "not a picture file")
    assert not (tmp_path / "out.png").exists()


def test_heatmap_of_a_table_is_refused_not_copied(tmp_path: Path) -> None:
    out = rex(
        str(MODELS / "tabular-breast-cancer-test.csv"),
        "--model",
        str(MODELS / "tabular-breast-cancer.onnx"),
        "--scores",
        "probabilities",
        "--mode-option",
        "drop=label",
        "--iters",
        "2",
        "--heatmap",
        str(tmp_path / "h.png"),
        "-q",
    )
    assert out.returncode != 0
    assert "no separate heatmap" in out.stderr
    assert not (tmp_path / "h.png").exists()


def test_an_empty_map_is_said_not_hidden(tiny_image: Path, tmp_path: Path) -> None:
    (tmp_path / "always_zero.py").write_text(
        "import numpy as np\n"
        "input_shape = (3, 32, 32)\n"
        "def predict(batch):\n"
        "    return np.tile([5.0, 0.0], (len(batch), 1))\n"
    )
    out = rex(
        str(tiny_image),
        *("--backend", "python:always_zero:predict", "--iters", "2", "--target", "1", "--json"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["stats"]["passing"] == 0
    assert any("map is empty" in w for w in summary["warnings"])
    assert "map is empty" in out.stderr


def test_library_errors_are_the_library_s_own(tiny_cnn: Path, tmp_path: Path) -> None:
    async def stream_missing() -> None:
        async with explain_stream(tmp_path / "missing.png", str(tiny_cnn)) as events:
            async for _ in events:
                pass

    with pytest.raises(InputError, match="no such file"):
        anyio.run(stream_missing)
    with pytest.raises(InputError, match="no such file"):
        explain_sync(tmp_path / "missing.png", str(tiny_cnn), iters=1)


def test_explain_many_sync_and_a_short_repr(tiny_cnn: Path, tiny_image: Path) -> None:
    results = explain_many_sync([tiny_image, tiny_image], str(tiny_cnn), iters=1, seed=0)
    assert len(results) == 2
    text = repr(results[0])
    assert text.startswith("Explanation(") and len(text) < 300 and "array" not in text
    assert not hasattr(rex_stream, "annotations")


def test_python_backend_module_in_the_current_directory(tiny_image: Path, tmp_path: Path) -> None:
    (tmp_path / "my_model.py").write_text(
        "import numpy as np\n"
        "input_shape = (3, 32, 32)\n"
        "def predict(batch):\n"
        "    return np.stack([batch.mean(axis=(1, 2, 3)), 0.5 - batch.mean(axis=(1, 2, 3))], 1)\n"
    )
    out = rex(
        str(tiny_image), "--backend", "python:my_model:predict", "--iters", "1", "-q", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "class" in out.stdout


def test_audio_intervals_are_merged_across_tiny_gaps() -> None:
    from rex_stream.modes.audio import explanation_intervals

    mask = np.zeros(100, bool)
    mask[10:20] = mask[21:30] = mask[60:70] = True
    assert explanation_intervals(mask) == [(10, 20), (21, 30), (60, 70)]
    assert explanation_intervals(mask, min_gap=3) == [(10, 30), (60, 70)]


def test_no_traceback_for_python_module_missing(tiny_image: Path) -> None:
    out = rex(str(tiny_image), "--backend", "python:nowhere_at_all:f", "--input-shape", "3,8,8")
    _one_line_error(out, "cannot import nowhere_at_all")


def test_directory_mode_names_failures_and_ends_with_a_table(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.png").write_bytes(tiny_image.read_bytes())
    (inputs / "broken.png").write_bytes(b"not a picture")
    out = rex(
        str(inputs), "--model", str(tiny_cnn), "--iters", "1", "--heatmap", str(tmp_path / "h")
    )
    assert out.returncode == 1
    assert "broken.png" in out.stderr and "Traceback" not in out.stderr
    assert "explained" in out.stdout and "failed" in out.stdout
    assert re.search(r"explained\s*│\s*1 │", out.stdout), out.stdout
    assert re.search(r"failed\s*│\s*1 │", out.stdout), out.stdout
    listed = rex(
        str(inputs),
        "--model",
        str(tiny_cnn),
        "--iters",
        "1",
        "--json",
        "--heatmap",
        str(tmp_path / "h2"),
    )
    summaries = json.loads(listed.stdout)
    good = next(s for s in summaries if "error" not in s)
    assert Path(good["outputs"]["heatmap"]).is_file()
    assert good["stats"]["calls"] >= 1
    bad = next(s for s in summaries if "error" in s)
    assert "broken.png" in bad["error"]


def test_directory_display_counts_inputs() -> None:
    from rex_stream.cli.directory_display import DirectoryDisplay
    from rex_stream.progress import Progress

    display = DirectoryDisplay(True, 3, ["a", "b", "c"])
    with display:
        display.input_progress(0, Progress("iteration", 1, 4, 100, 10, 10.0, 0.5))
        display.input_finished(0, "explained", 120)
        display.input_finished(1, "failed")
        display.input_finished(2, "complete", 0)
    assert (display.explained, display.failed, display.complete) == (1, 1, 1)
    table = display.summary_table(3, 1.0)
    assert "explained" in table and "failed" in table and "already complete" in table


def test_verbose_prints_the_effective_settings(tiny_cnn: Path, tiny_image: Path) -> None:
    out = rex(
        str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "--min-box-size", "7", "-v"
    )
    assert out.returncode == 0, out.stderr
    assert "effective settings" in out.stderr
    assert re.search(r"min_box_size\s*│\s*7\s", out.stderr), out.stderr


def test_output_piped_to_a_closed_reader_is_not_a_traceback(
    tiny_cnn: Path, tiny_image: Path
) -> None:
    import subprocess

    command = (
        f"{sys.executable} -m rex_stream.cli {tiny_image} --model {tiny_cnn} --iters 1 -q "
        "| head -c 1"
    )
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_method_flag_runs_the_other_methods_from_the_main_command() -> None:
    common = (
        str(MODELS / "tabular-breast-cancer-test.csv"),
        *("--model", str(MODELS / "tabular-breast-cancer.onnx"), "--scores", "probabilities"),
        *("--mode-option", "drop=label", "--steps", "8", "--seed", "3", "--json"),
    )
    by_flag = rex(common[0], "--method", "cem-pn", *common[1:])
    by_command = rex("cem", *common, "--kind", "pn")
    assert by_flag.returncode == 0, by_flag.stderr
    flagged, commanded = json.loads(by_flag.stdout), json.loads(by_command.stdout)
    flagged.pop("wall_s", None), commanded.pop("wall_s", None)
    assert flagged["method"] == "cem-pn"
    assert flagged["pertinent_negative"] == commanded["pertinent_negative"]
    _one_line_error(rex("x.png", "--method", "nope"), "--method nope")
