"""Class names (--labels, the bundled model's) in every mode's pictures, directory and
evaluate output and plots; evaluation plots that read right (issue 27, items 10 and 11)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.modes.test_spectral import peak_signal, save_peak_model
from tests.modes.test_tabular import FEATURES, save_planted_model

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "rex_stream" / "data"


def _run(*args: str, rc: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if rc is not None:  # SVG text as text, so a test can read the titles
        env["MATPLOTLIBRC"] = str(rc)
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip


def svg_texts(path: Path) -> list[str]:
    """Every piece of text in an SVG that matplotlib wrote with svg.fonttype none."""
    import html

    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)", path.read_text())]


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rc")
    (folder / "matplotlibrc").write_text("svg.fonttype: none\n")
    return folder


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "names.txt"
    path.write_text("\n".join(["absent", "present", *(f"thing {i}" for i in range(2, 10))]) + "\n")
    return path


def test_tabular_and_spectral_pictures_name_the_class(
    tmp_path: Path, rc: Path, names: Path
) -> None:
    row = tmp_path / "row.csv"
    columns = [f"col{i}" for i in range(FEATURES)]
    row.write_text(",".join(columns) + "\n" + ",".join("1.0" for _ in columns) + "\n")
    np.save(tmp_path / "peak.npy", peak_signal())
    cases = [
        (row, save_planted_model(tmp_path / "planted.onnx")),
        (tmp_path / "peak.npy", save_peak_model(tmp_path / "peak.onnx")),
    ]
    for source, model in cases:
        picture = tmp_path / f"{source.stem}.svg"
        out = _run(str(source), "--model", str(model), "--iters", "2", "--labels", str(names),
                   "--output", str(picture), rc=rc)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert any("present (1)" in text for text in svg_texts(picture)), source


def test_directory_summary_names_the_classes(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path, names: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in ("a", "b"):
        (photos / f"{stem}.png").write_bytes(tiny_image.read_bytes())
    out = _run(str(photos), "--model", str(tiny_cnn), "--iters", "1", "--labels", str(names))
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.endswith("queries")]
    assert len(lines) == 2
    for line in lines:
        number = int(re.search(r"\((\d+)\) \(", line).group(1))  # type: ignore[union-attr]
        assert f"{names.read_text().splitlines()[number]} ({number})" in line


def test_evaluate_names_the_class_and_plots_read_right(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path, rc: Path, names: Path
) -> None:
    rng = np.random.default_rng(2)
    one, same = tmp_path / "one.npy", tmp_path / "same.npy"
    np.save(one, rng.random((32, 32)).astype(np.float32))
    np.save(same, np.load(one))  # a tie on every metric
    np.save(tmp_path / "other.npy", rng.random((32, 32)).astype(np.float32))
    plot = tmp_path / "plot.svg"
    metrics = "pixel-flipping:features_in_step=64,irof,road:percentages=10+50+90,sparseness"
    common = [
        "evaluate", str(tiny_image), "--model", str(tiny_cnn), "--labels", str(names),
        "--attribution", f"one={one}", "--attribution", f"same={same}",
        "--attribution", f"other={tmp_path / 'other.npy'}", "--metrics", metrics,
    ]  # fmt: skip
    out = _run(*common, "--plot", str(plot), rc=rc)
    assert out.returncode == 0, out.stderr
    head = out.stdout.splitlines()[0]
    number = int(re.search(r"\((\d+)\)", head).group(1))  # type: ignore[union-attr]
    name = names.read_text().splitlines()[number]
    assert head == f"{tiny_image}: {name} ({number})"
    texts = svg_texts(plot)
    joined = "\n".join(texts)
    # the input's short name, the class named; not the absolute path
    assert f"tiny.png: {name} ({number})" in texts and str(tiny_image) not in joined
    # each panel's arrows follow the metric: IROF's score is ↑ while its curve is better low
    assert any(t.startswith("pixel-flipping") and "score ↓" in t for t in texts), texts
    assert any(t.startswith("irof") and "score ↑" in t and "curve lower" in t for t in texts)
    assert "fraction of features removed" in texts and "% of features imputed" in texts
    # values printed on the ranking, ties shown as ties (one and same share rank 1 or 2)
    as_json = _run(*common, "--json")
    summary = json.loads(as_json.stdout)
    scores = summary["inputs"][0]["attributions"]
    assert summary["inputs"][0]["label"] == name
    shown = f"{scores['one']['sparseness']['score']:.3g}"
    assert texts.count(shown) >= 2  # printed above both tied bars
    ranks = summary["inputs"][0]["ranks"]
    assert ranks["sparseness"]["one"] == ranks["sparseness"]["same"]
    # --json gives each curve's x values: fractions of features, ROAD's percentages
    flipping = scores["one"]["pixel-flipping:features_in_step=64"]
    assert flipping["x"] == [64 * (i + 1) / 1024 for i in range(16)]
    assert len(flipping["x"]) == len(flipping["curve"])
    assert scores["one"]["road:percentages=10+50+90"]["x"] == [10, 50, 90]


def test_the_bundled_model_names_evaluate_classes_by_default(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.random.default_rng(0).random((224, 224)).astype(np.float32))
    out = _run("evaluate", str(BUNDLED / "ladybird.jpg"), "--model",
               str(BUNDLED / "efficientnet-lite0.onnx"), "--attribution", str(tmp_path / "m.npy"),
               "--metrics", "sparseness")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].endswith("ladybug (301)")


def test_analyse_says_which_explanation_and_explains_an_auc_above_one(
    tiny_cnn: Path, tiny_image: Path
) -> None:
    out = _run(str(tiny_image), "--model", str(tiny_cnn), "--iters", "2", "--analyse")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(
        line.startswith("analysis: area") and "(the global explanation)" in line for line in lines
    ), out.stdout
    aucs = re.search(r"insertion AUC ([\d.]+), deletion AUC ([\d.]+)", out.stdout)
    assert aucs is not None
    above = any(float(v) > 1 for v in aucs.groups())
    assert above == ("an AUC above 1" in out.stdout)
