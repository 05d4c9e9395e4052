"""Variants as model files: each written to a temporary folder and opened as an engine.

A variant is written to a temporary file and opened through
:func:`~rex_stream.engine.session.open_engine` like any model; the file is removed when the
engine is closed. A run killed with SIGKILL cannot remove its files: their folders are named
after the process and host that made them, and the next run on the host removes those whose
process is gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.session import Engine, open_engine
from rex_stream.evaluation.variants.layers import load_onnx
from rex_stream.evaluation.variants.weights import WeightedModel, Weights

logger = logging.getLogger(__name__)

#: The temporary folders of variants: ``<prefix><pid>@<host>-<random>``.
VARIANT_PREFIX = "rex-stream-weights-"
#: Above this many bytes a variant keeps its tensors in an external-data file (protobuf's
#: 2 GiB limit).
EXTERNAL_DATA_BYTES = 1 << 30


@asynccontextmanager
async def open_variant(
    model: WeightedModel,
    replacements: Weights,
    config: ExplainConfig,
    settings: BackendSettings | None,
) -> AsyncIterator[Engine]:
    """The model with ``replacements`` opened as an engine (backend and scheduler) from a
    temporary file, removed after."""
    global _swept
    if not _swept:
        _swept = True
        await anyio.to_thread.run_sync(remove_orphaned_variants)
    owner = f"{os.getpid()}@{socket.gethostname()}"
    with tempfile.TemporaryDirectory(prefix=f"{VARIANT_PREFIX}{owner}-") as folder:
        path = Path(folder) / model.name
        if not path.name.endswith(".onnx"):
            path = path.with_name(path.name + ".onnx")
        await anyio.to_thread.run_sync(_save, model, replacements, path)
        async with open_engine(str(path), config, settings) as engine:
            yield engine


_swept = False  # orphaned variants are looked for once per process


def remove_orphaned_variants(folder: str | Path | None = None) -> list[Path]:
    """Remove the variant folders that killed runs on this host left in ``folder`` (the
    temporary folder by default): those whose process is gone. Returns what was removed."""
    if os.name == "nt":  # os.kill(pid, 0) is no liveness probe there
        return []
    host = socket.gethostname()
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{VARIANT_PREFIX}*"):
        owner = path.name[len(VARIANT_PREFIX) :].rpartition("-")[0]
        pid, at, made_on = owner.partition("@")
        if not at or made_on != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed %s, left by a killed run (process %s)", path, pid)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal, or unknown: assume it lives
        return True
    return True


def _save(model: WeightedModel, replacements: Weights, path: Path) -> None:
    onnx = load_onnx()
    variant = model.with_weights(replacements)
    large = variant.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save_model(variant, str(path), save_as_external_data=large)
