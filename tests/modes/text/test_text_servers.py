"""Text mode against servers that tokenise: an Open Inference Protocol v2 endpoint (BYTES as
JSON and binary), a KServe v1 endpoint (``instances`` of strings) and a real Triton (BYTES
[N, 1] over gRPC and HTTP). Every route gives the very store the ``python:`` route gives."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import numpy as np
import pytest
import zarr

from rex_stream import explain
from rex_stream.engine.backend import BackendSettings
from tests.modes.text.lexicon import TEXTS
from tests.modes.text.test_text_mode import SPEC, text_config


def explain_to_store(text: str, backend: str, store: Path, **options: str):
    settings = BackendSettings(options=options, text_input=True)
    run = partial(explain, np.array(text), backend, text_config(), store=store)
    return anyio.run(partial(run, backend_settings=settings))


def stored(store: Path) -> tuple[bytes, bytes, list[str]]:
    group = zarr.open_group(str(store), mode="r")["text"]
    return (
        group["responsibility"][:].tobytes(),
        group["explanation"][:].tobytes(),
        list(group.attrs["units"]),
    )


@pytest.mark.parametrize("protocol", ["v2-json", "v2-binary"])
def test_oip_v2_bytes_gives_the_python_store(app, tmp_path: Path, protocol: str) -> None:
    reference = explain_to_store(TEXTS[2], SPEC, tmp_path / "python.zarr")
    url = f"{app.base_url}/v2/models/lexicon"
    result = explain_to_store(TEXTS[2], url, tmp_path / "v2.zarr", protocol=protocol)
    assert stored(tmp_path / "v2.zarr") == stored(tmp_path / "python.zarr")
    assert result.target == reference.target
    sent = app.texts[protocol]
    assert TEXTS[2] in sent and "" in sent  # the whole text, and the baseline (all masked)
    assert any(t == "wonderful" for t in sent)  # a mutant showing one word


def test_kserve_v1_instances_of_strings(app, tmp_path: Path) -> None:
    explain_to_store(TEXTS[1], SPEC, tmp_path / "python.zarr")
    url = f"{app.base_url}/v1/models/lexicon:predict"
    explain_to_store(TEXTS[1], url, tmp_path / "v1.zarr", protocol="rows")
    assert stored(tmp_path / "v1.zarr") == stored(tmp_path / "python.zarr")
    assert TEXTS[1] in app.texts["v1"]


@pytest.mark.triton
@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_triton_bytes_gives_the_python_store(triton, tmp_path: Path, scheme: str) -> None:
    explain_to_store(TEXTS[0], SPEC, tmp_path / "python.zarr")
    url = triton.grpc_url if scheme == "triton" else triton.http_url
    result = explain_to_store(TEXTS[0], f"{scheme}://{url}/lexicon", tmp_path / "triton.zarr")
    assert stored(tmp_path / "triton.zarr") == stored(tmp_path / "python.zarr")
    words = result.subject.units.strings
    assert [words[i] for i in np.flatnonzero(result.mask)] == ["excellent"]
    assert result.stats.mean_batch > 1


@pytest.mark.triton
def test_triton_http_as_an_oip_v2_endpoint(triton, tmp_path: Path) -> None:
    explain_to_store(TEXTS[3], SPEC, tmp_path / "python.zarr")
    url = f"http://{triton.http_url}/v2/models/lexicon"
    explain_to_store(TEXTS[3], url, tmp_path / "oip.zarr", protocol="v2-binary")
    assert stored(tmp_path / "oip.zarr") == stored(tmp_path / "python.zarr")
