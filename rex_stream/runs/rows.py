"""Several rows of one table explained through one engine (one backend, one scheduler)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.session import open_engine
from rex_stream.errors import raise_first_error
from rex_stream.modes.tabular import count_rows
from rex_stream.result import Explanation
from rex_stream.runs.rex import explain_input


async def explain_rows(
    source: str | Path,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    rows: Sequence[int] | None = None,
    *,
    backend_settings: BackendSettings | None = None,
    **kwargs: Any,
) -> list[Explanation]:
    """Explain several rows of one table (default: all), one after the other, sharing one
    open backend. ``kwargs`` (``store``, ``resume``, ``on_progress`` …) go to every row's
    :func:`~rex_stream.runs.rex.explain_input`."""
    config = config or ExplainConfig()
    wanted = list(range(count_rows(source, config))) if rows is None else list(rows)
    results = []
    with raise_first_error():
        async with open_engine(backend, config, backend_settings) as engine:
            for row in wanted:
                options = {**engine.config.image.mode_options, "row": str(row)}
                image = replace(engine.config.image, mode="tabular", mode_options=options)
                results.append(
                    await explain_input(
                        source,
                        engine.info,
                        engine.scheduler,
                        replace(engine.config, image=image),
                        **kwargs,
                    )
                )
    return results
