"""CEM and L2X pictures name a table's features by column and carry a colour bar of the
region values (issue 27, item 13); so do their summaries, in JSON and on the terminal."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from rex_stream import CemConfig, ExplainConfig, explain_cem_sync
from rex_stream.cem.config import CemKind
from rex_stream.cli.main import main
from rex_stream.config import ScoreKind
from rex_stream.pictures.methods import save_selection, save_solution

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
TABLE = MODELS / "tabular-breast-cancer-test.csv"
TRAIN = MODELS / "tabular-breast-cancer-train.csv"
MODEL = ["--model", str(MODELS / "tabular-breast-cancer.onnx"), "--scores", "probabilities"]
READING = ["--mode-option", "drop=label", "--mode-option", f"baseline={TRAIN}"]
COLUMNS = TABLE.read_text().splitlines()[0].split(",")[:-1]


def _svg(draw, path: Path) -> str:  # type: ignore[no-untyped-def]
    """What ``draw(path)`` writes as SVG text (its words kept as text)."""
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        draw(path)
    return path.read_text().replace("&#37;", "%")


def _row_config(row: int) -> ExplainConfig:
    config = ExplainConfig()
    options = {"row": str(row), "drop": "label", "baseline": str(TRAIN)}
    return replace(
        config,
        image=replace(config.image, mode="tabular", mode_options=options),
        scoring=replace(config.scoring, scores=ScoreKind.PROBABILITIES),
    )


def test_a_tabular_cem_picture_and_summary_name_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cem = CemConfig(steps=60, kind=CemKind.PERTINENT_NEGATIVE)
    model = str(MODELS / "tabular-breast-cancer.onnx")
    (result,) = explain_cem_sync([str(TABLE)], model, cem, _row_config(3))
    named = result.summary()["pertinent_negative"]["features"]
    mask = np.asarray(result.mask).reshape(-1)
    assert named == [COLUMNS[i] for i in np.argsort(-mask, kind="stable") if mask[i] > 0.5]
    assert named
    drawn = _svg(lambda p: save_solution(result, p), tmp_path / "pn.svg")
    for column in named:
        assert f"{column} = " in drawn
    assert "region value" in drawn  # the colour bar
    assert "share of the region moved toward the reference" in drawn
    command = ["cem", str(TABLE), *MODEL, "--mode", "tabular", *READING]
    picture = tmp_path / "pn.png"
    code = main([*command, "--mode-option", "row=3", "--kind", "pn", "--steps", "60", "-q",
                 "--output", str(picture)])  # fmt: skip
    assert code == 0 and picture.stat().st_size > 0
    assert f"features: {', '.join(named)}" in capsys.readouterr().out


def test_an_image_cem_picture_carries_a_colour_bar(tmp_path: Path) -> None:
    digit = (np.load(MODELS / "digits-test.npy")[3, None] / 16.0).astype(np.float32)
    (result,) = explain_cem_sync([digit], str(MODELS / "digits-mlp.onnx"), CemConfig(steps=30))
    assert "features" not in result.summary()["pertinent_positive"]
    drawn = _svg(lambda p: save_solution(result, p), tmp_path / "pp.svg")
    assert "share of the region kept (1 = all of it)" in drawn and "region values" in drawn
    texts = {text.strip() for text in re.findall(r"<text[^>]*>([^<]*)</text>", drawn)}
    numbers = {text for text in texts if re.fullmatch(r"[\d.]+", text)}
    assert {"0.0", "1.0"} <= numbers and len(numbers) >= 3  # the fixed 0–1 scale
    assert all(len(n.partition(".")[2]) <= 2 for n in numbers), numbers  # round ticks


def test_a_tabular_l2x_picture_and_summary_name_the_selected_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rex_stream.api.synchronous import explain_l2x_sync
    from rex_stream.runs.l2x import reading_config

    explainer = tmp_path / "explainer.npz"
    train = ["l2x-train", str(TRAIN), *MODEL, "--mode-option", f"baseline={TRAIN}", "--k", "3"]
    assert main([*train, "--epochs", "4", "--max-gap", "1", "--out", str(explainer)]) == 0
    capsys.readouterr()
    select = ["l2x", str(TABLE), *READING[:2], "--mode-option", "row=5"]
    assert main([*select, "--explainer", str(explainer), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    chosen = summary["selected_features"]
    assert len(chosen) == 3 and chosen == [COLUMNS[i] for i in sorted(summary["selected_regions"])]
    assert main([*select, "--explainer", str(explainer)]) == 0
    assert f"features {', '.join(chosen)}" in capsys.readouterr().out
    from rex_stream.l2x import Explainer

    loaded = Explainer.load(explainer)
    config = reading_config(loaded)
    options = {**config.image.mode_options, "row": "5", "drop": "label"}
    config = replace(config, image=replace(config.image, mode_options=options))
    result = explain_l2x_sync(str(TABLE), loaded, config=config)
    assert result.summary()["selected_features"] == chosen
    drawn = _svg(lambda p: save_selection(result.subject, result.selection, "L2X", p),
                 tmp_path / "l2x.svg")  # fmt: skip
    assert all(f"{column} = " in drawn for column in chosen)
    assert "selected (1) or not (0)" in drawn and "region value" in drawn
