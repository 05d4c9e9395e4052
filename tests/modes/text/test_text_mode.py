"""Text mode over a ``python:`` function that takes strings, and the pieces under it: units,
masking, the store, pictures, determinism and one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import ExplainConfig, explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.cli.main import main
from rex_stream.modes.text_units import split_text, units_of_tokens
from tests.modes.text.lexicon import TEXTS, WEIGHTS, score_texts

SPEC = "python:tests.modes.text.score_module:score"
SEARCH = ["--mode", "text", "--min-box-size", "4", "--chunk-size", "1", "--iters", "8"]


def text_config(**overrides: object) -> ExplainConfig:
    """The settings the text tests share (small boxes and chunks: texts are short)."""
    config = ExplainConfig().with_overrides(iters=8, seed=3, min_box_size=4, chunk_size=1)
    image = replace(config.image, mode="text", **overrides)  # type: ignore[arg-type]
    return replace(config, image=image)


@pytest.fixture
def review(tmp_path: Path) -> Path:
    path = tmp_path / "review.txt"
    path.write_text(TEXTS[0] + "\n", encoding="utf-8")
    return path


def test_words_keep_punctuation_apart_and_render_deletes_with_the_gap() -> None:
    units = split_text("It wasn't good, was it?  Fine.", "word")
    assert units.strings == ["It", "wasn't", "good", ",", "was", "it", "?", "Fine", "."]
    visible = np.ones(len(units), bool)
    visible[2] = False
    assert units.render(visible) == "It wasn't, was it?  Fine."
    assert units.render(visible, "[MASK]") == "It wasn't [MASK], was it?  Fine."
    sentences = split_text("First one. Second one!\nThird", "sentence")
    assert sentences.strings == ["First one.", "Second one!", "Third"]


def test_tokens_map_to_the_unit_they_start_in() -> None:
    units = split_text("unbelievably good film", "word")  # words at 0-12, 13-17, 18-22
    starts = np.array([0, 2, 6, 13, 18, 22])
    assert units_of_tokens(starts, units).tolist() == [0, 0, 0, 1, 2, -1]


def test_the_explanation_lands_on_the_planted_word(review: Path, tmp_path: Path) -> None:
    store = tmp_path / "runs.zarr"
    result = explain_sync(review, SPEC, text_config(), store=store)
    facts = result.summary()
    words = facts["units"]
    assert words[facts["explanation_units"][0]] == "excellent"
    assert facts["explanation_text"] == "excellent"
    assert result.target.classification == 1
    # the map ranks the planted word first
    assert words[int(np.argmax(result.responsibility))] == "excellent"
    group = zarr.open_group(str(store), mode="r")["review"]
    assert list(group.attrs["units"]) == words
    assert group["responsibility"].shape == (len(words),)
    assert group["explanation"][:].astype(bool).tolist() == [w == "excellent" for w in words]
    assert group.attrs["target"]["class"] == 1


def test_same_seed_same_store_whatever_the_batch_size(review: Path, tmp_path: Path) -> None:
    maps = []
    for batch in (1, 5, 64):
        config = text_config()
        config = replace(config, scheduler=replace(config.scheduler, max_batch=batch))
        result = explain_sync(review, SPEC, config, store=tmp_path / f"b{batch}.zarr")
        maps.append((result.responsibility.tobytes(), result.mask.tobytes()))
    assert maps[0] == maps[1] == maps[2]


def test_a_literal_replaces_each_masked_word() -> None:
    seen: list[str] = []

    def spy(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return score_texts(texts)

    backend = PythonBackend(spy, (1,), dtype=object)
    config = text_config(mask_value="[MASK]")
    explain_sync(np.array("the film was superb and the music excellent ."), backend, config)
    masked = [t for t in seen if "[MASK]" in t]
    assert masked and all(len(t.split()) == 9 for t in masked)  # one literal per unit


def test_multi_finds_disjoint_planted_words(tmp_path: Path) -> None:
    text = "excellent plot , slow actors and tired music , wonderful ending and superb cast ."
    config = text_config()
    config = replace(config, extraction=replace(config.extraction, strategy="multi"))
    result = explain_sync(np.array(text), SPEC, config)
    assert result.multi is not None and len(result.multi.kept) >= 2
    words = result.subject.units.strings
    for kept in result.multi.kept:
        chosen = {words[i] for i in np.flatnonzero(kept.mask)}
        assert chosen & set(WEIGHTS)


def test_cli_writes_html_png_and_json(review: Path, tmp_path: Path, capsys) -> None:
    page, picture = tmp_path / "x.html", tmp_path / "x.png"
    args = [str(review), "--backend", SPEC, *SEARCH, "--seed", "1"]
    assert main([*args, "--output", str(page), "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["explanation_text"] == "excellent"
    html = page.read_text(encoding="utf-8")
    assert 'class="unit explanation"' in html and ">excellent</span>" in html
    assert html.count('class="unit') == len(summary["units"])
    assert main([*args, "--output", str(picture), "--complete", "-q"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"   \n", [], "the text is empty"),
        (b"\x00\x01\x02binary", [], "a binary file"),
        (b"caf\xe9 au lait", [], "not UTF-8"),
        (b'{"review": "great"}\n', ["--mode-option", "column=text"], "no field 'text'"),
        (b"text\nfine film\n", ["--mode-option", "row=3"], "row 3 does not exist"),
        (b"good film", ["--mask-value", "attention"], "needs token ids"),
        (b"good film", ["--mode-option", "unit=letter"], "unit='letter'"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys, content: bytes, extra: list[str], message: str
) -> None:
    suffix = ".jsonl" if content.startswith(b"{") else ".csv" if b"text\n" in content else ".txt"
    path = tmp_path / f"input{suffix}"
    path.write_bytes(content)
    out = tmp_path / "never.html"
    code = main([str(path), "--backend", SPEC, *SEARCH, *extra, "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1].startswith("rex-stream: error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_a_model_that_takes_numbers_is_refused(review: Path, tiny_cnn: Path, capsys) -> None:
    assert main([str(review), "--model", str(tiny_cnn), *SEARCH]) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rex-stream: error: ") and "neither strings nor token ids" in err


def test_rows_of_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS), encoding="utf-8")
    config = text_config()
    image = replace(config.image, mode_options={"column": "body", "row": "1"})
    result = explain_sync(path, SPEC, replace(config, image=image))
    assert result.target.classification == 0
    chosen = {result.subject.units.strings[i] for i in np.flatnonzero(result.mask)}
    assert chosen <= {"boring", "awful"} and chosen
