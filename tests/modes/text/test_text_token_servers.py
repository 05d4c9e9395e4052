"""Token ids to servers: a local ``tokenizers`` file, and INT64 ``input_ids``,
``attention_mask`` and ``token_type_ids`` sent to an Open Inference Protocol v2 endpoint (JSON
and binary) and to a real Triton (gRPC, HTTP, and its HTTP side as a v2 endpoint). Every route
gives the very store the ``python:`` route over strings gives."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream import explain
from rex_stream.cli.main import main
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import InputError
from tests.modes.text.lexicon import TEXTS, save_tokenizer, vocabulary
from tests.modes.text.test_text_mode import SEARCH, SPEC, text_config
from tests.modes.text.test_text_servers import explain_to_store, stored

IDS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")


def explain_tokens(
    text: str,
    backend: str,
    tokenizer: Path,
    store: Path | None = None,
    masking: str = "delete",
    length: int | None = None,
    **options: str,
):
    """Explain ``text`` through ``backend`` with token ids from ``tokenizer``."""
    config = text_config(mask_value=masking)
    image = replace(config.image, mode_options={"tokenizer": str(tokenizer)})
    settings = BackendSettings(
        options=options, input_shape=None if length is None else (length,), text_input=True
    )
    run = partial(explain, np.array(text), backend, replace(config, image=image), store=store)
    return anyio.run(partial(run, backend_settings=settings))


def planted(result) -> list[str]:
    words = result.subject.units.strings
    return [words[i] for i in np.flatnonzero(result.mask)]


@pytest.mark.parametrize("protocol", ["v2-json", "v2-binary"])
def test_oip_v2_token_ids_give_the_python_store(
    app, tokenizer: Path, tmp_path: Path, protocol: str
) -> None:
    explain_to_store(TEXTS[1], SPEC, tmp_path / "python.zarr")
    url = f"{app.base_url}/v2/models/lexicon-ids"
    before = len(app.tokens.get(protocol, []))
    explain_tokens(TEXTS[1], url, tokenizer, tmp_path / "ids.zarr", protocol=protocol)
    assert stored(tmp_path / "ids.zarr") == stored(tmp_path / "python.zarr")
    sent = app.tokens[protocol][before:]
    assert sent and all(set(batch) == set(IDS) for batch in sent)
    first = sent[0]
    assert first["input_ids"].dtype == np.int64
    assert first["input_ids"].shape[1] == 128  # the server's length varies: the default
    vocab = vocabulary()
    assert first["input_ids"][0, 0] == vocab["[CLS]"]  # the tokenizer's own ids travel
    assert not any(batch["token_type_ids"].any() for batch in sent)


def test_oip_v2_attention_masking_sends_zeros_and_finds_the_words(
    app, tokenizer: Path, tmp_path: Path
) -> None:
    url = f"{app.base_url}/v2/models/lexicon-ids"
    before = len(app.tokens.get("v2-binary", []))
    result = explain_tokens(
        TEXTS[0], url, tokenizer, masking="attention", length=24, protocol="v2-binary"
    )
    assert planted(result) == ["excellent"]
    sent = app.tokens["v2-binary"][before:]
    assert all(batch["input_ids"].shape[1] == 24 for batch in sent)
    # attention masking: the ids stay, some real tokens are hidden by attention 0
    full = sent[0]["input_ids"][0]
    hidden = [
        batch["attention_mask"][i] == 0
        for batch in sent
        for i in range(len(batch["input_ids"]))
        if np.array_equal(batch["input_ids"][i], full)
    ]
    assert any((h & (full != 0)).any() for h in hidden)


def test_a_token_server_without_a_tokenizer_is_one_error(app, tmp_path: Path, capsys) -> None:
    url = f"{app.base_url}/v2/models/lexicon-ids"
    with pytest.raises(InputError, match="give the tokenizer with --tokenizer"):
        explain_to_store(TEXTS[0], url, tmp_path / "none.zarr")
    text = tmp_path / "t.txt"
    text.write_text(TEXTS[0], encoding="utf-8")
    assert main([str(text), "--backend", url, *SEARCH, "--input-shape", "16"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rex-stream: error: "), err
    assert not (tmp_path / "none.zarr").exists()


def test_a_contradicting_length_is_one_error(app, tokenizer: Path, tmp_path: Path) -> None:
    """A length of the server's own is not overridden by --input-shape: the metadata wins."""
    from rex_stream.engine.inputs import TokenInput, token_dtype
    from rex_stream.errors import ConfigError

    fields = [TokenInput("input_ids", np.dtype(np.int64), 32)]
    assert token_dtype(fields, None, "m")["input_ids"].shape == (32,)
    with pytest.raises(ConfigError, match="--input-shape 16 contradicts m, which takes 32"):
        token_dtype(fields, (16,), "m")


@pytest.mark.triton
@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_triton_token_ids_give_the_python_store(
    triton, tokenizer: Path, tmp_path: Path, scheme: str
) -> None:
    explain_to_store(TEXTS[2], SPEC, tmp_path / "python.zarr")
    url = triton.grpc_url if scheme == "triton" else triton.http_url
    backend = f"{scheme}://{url}/lexicon-ids"
    result = explain_tokens(TEXTS[2], backend, tokenizer, tmp_path / "ids.zarr", length=32)
    assert stored(tmp_path / "ids.zarr") == stored(tmp_path / "python.zarr")
    assert set(planted(result)) <= {"wonderful", "superb"} and planted(result)
    assert result.stats.mean_batch > 1
    assert result.model == "lexicon-ids"


@pytest.mark.triton
@pytest.mark.parametrize("masking", ["attention", "mask-token"])
def test_triton_token_maskings_find_the_planted_word(triton, tokenizer: Path, masking: str) -> None:
    backend = f"triton://{triton.grpc_url}/lexicon-ids"
    result = explain_tokens(TEXTS[0], backend, tokenizer, masking=masking, length=32)
    assert planted(result) == ["excellent"]


@pytest.mark.triton
def test_triton_http_as_a_v2_token_endpoint(triton, tokenizer: Path, tmp_path: Path) -> None:
    explain_to_store(TEXTS[3], SPEC, tmp_path / "python.zarr")
    url = f"http://{triton.http_url}/v2/models/lexicon-ids"
    explain_tokens(TEXTS[3], url, tokenizer, tmp_path / "oip.zarr", protocol="v2-binary")
    assert stored(tmp_path / "oip.zarr") == stored(tmp_path / "python.zarr")


@pytest.mark.triton
def test_triton_cli_with_a_tokenizer(triton, tokenizer: Path, tmp_path: Path, capsys) -> None:
    import json

    text = tmp_path / "review.txt"
    text.write_text(TEXTS[0], encoding="utf-8")
    backend = f"triton://{triton.grpc_url}/lexicon-ids"
    args = [str(text), "--backend", backend, *SEARCH, "--tokenizer", str(tokenizer)]
    assert main([*args, "--input-shape", "32", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["explanation_text"] == "excellent"
