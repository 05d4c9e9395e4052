"""One consistent command line (issue 27, items 6 and 12), through the real ``rex-stream``
command: sub-commands listed and found where users put them, shared flags defined once,
files / lists / directories alike, and ``-vv`` that shows rex-stream's lines only."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_cli import _one_line_error, rex

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "rex_stream" / "data" / "models"
SPECTRAL = MODELS / "spectral-markers.onnx"
TABULAR = MODELS / "tabular-breast-cancer.onnx"
TRAIN = MODELS / "tabular-breast-cancer-train.csv"
SUBCOMMANDS = ("evaluate", "cem", "l2x-train", "l2x")
#: flags every command that calls a model shares (one definition in method_options)
SHARED = ("--model", "--backend", "--retry-s", "--timeout-s", "--norm", "--means", "--spectral",
          "--mode-option", "--batch-size", "--linger-ms", "--concurrent-inputs", "--json", "-q",
          "--verbose")  # fmt: skip


def test_main_help_lists_every_subcommand() -> None:
    out = rex("--help")
    assert out.returncode == 0
    for name in (*SUBCOMMANDS, "report", "demo"):
        assert f"rex-stream {name}" in out.stdout


@pytest.mark.parametrize("command", [(), *[(name,) for name in SUBCOMMANDS]])
def test_every_command_has_the_shared_flags(command: tuple[str, ...]) -> None:
    out = rex(*command, "--help")
    assert out.returncode == 0, out.stderr
    missing = [
        f for f in SHARED if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", out.stdout)
    ]
    assert not missing, f"{command}: {missing}"


def test_a_subcommand_after_options_is_one_line_saying_where_it_goes(tiny_cnn: Path) -> None:
    out = rex("--model", str(tiny_cnn), "evaluate", "photo.jpg")
    _one_line_error(out, "'evaluate' goes first")
    assert f"rex-stream evaluate --model {tiny_cnn} photo.jpg" in out.stderr


def _spectra(tmp_path: Path) -> Path:
    folder = tmp_path / "spectra"
    folder.mkdir()
    for name in ("spectral-markers-A.npy", "spectral-markers-B.npy"):
        shutil.copy(MODELS / name, folder / name)
    return folder


def test_cem_takes_a_directory_and_q_also_through_method(tmp_path: Path) -> None:
    folder = _spectra(tmp_path)
    common = ["--model", str(SPECTRAL), "--steps", "3", "--directions", "2", "-q", "--json"]
    out = rex("cem", str(folder), *common)
    assert out.returncode == 0, out.stderr
    summaries = json.loads(out.stdout)
    assert sorted(Path(s["input"]).name for s in summaries) == [
        "spectral-markers-A.npy",
        "spectral-markers-B.npy",
    ]
    through_method = rex(str(folder), "--method", "cem-pp", *common)
    assert through_method.returncode == 0, through_method.stderr
    assert len(json.loads(through_method.stdout)) == 2


def test_l2x_takes_several_inputs_and_a_seed(tmp_path: Path) -> None:
    rows = tmp_path / "rows.npy"
    table = np.loadtxt(TRAIN, delimiter=",", skiprows=1, dtype=np.float32)
    np.save(rows, table[:60])
    reading = ["--mode", "tabular", "--mode-option", f"baseline={TRAIN}", "--scores",
               "probabilities"]  # fmt: skip
    explainer = tmp_path / "e.npz"
    trained = rex("l2x-train", str(rows), "--model", str(TABULAR), *reading, "--k", "3",
                  "--epochs", "3", "--max-gap", "1", "--out", str(explainer), "-q")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    folder = tmp_path / "one-row-each"
    folder.mkdir()
    for i in (3, 7):
        np.save(folder / f"row{i}.npy", table[i : i + 1])
    out = rex("l2x", str(folder / "row3.npy"), str(folder / "row7.npy"), "--explainer",
              str(explainer), "--seed", "1", "--json", "-q")  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = [Path(s["input"]).name.split("#")[0] for s in json.loads(out.stdout)]
    assert names == ["row3.npy", "row7.npy"]
    as_directory = rex("l2x", str(folder), "--explainer", str(explainer), "--json")
    assert json.loads(as_directory.stdout) == json.loads(out.stdout)


def test_evaluate_takes_norm_retry_and_linger(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    attribution = tmp_path / "a.npy"
    np.save(attribution, np.random.default_rng(0).random((32, 32)))
    common = [str(tiny_image), "--model", str(tiny_cnn), "--attribution", str(attribution),
              "--metrics", "sparseness,pixel-flipping:features_in_step=256", "--json"]  # fmt: skip
    plain = rex("evaluate", *common)
    flagged = rex("evaluate", *common, "--norm", "255", "--retry-s", "0", "--linger-ms", "1")
    assert plain.returncode == 0 and flagged.returncode == 0, plain.stderr + flagged.stderr
    scores = lambda out: json.loads(out.stdout)["inputs"][0]["attributions"]  # noqa: E731
    assert scores(plain) == scores(flagged)
    halved = rex("evaluate", *common, "--norm", "510")
    assert halved.returncode == 0, halved.stderr
    assert scores(halved) != scores(plain)


def test_vv_shows_rex_streams_debug_lines_and_no_third_party_ones(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    pictures = ["--output", str(tmp_path / "e.png"), "--heatmap", str(tmp_path / "h.png")]
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "-vv", *pictures)
    assert out.returncode == 0, out.stderr
    foreign = [line for line in out.stderr.splitlines()
               if line.startswith(("DEBUG", "INFO")) and " rex_stream" not in line]  # fmt: skip
    assert not foreign, foreign[:5]


def test_q_keeps_warnings(tmp_path: Path) -> None:
    photo = ROOT / "rex_stream" / "data" / "ladybird.jpg"
    model = ROOT / "rex_stream" / "data" / "efficientnet-lite0.onnx"
    out = rex(str(photo), "--model", str(model), "--iters", "1", "-n", "-q")
    assert out.returncode == 0, out.stderr
    assert "may expect normalised input" in out.stderr  # a warning, not progress


def test_log_levels_rex_stream_follows_v_others_stay_at_warning() -> None:
    import logging

    from rex_stream.cli.log_setup import configure_logging

    configure_logging(verbose=2)
    assert logging.getLogger("rex_stream.engine").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("matplotlib.font_manager").isEnabledFor(logging.INFO)
    configure_logging(quiet=True)
    assert logging.getLogger("rex_stream").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("rex_stream").isEnabledFor(logging.INFO)
