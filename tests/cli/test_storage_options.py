"""``--store`` and ``--storage-option`` alike in every command that writes a store (issue 25's
leftover): ``evaluate``, ``cem``, ``l2x-train`` and ``l2x`` take the main command's flags from
one definition and write to the object store they name (S3 through moto on 127.0.0.1, the
endpoint given only as a storage option; memory:// in this process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream.cli.main import main
from tests.cli.test_cli import _one_line_error, rex
from tests.engine.s3_server import make_bucket, moto_s3, objects_under

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "rex_stream" / "data" / "models"
SPECTRAL = MODELS / "spectral-markers.onnx"
SPECTRUM = MODELS / "spectral-markers-A.npy"
TRAIN = MODELS / "tabular-breast-cancer-train.csv"
STORE_FLAGS = ("--store", "--storage-option", "--overwrite")
CEM_QUICK = ["--model", str(SPECTRAL), "--steps", "3", "--directions", "2", "-q", "--json"]


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_s3() as endpoint:
        make_bucket("runs")
        yield endpoint


def _without_endpoint(endpoint: str) -> tuple[dict[str, str], list[str]]:
    """The environment with no S3 endpoint in it, and the flag that names it instead: a run
    reaches moto only if ``--storage-option`` gets to the store."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    return env, ["--storage-option", f"endpoint_url={endpoint}"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rex_stream.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("command", ["", "evaluate", "cem", "l2x-train", "l2x"])
def test_every_store_writing_command_has_the_same_store_flags(command: str) -> None:
    out = rex(*([command] if command else []), "--help")
    assert out.returncode == 0, out.stderr
    for flag in STORE_FLAGS:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out.stdout), (command, flag)
    assert "s3://bucket/runs.zarr" in out.stdout  # the store's one help text


@pytest.mark.parametrize(
    "arguments",
    [
        ["evaluate", "--metrics", "sparseness", "--attribution", str(SPECTRUM)],
        ["cem"],
    ],
)
def test_a_storage_option_without_a_store_is_one_line(arguments: list[str]) -> None:
    command, *rest = arguments
    out = rex(command, str(SPECTRUM), "--model", str(SPECTRAL), *rest,
              "--storage-option", "anon=true")  # fmt: skip
    _one_line_error(out, "--storage-option needs --store")


def test_cem_writes_to_s3_with_the_endpoint_as_a_storage_option(s3: str) -> None:
    env, option = _without_endpoint(s3)
    store = "s3://runs/cem.zarr"
    first = _run(["cem", str(SPECTRUM), *CEM_QUICK, "--store", store, *option], env)
    assert first.returncode == 0, first.stderr
    assert any("/zarr.json" in o for o in objects_under("runs/cem.zarr"))
    again = _run(["cem", str(SPECTRUM), *CEM_QUICK, "--store", store, "--resume", *option], env)
    assert again.returncode == 0, again.stderr
    before, after = json.loads(first.stdout), json.loads(again.stdout)
    assert after["stats"]["resumed_chains"] == after["stats"]["chains"] > 0
    assert after["pertinent_positive"] == before["pertinent_positive"]


def test_evaluate_writes_to_s3_with_the_endpoint_as_a_storage_option(
    s3: str, tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    env, option = _without_endpoint(s3)
    attribution = tmp_path / "map.npy"
    np.save(attribution, np.random.default_rng(0).random((32, 32)))
    common = ["evaluate", str(tiny_image), "--model", str(tiny_cnn), "--attribution",
              f"rex={attribution}", "--metrics", "sparseness,pixel-flipping", "--json",
              "--store", "s3://runs/evaluation.zarr", *option]  # fmt: skip
    first = _run(common, env)
    assert first.returncode == 0, first.stderr
    assert any(o.endswith("zarr.json") for o in objects_under("runs/evaluation.zarr"))
    again = _run([*common, "--resume"], env)
    assert again.returncode == 0, again.stderr
    scores = lambda out: json.loads(out.stdout)["inputs"][0]  # noqa: E731
    assert scores(again)["resumed"] == 2 and scores(first)["resumed"] == 0
    assert scores(again)["attributions"] == scores(first)["attributions"]


def test_cem_and_l2x_write_to_a_memory_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """In this process (memory:// lives as long as it does), through the command's entry."""
    assert main(["cem", str(SPECTRUM), *CEM_QUICK, "--store", "memory://cli-cem.zarr"]) == 0
    capsys.readouterr()
    root = zarr.open_group("memory://cli-cem.zarr", mode="r")
    assert list(root.group_keys()), "cem wrote nothing to the memory store"
    rows = tmp_path / "rows.npy"
    table = np.loadtxt(TRAIN, delimiter=",", skiprows=1, dtype=np.float32)
    np.save(rows, table[:40])
    one = tmp_path / "row3.npy"
    np.save(one, table[3:4])
    model = MODELS / "tabular-breast-cancer.onnx"
    reading = ["--mode", "tabular", "--mode-option", f"baseline={TRAIN}", "--scores",
               "probabilities", "-q"]  # fmt: skip
    explainer = tmp_path / "e.npz"
    trained = main(["l2x-train", str(rows), "--model", str(model), *reading, "--k", "3",
                    "--epochs", "2", "--max-gap", "1", "--out", str(explainer),
                    "--store", "memory://cli-l2x-train.zarr"])  # fmt: skip
    assert trained == 0
    capsys.readouterr()
    assert "l2x_training" in set(zarr.open_group("memory://cli-l2x-train.zarr").group_keys())
    selected = main(["l2x", str(one), "--explainer", str(explainer), "--json",
                     "--store", "memory://cli-l2x.zarr"])  # fmt: skip
    assert selected == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["store"].startswith("memory://cli-l2x.zarr/")
