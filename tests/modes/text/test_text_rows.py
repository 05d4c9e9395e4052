"""Many texts through one scheduler: a list of strings from the library (``explain_texts``),
and every row of a ``.jsonl``/``.csv`` file from the CLI, each row its own store group and
page, as the files of a directory are."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import InputFailure, explain_sync, explain_texts_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.api import explain_text_rows_sync
from rex_stream.cli.main import main
from rex_stream.errors import ConfigError
from tests.modes.text.lexicon import TEXTS, WORDS, score_texts
from tests.modes.text.test_text_mode import SEARCH, SPEC, text_config


def spying_backend(batches: list[list[str]]) -> PythonBackend:
    """The lexicon over strings, keeping every batch it was sent."""

    def score(texts: list[str]) -> np.ndarray:
        batches.append(list(texts))
        return score_texts(texts)

    return PythonBackend(score, (1,), dtype=object)


def origin(mutant: str) -> int | None:
    """Which of TEXTS a masked text can only have come from (None: several could)."""
    words = set(WORDS.findall(mutant.lower()))
    found = [i for i, t in enumerate(TEXTS) if words <= set(WORDS.findall(t.lower()))]
    return found[0] if len(found) == 1 else None


def write_reviews(path: Path, rows: list[str], column: str = "text") -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({column: t}) + "\n" for t in rows), encoding="utf-8")
    else:
        lines = [column] + ['"' + t.replace('"', '""') + '"' for t in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_explain_texts_shares_one_scheduler_and_matches_one_by_one(tmp_path: Path) -> None:
    batches: list[list[str]] = []
    config = text_config()
    results = explain_texts_sync(
        TEXTS, spying_backend(batches), config, store=tmp_path / "texts.zarr"
    )
    assert [r.subject.name for r in results] == [f"text-{i}" for i in range(len(TEXTS))]
    mixed = [b for b in batches if len({origin(t) for t in b} - {None}) >= 2]
    assert mixed, "no batch held mutants of two texts: the scheduler was not shared"
    for index, result in enumerate(results):
        alone = explain_sync(np.array(TEXTS[index]), SPEC, config)
        assert np.array_equal(result.responsibility, alone.responsibility)
        assert np.array_equal(result.mask, alone.mask)
    store = zarr.open_group(str(tmp_path / "texts.zarr"), mode="r")
    assert sorted(store.group_keys()) == [f"text-{i}" for i in range(len(TEXTS))]
    assert store["text-2"].attrs["source"] == "text-2"


def test_explain_texts_refuses_one_string_and_numbers() -> None:
    with pytest.raises(ConfigError, match="a list of strings, not one"):
        explain_texts_sync(TEXTS[0], SPEC, text_config())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="takes strings"):
        explain_texts_sync([TEXTS[0], 3], SPEC, text_config())  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="would share the store name"):
        explain_texts_sync(TEXTS[:2], SPEC, text_config(), names=["a", "a"], store="x.zarr")


def test_an_empty_text_fails_alone() -> None:
    results = explain_texts_sync([TEXTS[0], "  ", TEXTS[2]], SPEC, text_config())
    assert isinstance(results[1], InputFailure) and "the text is empty" in str(results[1].error)
    assert results[1].source == "text-1"
    assert not isinstance(results[0], InputFailure) and not isinstance(results[2], InputFailure)


def test_explain_text_rows_picks_rows(tmp_path: Path) -> None:
    path = write_reviews(tmp_path / "reviews.jsonl", TEXTS, column="body")
    config = text_config()
    config = replace(config, image=replace(config.image, mode_options={"column": "body"}))
    results = explain_text_rows_sync(path, SPEC, config, rows=[3, 1])
    assert [r.subject.source for r in results] == [f"{path}#row=3", f"{path}#row=1"]
    assert [r.subject.name for r in results] == ["reviews-row3", "reviews-row1"]
    assert all(r.target.classification == 0 for r in results)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_cli_explains_every_row(tmp_path: Path, capsys, suffix: str) -> None:
    rows = [*TEXTS, "   "]
    path = write_reviews(tmp_path / f"reviews{suffix}", rows, column="review")
    store, pages = tmp_path / "rows.zarr", tmp_path / "pages"
    args = [str(path), "--backend", SPEC, *SEARCH, "--seed", "3"]
    args += ["--mode-option", "column=review", "--store", str(store)]
    code = main([*args, "--output", str(pages), "--json", "-q"])
    captured = capsys.readouterr()
    assert code == 1  # the empty row failed, alone
    summaries = json.loads(captured.out)
    assert len(summaries) == len(rows)
    failed = [s for s in summaries if "error" in s]
    assert [s["input"] for s in failed] == [f"{path}#row=4"]
    assert "the text is empty" in failed[0]["error"]
    err = [line for line in captured.err.splitlines() if line.startswith("rex-stream: error:")]
    assert err == [f"rex-stream: error: {path}#row=4: the text is empty"]
    explained = {s["input"]: s for s in summaries if "error" not in s}
    assert set(explained) == {f"{path}#row={i}" for i in range(len(TEXTS))}
    assert explained[f"{path}#row=0"]["explanation_text"] == "excellent"
    assert sorted(p.name for p in pages.iterdir()) == [
        f"reviews-row{i}.html" for i in range(len(TEXTS))
    ]
    group = zarr.open_group(str(store), mode="r")["reviews-row2"]
    assert group.attrs["source"] == f"{path}#row=2"
    # each row's group is the one a run of that row alone makes
    alone = tmp_path / "alone.zarr"
    assert main([*args[:-2], "--store", str(alone), "--mode-option", "row=2", "-q"]) == 0
    capsys.readouterr()
    single = zarr.open_group(str(alone), mode="r")["reviews-row2"]
    assert single["responsibility"][:].tobytes() == group["responsibility"][:].tobytes()
    # and a second run finds every row complete
    assert main([*args, "--resume", "--json", "-q"]) == 1
    again = [s for s in json.loads(capsys.readouterr().out) if "error" not in s]
    assert len(again) == len(TEXTS)
    assert all(s["stats"]["resumed_iterations"] == 8 for s in again), again


def test_cli_row_mistakes_are_one_line_and_write_nothing(tmp_path: Path, capsys) -> None:
    path = write_reviews(tmp_path / "reviews.jsonl", TEXTS, column="body")
    pages = tmp_path / "pages"
    for extra, message in (
        (["--output", str(pages)], "no field 'text'"),
        (["--mode-option", "column=body", "--output", str(tmp_path / "x.html")], "directory"),
        (["--mode-option", "column=body", "--heatmap", str(pages)], "no separate heatmap"),
    ):
        assert main([str(path), "--backend", SPEC, *SEARCH, *extra]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rex-stream: error: "), err
        assert message in err[0], err
    assert not pages.exists() and not (tmp_path / "x.html").exists()
