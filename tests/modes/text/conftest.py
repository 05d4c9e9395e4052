"""Fixtures the text tests share: the servers of :mod:`tests.modes.text.text_servers` (an
aiohttp app on 127.0.0.1 and a real PyTriton server), started once for the package."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modes.text.text_servers import TextApp, serving_text_app, triton_command
from tests.servers.triton_server import TritonProcess, triton_python


@dataclasses.dataclass
class TextTriton(TritonProcess):
    """The PyTriton server of :mod:`tests.modes.text.text_servers` (models ``lexicon`` over
    strings and ``lexicon-ids`` over token ids)."""

    def command(self) -> list[str]:
        python = self.python or triton_python()
        assert python is not None
        return triton_command(python, self.http_port, self.grpc_port, self.metrics_port)

    def models(self) -> list[str]:
        """Both models must be ready before a test starts."""
        return ["lexicon", "lexicon-ids"]


@pytest.fixture(scope="package")
def app() -> Iterator[TextApp]:
    """The Open Inference Protocol v2 / KServe v1 text app."""
    with serving_text_app() as served:
        yield served


@pytest.fixture(scope="package")
def triton() -> Iterator[TextTriton]:
    """The real Triton serving ``lexicon`` and ``lexicon-ids``."""
    if triton_python() is None:
        pytest.skip("needs the PyTriton environment: set REX_STREAM_TRITON_PYTHON")
    server = TextTriton(model_path=Path("unused"), model_name="lexicon")
    server.start()
    try:
        yield server
    finally:
        server.stop()
