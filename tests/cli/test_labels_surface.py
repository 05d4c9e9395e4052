"""--labels (and the bundled model's ImageNet names) and --surface, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from rex_stream.labels import class_name, imagenet_labels, labels_for_model
from tests.cli.test_cli import ROOT, rex

BUNDLED = ROOT / "rex_stream" / "data"


def test_imagenet_names_ship_in_class_order() -> None:
    names = imagenet_labels()
    assert len(names) == 1000
    assert names[301] == "ladybug" and names[84] == "peacock" and names[0] == "tench"
    assert labels_for_model(str(BUNDLED / "efficientnet-lite0.onnx")) == names
    assert labels_for_model("other.onnx") is None
    assert class_name(301, names) == "ladybug (301)" and class_name(301, None) == "class 301"


def test_label_file_names_the_class(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"thing {i}" for i in range(10)) + "\n")
    args = [str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "-n", "--labels"]
    out = rex(*args, str(labels), "--json")
    assert out.returncode == 0, out.stderr
    target = json.loads(out.stdout)["target"]
    assert target["label"] == f"thing {target['class']}"
    human = rex(*args, str(labels))
    assert f"thing {target['class']} ({target['class']})" in human.stdout.splitlines()[0]
    missing = rex(*args, str(tmp_path / "nope.txt"))
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        f"rex-stream: error: --labels {tmp_path / 'nope.txt'}: no such file"
    ]


def test_bundled_model_says_ladybug() -> None:
    out = rex(
        str(BUNDLED / "ladybird.jpg"),
        "--model",
        str(BUNDLED / "efficientnet-lite0.onnx"),
        "--iters",
        "1",
        "--search-limit",
        "14",
        "-n",
    )
    assert out.returncode == 0, out.stderr
    assert "ladybug (301)" in out.stdout.splitlines()[0]


def test_surface_is_saved(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    surface = tmp_path / "surface.png"
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "2", "--surface", str(surface))
    assert out.returncode == 0, out.stderr
    with Image.open(surface) as picture:
        assert picture.size[0] > 100 and picture.size[1] > 100


def test_bare_output_heatmap_and_surface_write_default_files(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """ReX shows them; without a display rex-stream writes <input>-….png and says where."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    command = [sys.executable, "-m", "rex_stream.cli", str(tiny_image), "--model"]
    out = subprocess.run(
        [*command, str(tiny_cnn), "--iters", "2", "--output", "--heatmap", "--surface"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    for name in ("tiny-explanation.png", "tiny-heatmap.png", "tiny-surface.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.size[0] > 100
        assert name in out.stderr
