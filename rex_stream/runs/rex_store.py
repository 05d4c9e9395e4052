"""A ReX run's store group: opened (the seed settled, a resumed run checked) and saved.

The settings recorded with a group are everything that shapes its map, so that a resumed run
with other settings is refused; ``iters`` is not among them (more iterations extend a store).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.causal.search import input_key
from rex_stream.config import Distribution, ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.errors import StoreError
from rex_stream.result import Explanation

#: A resumed run's target confidence may differ from the stored one by float noise alone
#: (another CPU, batch size or server); more than this means another model or input.
CONFIDENCE_TOLERANCE = 1e-4

#: Search settings that do not shape the map: the number of iterations (more extend a store),
#: how many run at once, the seed (recorded on its own) and the post-processing of the map.
UNRECORDED_SEARCH = ("iters", "max_concurrent_searches", "seed", "negative_responsibility")


def store_settings(
    subject: Subject, target: Target, info: ModelInfo, config: ExplainConfig, seed: int
) -> dict[str, Any]:
    """Everything that shapes the map, as the store group records it."""
    search = {k: v for k, v in asdict(config.search).items() if k not in UNRECORDED_SEARCH}
    if config.search.distribution is not Distribution.ADAPTIVE:
        search.pop("adaptive_lag")
    return {
        "search": search,
        "scoring": asdict(config.scoring),
        "image": asdict(config.image),
        "model": {
            "name": info.name,
            "input_shape": list(info.input_shape),
            "identity": dict(info.identity),
        },
        "input": f"{input_key(subject):016x}",
        "target": {"class": target.classification, "confidence": target.confidence},
        "seed": seed,
    }


def open_store(
    path: str | Path | None,
    key: str,
    subject: Subject,
    target: Target,
    info: ModelInfo,
    config: ExplainConfig,
    *,
    resume: bool,
    overwrite: bool,
) -> tuple[ExplanationStore | None, int]:
    """Open the store group for this input, and settle the seed (a resumed run reuses it).

    Without ``path`` there is no store: the seed is the config's, or a fresh random one.
    """
    if path is None:
        seed = config.search.seed
        return None, seed if seed is not None else secrets.randbits(32)
    if resume and not overwrite and not ExplanationStore.exists(path):
        raise StoreError(f"cannot resume: {path} does not exist")
    fresh_seed = config.search.seed if config.search.seed is not None else secrets.randbits(32)

    def settings(stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """This run's settings; a resumed run without --seed keeps the stored seed."""
        seed = config.search.seed
        if seed is None and stored is not None and isinstance(stored.get("seed"), int):
            seed = stored["seed"]
        wanted = store_settings(subject, target, info, config, fresh_seed if seed is None else seed)
        stored_target = stored.get("target") if stored is not None else None
        if isinstance(stored_target, Mapping):
            confidence = stored_target.get("confidence")
            if (
                isinstance(confidence, float)
                and abs(confidence - target.confidence) <= CONFIDENCE_TOLERANCE
            ):
                wanted["target"]["confidence"] = confidence
        return wanted

    store = ExplanationStore.open(
        path, key, settings, len(subject.spatial_shape), resume=resume, overwrite=overwrite
    )
    seed = int(store.attributes()["settings"]["seed"])
    try:
        store.update_attributes(
            {
                "target": {"class": target.classification, "confidence": target.confidence},
                "source": subject.source or subject.name,
            }
        )
    except BaseException:
        store.close()
        raise
    return store, seed


def save_explanation(store: ExplanationStore, result: Explanation) -> None:
    """Write the dense map, the masks and the summary attributes, then mark the group
    finished (blocking: run it in a worker thread)."""
    store.write_array("responsibility", result.responsibility, "float32")
    summary = result.summary()
    if result.mask is not None:
        store.write_array("explanation", result.mask, "uint8")
    if result.complete is not None:
        store.write_array("necessary", result.complete.necessary.mask, "uint8")
    if result.multi is not None and result.multi.kept:
        kept = np.stack([e.mask for e in result.multi.kept])
        store.write_array("explanations", kept, "uint8")
    store.update_attributes({k: v for k, v in summary.items() if k not in ("input", "store")})
    store.finish()
