"""Directory runs give every input its own store group and picture, whatever its file name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest
import zarr
from PIL import Image

from rex_stream import ConfigError, StoreError
from rex_stream.cli.main import main
from rex_stream.naming import check_name, input_name
from rex_stream.runs.many import explain_many

#: Awkward names, each next to one it used to collide with or crash on.
AWKWARD = [
    "..png",  # stem "."
    "...png",  # stem ".."
    "a.png",
    "a.jpg",  # same stem as a.png
    "x/y.png",
    "x_y.png",  # x/y.png flattened
    "x__y.png",
    "猫.png",
    "犬.png",  # non-ASCII names of equal length
    "with space.png",
    "new\nline.png",
    "-dash.png",
    ".hidden.png",
    "dot.ted.name.png",
]


def _write_inputs(root: Path) -> list[Path]:
    """One distinct small picture per awkward name."""
    paths = []
    for number, name in enumerate(AWKWARD):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(number)
        pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        kind = "JPEG" if name.endswith(".jpg") else "PNG"
        Image.fromarray(pixels).save(path, format=kind, quality=95)
        paths.append(path)
    return paths


def test_names_are_distinct_stable_and_valid() -> None:
    names = [input_name(Path(n)) for n in AWKWARD]
    assert len(set(names)) == len(names)
    assert names == [input_name(Path(n)) for n in AWKWARD]  # a function of the path alone
    assert [check_name(n) for n in names] == names
    assert input_name(Path("a.png")) == "a.png"  # plain names stay readable
    assert input_name(Path("cats/tom.png")) == "cats__tom.png"
    assert input_name(Path("cats__tom.png")) != "cats__tom.png"
    for name in names:
        assert "/" not in name and "\n" not in name and name not in (".", "..")
        assert not name.startswith(("_", "-", "."))
        assert len(name.encode()) + len("-heatmap.png") < 255
    assert input_name(Path("a" * 300 + ".png")) != input_name(Path("a" * 301 + ".png"))


@pytest.mark.parametrize("bad", [".", "..", "a/b", "__x", "-x", "x~y", ""])
def test_explicit_names_are_checked(bad: str) -> None:
    with pytest.raises(StoreError, match="cannot name a store group"):
        check_name(bad)


def test_directory_run_keeps_every_input_apart(
    tiny_cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = _write_inputs(tmp_path / "in")
    store, pictures = tmp_path / "s.zarr", tmp_path / "pictures"
    args = [str(tmp_path / "in"), "--model", str(tiny_cnn), "--iters", "2", "--seed", "5"]
    args += ["--min-box-size", "8", "--store", str(store), "--output", str(pictures), "--json"]
    assert main(args) == 0, capsys.readouterr().err
    summaries = json.loads(capsys.readouterr().out)
    assert len(summaries) == len(inputs)
    root = zarr.open_group(str(store), mode="r")
    groups = sorted(root.group_keys())
    assert len(groups) == len(inputs)
    by_source = {root[g].attrs["source"]: root[g] for g in groups}
    assert sorted(by_source) == sorted(str(p) for p in inputs)  # the original path is kept
    assert len({g.attrs["settings"]["input"] for g in by_source.values()}) == len(inputs)
    assert len(list(pictures.iterdir())) == len(inputs)
    # the same run again resumes every group (names are stable), nothing mixed
    assert main([*args, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert all(s["stats"]["resumed_iterations"] == 2 for s in again)
    for path in inputs:
        group = by_source[str(path)]
        alone = tmp_path / "alone.zarr"
        solo = [str(path), "--model", str(tiny_cnn), "--iters", "2", "--seed", "5"]
        assert main([*solo, "--min-box-size", "8", "--store", str(alone), "--overwrite"]) == 0
        capsys.readouterr()
        solo_group = next(iter(zarr.open_group(str(alone), mode="r").groups()))[1]
        assert np.array_equal(group["responsibility"][:], solo_group["responsibility"][:])
        assert group.attrs["settings"] == solo_group.attrs["settings"]
        shutil.rmtree(alone)


def test_explain_many_refuses_shared_names(tiny_cnn: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "one" / "a.png", tmp_path / "two" / "a.png"
    for path in (first, second):
        path.parent.mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    with pytest.raises(ConfigError, match=r"share the store name 'a\.png'"):
        anyio.run(lambda: explain_many([first, second], str(tiny_cnn), store=tmp_path / "s"))
