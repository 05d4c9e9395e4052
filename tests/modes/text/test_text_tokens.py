"""Text mode through a local ``tokenizers`` file and an ONNX model over token ids."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rex_stream import explain_sync
from rex_stream.adapters.onnx import OnnxBackend
from rex_stream.cli.main import main
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.inputs import named_inputs
from tests.modes.text.lexicon import (
    TEXTS,
    save_string_model,
    save_token_model,
    save_tokenizer,
)
from tests.modes.text.test_text_mode import SEARCH, SPEC, text_config


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text-models")
    return {
        "tokenizer": save_tokenizer(folder / "tokenizer.json"),
        "model": save_token_model(folder / "lexicon.onnx", 32),
        "types": save_token_model(folder / "lexicon-types.onnx", 32, token_types=True),
        "variable": save_token_model(folder / "lexicon-any.onnx", None),
        "strings": save_string_model(folder / "strings.onnx"),
    }


def token_config(tokenizer: Path, **options: str):
    config = text_config()
    image = replace(config.image, mode_options={"tokenizer": str(tokenizer), **options})
    return replace(config, image=image)


def test_onnx_over_token_ids_matches_the_string_route(parts, tmp_path: Path) -> None:
    text = np.array(TEXTS[2])
    by_tokens = explain_sync(text, str(parts["model"]), token_config(parts["tokenizer"]))
    by_strings = explain_sync(text, SPEC, text_config())
    assert by_tokens.subject.units.strings == by_strings.subject.units.strings
    assert np.array_equal(by_tokens.responsibility, by_strings.responsibility)
    assert np.array_equal(by_tokens.mask, by_strings.mask)
    chosen = {by_tokens.subject.units.strings[i] for i in np.flatnonzero(by_tokens.mask)}
    assert chosen and chosen <= {"wonderful", "superb"}


@pytest.mark.parametrize("masking", ["attention", "mask-token", "[UNK]", "delete"])
def test_every_masking_finds_the_planted_word(parts, masking: str) -> None:
    config = token_config(parts["tokenizer"])
    config = replace(config, image=replace(config.image, mask_value=masking))
    result = explain_sync(np.array(TEXTS[0]), str(parts["types"]), config)
    words = result.subject.units.strings
    assert [words[i] for i in np.flatnonzero(result.mask)] == ["excellent"]


def test_masking_a_word_masks_its_tokens(parts) -> None:
    backend = OnnxBackend(parts["types"], BackendSettings())
    config = token_config(parts["tokenizer"])
    config = replace(config, image=replace(config.image, mask_value="attention"))
    from rex_stream.modes import load_subject

    subject = load_subject(np.array("superb film , superb !"), backend.info, config)
    row = np.zeros(1, backend.info.dtype)
    subject.fill_mask(row, np.array([False, True, True, True, True]))
    inputs = named_inputs(row[:, None])
    assert inputs["attention_mask"][0, :7].tolist() == [1, 0, 1, 1, 1, 1, 1]
    assert inputs["attention_mask"][0, 7:].sum() == 0
    assert set(inputs["token_type_ids"].ravel().tolist()) == {0}
    scores = backend.infer_blocking(row[:, None])
    assert scores[0].tolist() == [-1.5, 1.5]


def test_tokens_as_units(parts) -> None:
    result = explain_sync(
        np.array(TEXTS[1]), str(parts["model"]), token_config(parts["tokenizer"], unit="token")
    )
    units = result.subject.units.strings
    assert units[:3] == ["It", "is", "a"] and units[-1] == "."  # tokens, no [CLS]/[SEP]
    assert {units[i].lower() for i in np.flatnonzero(result.mask)} <= {"boring", "awful"}


def test_long_texts_are_refused_or_truncated(parts, caplog) -> None:
    long_text = np.array(" ".join(["the film was slow"] * 10) + " but excellent")
    settings = BackendSettings(input_shape=(16,))
    backend = OnnxBackend(parts["variable"], settings)
    assert backend.info.dtype["input_ids"].shape == (16,)
    with pytest.raises(Exception, match="44 tokens, but the model takes 16"):
        explain_sync(long_text, backend, token_config(parts["tokenizer"]))
    result = explain_sync(
        np.array("excellent " + " ".join(["the film was slow"] * 10)),
        backend,
        token_config(parts["tokenizer"], truncate="true"),
    )
    assert len(result.subject.units) == 14  # [CLS], 14 words, [SEP]
    assert result.subject.units.strings[0] == "excellent" and result.target.classification == 1
    assert result.summary()["truncated"] is True
    assert "truncated to the model's 16 tokens" in caplog.text


def test_a_model_over_strings_gets_strings(parts) -> None:
    backend = OnnxBackend(parts["strings"], BackendSettings())
    assert backend.info.dtype == np.dtype(object) and backend.info.input_shape == (1,)
    batch = np.array([["a text"], ["another"]], dtype=object)
    assert backend.infer_blocking(batch).shape == (2, 2)


def test_bad_tokenizer_and_missing_tokenizer_are_one_line(parts, tmp_path: Path, capsys) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXTS[0], encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    model = str(parts["model"])
    for extra, message in (
        (["--tokenizer", str(broken)], "not a tokenizer.json file"),
        (["--mode-option", f"tokenizer={tmp_path / 'none.json'}"], "no such file"),
        ([], "give the tokenizer with --tokenizer"),
    ):
        assert main([str(text), "--model", model, *SEARCH, *extra]) != 0
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("rex-stream: error: ") and message in err, err


def test_cli_with_a_tokenizer(parts, tmp_path: Path, capsys) -> None:
    import json

    text = tmp_path / "t.txt"
    text.write_text(TEXTS[0], encoding="utf-8")
    args = [
        str(text),
        "--model",
        str(parts["model"]),
        *SEARCH,
        "--tokenizer",
        str(parts["tokenizer"]),
    ]
    assert main([*args, "--mask-value", "attention", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["explanation_text"] == "excellent"
