"""Files, several files and directories, alike in every command (issue 27, item 6), through the
real ``rex-stream``: the main command and ``evaluate`` take several inputs and run them as a
directory run does (one scheduler, one summary); a missing file is one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from tests.cli.test_cli import _one_line_error, rex

QUICK = ["--iters", "2", "--min-box-size", "8", "--seed", "3", "-q", "--json"]
METRICS = ["--metrics", "sparseness,pixel-flipping:features_in_step=256", "--json", "-q"]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of three distinct small pictures."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for number, name in enumerate(("a.png", "b.png", "c.png")):
        pixels = np.random.default_rng(number).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        pixels[4 + 6 * number : 14 + 6 * number, 8:20] = (230, 40, 40)
        Image.fromarray(pixels).save(folder / name)
    return folder


def _by_input(out: str) -> dict[str, dict]:
    return {Path(s["input"]).name: s for s in json.loads(out)}


def _comparable(summary: dict) -> tuple:
    explanation = summary.get("explanation") or {}
    return summary["target"]["class"], summary["target"]["confidence"], explanation.get("area")


@pytest.mark.parametrize("command", ["", "evaluate", "cem", "l2x"])
def test_every_command_takes_inputs_from_one_definition(command: str) -> None:
    out = rex(*([command] if command else []), "--help")
    assert out.returncode == 0, out.stderr
    assert re.search(r"INPUT \[INPUT \.\.\.\]|\[INPUT \.\.\.\]", out.stdout), out.stdout[:400]
    text = " ".join(out.stdout.split())
    assert "an input file, several, or directories (every input under them, recursively)" in text


def test_several_files_run_as_their_directory_does(
    tiny_cnn: Path, photos: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_cnn)]
    whole = rex(str(photos), *model, *QUICK, "--store", str(tmp_path / "whole.zarr"))
    listed = rex(*(str(photos / n) for n in ("a.png", "b.png", "c.png")), *model, *QUICK,
                 "--store", str(tmp_path / "listed.zarr"))  # fmt: skip
    assert whole.returncode == 0 and listed.returncode == 0, whole.stderr + listed.stderr
    assert _by_input(listed.stdout).keys() == {"a.png", "b.png", "c.png"}
    assert {k: _comparable(v) for k, v in _by_input(listed.stdout).items()} == {
        k: _comparable(v) for k, v in _by_input(whole.stdout).items()
    }
    groups = lambda store: sorted(zarr.open_group(store, mode="r").group_keys())  # noqa: E731
    assert groups(tmp_path / "listed.zarr") == groups(tmp_path / "whole.zarr")
    assert groups(tmp_path / "listed.zarr") == ["a.png", "b.png", "c.png"]


def test_a_mix_of_a_file_and_a_directory_and_one_summary(
    tiny_cnn: Path, photos: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "extra.png"
    shutil.copy(photos / "a.png", extra)
    nested = tmp_path / "nested"
    nested.mkdir()
    shutil.move(photos / "c.png", nested / "c.png")
    out = rex(str(extra), str(photos), str(nested), "--model", str(tiny_cnn), "--iters", "1",
              "--min-box-size", "8", "-q")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "4 inputs in" in out.stdout  # the directory run's one summary table
    assert re.search(r"explained\s+│\s+4", out.stdout), out.stdout


def test_a_missing_file_among_several_is_one_line_before_any_work(
    tiny_cnn: Path, photos: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.zarr"
    out = rex(str(photos / "a.png"), str(tmp_path / "nope.png"), "--model", str(tiny_cnn),
              "--store", str(store))  # fmt: skip
    _one_line_error(out, f"{tmp_path / 'nope.png'}: no such file or directory")
    assert out.returncode == 3 and not store.exists()
    evaluated = rex("evaluate", str(photos / "a.png"), str(tmp_path / "nope.png"), "--model",
                    str(tiny_cnn), "--attribution", str(tmp_path / "m.npy"), *METRICS)  # fmt: skip
    _one_line_error(evaluated, "nope.png: no such file or directory")


def test_two_inputs_that_would_share_a_name_are_refused(tiny_cnn: Path, photos: Path) -> None:
    other = photos / "again"
    other.mkdir()
    shutil.copy(photos / "b.png", other / "a.png")
    out = rex(str(photos / "a.png"), str(other / "a.png"), "--model", str(tiny_cnn))
    _one_line_error(out, "would both be named 'a.png'")


def test_one_input_flags_are_refused_with_several(tiny_cnn: Path, photos: Path) -> None:
    out = rex(str(photos / "a.png"), str(photos / "b.png"), "--script", "s.py")
    _one_line_error(out, "--script preprocesses one input: give one input, not several")


def test_several_inputs_draw_into_the_default_folders(
    tiny_cnn: Path, photos: Path, tmp_path: Path
) -> None:
    out = rex(str(photos / "a.png"), str(photos / "b.png"), "--model", str(tiny_cnn), "--iters",
              "1", "--min-box-size", "8", "-q", "--output", "--heatmap", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "inputs-explanations").iterdir()) == [
        "a.png.png",
        "b.png.png",
    ]
    assert len(list((tmp_path / "inputs-heatmaps").iterdir())) == 2


def test_evaluate_takes_several_files_as_it_takes_their_directory(
    tiny_cnn: Path, photos: Path, tmp_path: Path
) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    for number, name in enumerate(("a", "b", "c")):
        np.save(maps / f"{name}.npy", np.random.default_rng(number).random((32, 32)))
    common = ["--model", str(tiny_cnn), "--attribution", f"m={maps}", *METRICS]
    whole = rex("evaluate", str(photos), *common)
    listed = rex("evaluate", str(photos / "a.png"), str(photos / "b.png"), str(photos / "c.png"),
                 *common)  # fmt: skip
    assert whole.returncode == 0 and listed.returncode == 0, whole.stderr + listed.stderr
    scores = lambda out: {  # noqa: E731
        Path(i["input"]).name: i["attributions"] for i in json.loads(out.stdout)["inputs"]
    }
    assert scores(listed) == scores(whole)
    assert len(scores(listed)) == 3
