"""``rex-stream evaluate`` over a directory carries on past a bad input, and an evaluation
store grows with ``--resume`` (issue 27, item 7), through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _photos(tmp_path: Path, tiny_image: Path) -> tuple[Path, Path, Path]:
    """Three inputs (b.png unreadable), a map for each, a mask for a and b only."""
    photos, maps, masks = tmp_path / "photos", tmp_path / "maps", tmp_path / "masks"
    for folder in (photos, maps, masks):
        folder.mkdir()
    rng = np.random.default_rng(3)
    for stem in ("a", "b", "c"):
        np.save(maps / f"{stem}.npy", rng.random((32, 32)).astype(np.float32))
    (photos / "a.png").write_bytes(tiny_image.read_bytes())
    (photos / "b.png").write_bytes(b"not a picture at all")
    (photos / "c.png").write_bytes(tiny_image.read_bytes())
    for stem in ("a", "b"):
        np.save(masks / f"{stem}.npy", np.pad(np.ones((8, 8)), 12))
    return photos, maps, masks


def test_a_directory_carries_on_past_an_unreadable_input_and_a_missing_mask(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    photos, maps, masks = _photos(tmp_path, tiny_image)
    common = [str(photos), "--model", str(tiny_cnn), "--attribution", f"m={maps}"]
    out = _cli(*common, "--metrics", "sparseness,pointing-game", "--mask", str(masks))
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("rex-stream: error:")]
    assert len(errors) == 2, out.stderr
    assert "b.png" in errors[0] and "c" in errors[1] and "mask" in errors[1]
    assert "a.png: class" in out.stdout  # the good input is scored and shown
    assert "1 of 3 inputs evaluated" in out.stdout
    as_json = _cli(*common, "--metrics", "sparseness,pointing-game", "--mask", str(masks), "--json")
    assert as_json.returncode == 1
    summary = json.loads(as_json.stdout)
    assert [Path(i["input"]).name for i in summary["inputs"]] == ["a.png"]
    failed = {Path(f["input"]).name: f["error"] for f in summary["failures"]}
    assert set(failed) == {"b.png", "c.png"} and "mask" in failed["c.png"]


def test_a_single_bad_input_is_still_one_line_and_exit_2(tiny_cnn: Path, tmp_path: Path) -> None:
    bad = tmp_path / "b.png"
    bad.write_bytes(b"nope")
    np.save(tmp_path / "m.npy", np.ones((32, 32), np.float32))
    out = _cli(str(bad), "--model", str(tiny_cnn), "--attribution", str(tmp_path / "m.npy"),
               "--metrics", "sparseness")  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("rex-stream: error:")


def test_a_store_grows_with_resume_and_refuses_a_changed_map(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    np.save(first, rng.random((32, 32)).astype(np.float32))
    np.save(second, rng.random((32, 32)).astype(np.float32))
    store = tmp_path / "eval.zarr"
    common = [str(tiny_image), "--model", str(tiny_cnn), "--store", str(store), "--json"]
    pf = "pixel-flipping:features_in_step=64"
    one = _cli(*common, "--attribution", f"one={first}", "--metrics", f"{pf},sparseness")
    assert one.returncode == 0, one.stderr
    grown = _cli(
        *common, "--resume", "--attribution", f"one={first}", "--attribution", f"two={second}",
        "--metrics", f"{pf},sparseness,complexity",
    )  # fmt: skip
    assert grown.returncode == 0, grown.stderr
    result = json.loads(grown.stdout)
    # only the new pairs were computed: one × (pf, sparseness) came back from the store
    assert result["inputs"][0]["resumed"] == 2
    fresh = _cli(
        str(tiny_image), "--model", str(tiny_cnn), "--json", "--attribution", f"one={first}",
        "--attribution", f"two={second}", "--metrics", f"{pf},sparseness,complexity",
    )  # fmt: skip
    expected = json.loads(fresh.stdout)
    assert result["inputs"][0]["attributions"] == expected["inputs"][0]["attributions"]
    # a new pixel-flipping costs queries; the grown run sent fewer than a fresh one
    assert result["queries"] < expected["queries"]
    # asking a subset of what the store holds computes nothing
    subset = _cli(*common, "--resume", "--attribution", f"two={second}", "--metrics", "complexity")
    assert subset.returncode == 0, subset.stderr
    assert json.loads(subset.stdout)["inputs"][0]["resumed"] == 1
    # a changed map file under a stored name is refused, in one line
    np.save(first, rng.random((32, 32)).astype(np.float32))
    changed = _cli(*common, "--resume", "--attribution", f"one={first}", "--metrics", pf)
    assert changed.returncode != 0 and "Traceback" not in changed.stderr
    assert "rex-stream: error:" in changed.stderr and "different settings" in changed.stderr
