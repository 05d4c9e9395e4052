"""ReX's options on the command line: --multi and friends, end to end, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cli import rex
from tests.onnx_models import save_two_patch_model, two_patch_image


@pytest.fixture(scope="module")
def two_patches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The two-patch model and its picture as a greyscale PNG."""
    folder = tmp_path_factory.mktemp("two")
    model = save_two_patch_model(folder / "two.onnx")
    picture = folder / "two.png"
    Image.fromarray((two_patch_image()[0] * 255).round().astype(np.uint8)).save(picture)
    return model, picture


def _multi_args(model: Path, picture: Path, *extra: str) -> list[str]:
    return [
        str(picture),
        "--model",
        str(model),
        "--iters",
        "8",
        "--seed",
        "5",
        "--multi",
        "8",
        *extra,
    ]


def test_multi_json_lists_every_kept_explanation(
    two_patches: tuple[Path, Path], tmp_path: Path
) -> None:
    model, picture = two_patches
    (tmp_path / "rex.toml").write_text(
        "[causal]\nmin_box_size = 4\n[explanation]\nchunk_size = 2\n"
        "[explanation.spatial]\nspatial_initial_radius = 3\n"
    )
    out = rex(*_multi_args(model, picture, "--json", "--output", "multi.png"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    listed = summary["explanations"]
    assert len(listed) >= 2
    for entry in listed:
        assert 0 < entry["area"] < 1 and len(entry["centre"]) == 2
    assert summary["multi"]["spotlights"] == 8
    composite = np.asarray(Image.open(tmp_path / "multi.png"))
    height, width = composite.shape[:2]  # a titled figure at the picture's aspect ratio
    assert height > 24 and 0.8 < width / height < 1.25


def test_separate_style_writes_one_picture_per_explanation(
    two_patches: tuple[Path, Path], tmp_path: Path
) -> None:
    model, picture = two_patches
    (tmp_path / "rex.toml").write_text(
        "[causal]\nmin_box_size = 4\n[explanation]\nchunk_size = 2\n"
        "[explanation.spatial]\nspatial_initial_radius = 3\n"
        '[rex.visual]\nmulti_style = "separate"\n'
    )
    out = rex(*_multi_args(model, picture, "--output", "exp.png"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "explanations kept" in out.stdout
    assert (tmp_path / "exp_0.png").exists() and (tmp_path / "exp_1.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--multi", "many"], "--multi 'many'"),
        (["--multi", "0"], "at least 1 spotlight"),
        (["--multi", "--permitted-overlap", "1.5"], "--permitted-overlap 1.5"),
    ],
)
def test_bad_multi_options_are_one_line_errors(
    tiny_cnn: Path, tiny_image: Path, args: list[str], message: str
) -> None:
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", *args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rex-stream: error:"), out.stderr
    assert message in lines[0]


def test_permitted_overlap_outside_the_unit_interval_in_rex_toml(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    (tmp_path / "rex.toml").write_text("[explanation.multi]\npermitted_overlap = -0.5\n")
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--multi", cwd=tmp_path)
    assert out.returncode != 0
    assert "permitted_overlap" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_directory_run_draws_multi_and_surfaces_per_input(
    two_patches: tuple[Path, Path], tmp_path: Path
) -> None:
    model, picture = two_patches
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.png").write_bytes(picture.read_bytes())
    (tmp_path / "rex.toml").write_text(
        "[causal]\nmin_box_size = 4\n[explanation]\nchunk_size = 2\n"
        "[explanation.spatial]\nspatial_initial_radius = 3\n"
    )
    out = rex(
        str(folder),
        "--model",
        str(model),
        "--iters",
        "6",
        "--seed",
        "5",
        "--multi",
        "6",
        "--output",
        "pictures",
        "--surface",
        "surface.png",
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    summaries = json.loads(out.stdout)
    assert len(summaries) == 2 and all(len(s["explanations"]) >= 2 for s in summaries)
    surfaces = sorted(tmp_path.glob("surface_*"))
    assert len(surfaces) == 2 and all(p.stat().st_size > 0 for p in surfaces)
    pictures = sorted((tmp_path / "pictures").iterdir())
    assert len(pictures) == 2
    assert all(np.asarray(Image.open(p)).shape[0] > 24 for p in pictures)  # titled figures
