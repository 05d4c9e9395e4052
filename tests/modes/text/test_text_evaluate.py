"""``rex-stream evaluate`` on text stores: the removal metrics over units (deletion, insertion,
pixel-flipping …), the map metrics, the same scores over strings and over token ids, and one
line for a metric that needs values a text does not have."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rex_stream import evaluate_sync, explain_sync
from rex_stream.cli.main import main
from rex_stream.errors import InputError
from tests.modes.text.lexicon import TEXTS, save_token_model, save_tokenizer
from tests.modes.text.test_text_mode import SPEC, text_config

METRICS = "deletion,insertion,pixel-flipping,region-perturbation:patch_size=2,sparseness"


@pytest.fixture
def explained(tmp_path: Path):
    """A review (its planted word: ``excellent``) explained into a store."""
    review = tmp_path / "review.txt"
    review.write_text(TEXTS[0], encoding="utf-8")
    store = tmp_path / "runs.zarr"
    result = explain_sync(review, SPEC, text_config(), store=store)
    return review, store, result


def test_deletion_and_insertion_over_units_favour_the_map(explained, tmp_path: Path) -> None:
    review, store, result = explained
    words = result.subject.units.strings
    planted = words.index("excellent")
    worst = np.arange(len(words), dtype=np.float32)  # the planted word ranked last
    worst[planted] = -1.0
    np.save(tmp_path / "worst.npy", worst)
    evaluation = evaluate_sync(
        review,
        SPEC,
        {"rex": store, "worst": tmp_path / "worst.npy"},
        METRICS,
        config=text_config(),
    )
    scores = {name: evaluation.inputs[0].results[name] for name in ("rex", "worst")}
    # removing the planted word first leaves a text the model finds neutral (0.5) at once
    deletion = scores["rex"]["deletion"].curve
    assert deletion is not None and np.allclose(deletion[1:], 0.5)
    assert scores["rex"]["deletion"].score < scores["worst"]["deletion"].score
    assert scores["rex"]["insertion"].score > scores["worst"]["insertion"].score
    assert scores["rex"]["pixel-flipping"].score < scores["worst"]["pixel-flipping"].score
    assert evaluation.inputs[0].features == len(words)
    assert scores["rex"]["sparseness"].score > scores["worst"]["sparseness"].score


def test_strings_and_token_ids_score_alike(explained, tmp_path: Path) -> None:
    review, store, _ = explained
    tokenizer = save_tokenizer(tmp_path / "tokenizer.json")
    model = save_token_model(tmp_path / "lexicon.onnx", 32)
    by_strings = evaluate_sync(review, SPEC, {"rex": store}, METRICS, config=text_config())
    config = text_config()
    config = replace(
        config, image=replace(config.image, mode_options={"tokenizer": str(tokenizer)})
    )
    by_tokens = evaluate_sync(
        review, str(model), {"rex": store}, METRICS, config=config, allow_mismatch=True
    )
    for metric in METRICS.split(","):  # a metric's label is its spelling
        assert by_tokens.score("rex", metric) == pytest.approx(by_strings.score("rex", metric))


def test_metrics_that_need_values_are_one_line(explained, capsys) -> None:
    review, store, _ = explained
    with pytest.raises(InputError, match="no values to perturb"):
        evaluate_sync(review, SPEC, {"rex": store}, "infidelity", config=text_config())
    args = ["evaluate", str(review), "--backend", SPEC, "--mode", "text"]
    args += ["--attribution", f"rex={store}"]
    for metrics, message in (
        ("pixel-flipping:perturb_baseline=mean", "leave perturb_baseline=black"),
        ("monotonicity-correlation", "no values to perturb"),
    ):
        assert main([*args, "--metrics", metrics]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("rex-stream: error: ") and message in err[-1], err
        assert "Traceback" not in "\n".join(err)


def test_evaluate_cli_on_a_text_store(explained, capsys) -> None:
    import json

    review, store, _ = explained
    args = ["evaluate", str(review), "--backend", SPEC, "--mode", "text"]
    args += ["--attribution", f"rex={store}", "--metrics", "deletion,insertion", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    scores = summary["inputs"][0]["attributions"]["rex"]
    assert scores["deletion"]["score"] < scores["insertion"]["score"]
