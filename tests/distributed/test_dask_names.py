"""Item 18 of issue 27: ``--dask`` names a single file's store group as a plain run does
(``tiny.png`` → ``tiny``), so ``--resume --dask`` on a finished plain store explains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import rex

pytest.importorskip("distributed", reason="the dask extra is not installed")


def test_a_plain_store_resumes_under_dask(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    store = tmp_path / "runs.zarr"
    common = [str(tiny_image), "--model", str(tiny_cnn), "--iters", "3", "--seed", "2", "-n", "-q"]
    plain = rex(*common, "--store", str(store), "--json")
    assert plain.returncode == 0, plain.stderr
    assert (store / "tiny").is_dir()
    again = rex(*common, "--store", str(store), "--resume", "--dask", "local:1", "--json")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == ["tiny"]
    (summary,) = json.loads(again.stdout)
    assert summary["store"].endswith("tiny")
    assert summary["stats"]["resumed_iterations"] == 3  # nothing explained again
