"""ReX 0.4.1's sqlite database (``-db/--database FILE``): table ``rex``, one row per explanation.

The table, its 41 columns and their encodings are ReX's, so ReX's own reader
(``rex_xai.output.database.db_to_pandas``) and any script written for it read our files:
arrays are the raw bytes of a C-ordered array compressed with zlib level 9 (the map as
float32 over the spatial axes, masks as one byte per element in the model's input layout),
shapes are ``str(tuple)``. Unlike ReX: ``multi`` is true on the rows of a multi run and
``multi_no`` is the explanation's spotlight; ``id`` is sqlite's own row number (ReX hashes a
time string, which can collide); and every run's rows go in one ``BEGIN IMMEDIATE``
transaction with a busy timeout, so two processes can append to one file safely.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rex_stream.errors import OutputError

if TYPE_CHECKING:
    from rex_stream.result import Explanation

#: How long a writer waits for another process's transaction to end.
BUSY_TIMEOUT_S = 60.0

#: ReX 0.4.1's columns, in its order, with their sqlite types.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "INTEGER NOT NULL"),
    ("path", "VARCHAR(100)"),
    ("target", "INTEGER"),
    ("confidence", "FLOAT"),
    ("time", "FLOAT"),
    ("responsibility", "BLOB"),
    ("responsibility_shape", "VARCHAR"),
    ("total_work", "INTEGER"),
    ("passing", "INTEGER"),
    ("failing", "INTEGER"),
    ("sufficiency_mask", "BLOB"),
    ("mask_shape", "VARCHAR"),
    ("sufficiency_confidence", "FLOAT"),
    ("contrastive_mask", "BLOB"),
    ("contrastive_confidence", "FLOAT"),
    ("inverse_classification", "INTEGER"),
    ("inverse_confidence", "FLOAT"),
    ("complete_mask", "BLOB"),
    ("complete_classification", "INTEGER"),
    ("complete_confidence", "FLOAT"),
    ("area", "FLOAT"),
    ("entropy", "FLOAT"),
    ("insertion_curve", "FLOAT"),
    ("deletion_curve", "FLOAT"),
    ("multi", "BOOLEAN"),
    ("multi_no", "INTEGER"),
    ("depth_reached", "INTEGER"),
    ("avg_box_size", "FLOAT"),
    ("tree_depth", "INTEGER"),
    ("search_limit_per_iter", "INTEGER"),
    ("iters", "INTEGER"),
    ("min_size", "INTEGER"),
    ("distribution", "VARCHAR"),
    ("distribution_args", "VARCHAR"),
    ("spatial_radius", "INTEGER"),
    ("spatial_eta", "FLOAT"),
    ("method", "VARCHAR"),
    ("spotlights", "INTEGER"),
    ("spotlight_size", "INTEGER"),
    ("spotlight_eta", "FLOAT"),
    ("obj_function", "VARCHAR"),
)

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS rex (\n\t"
    + ", \n\t".join(f"{name} {kind}" for name, kind in COLUMNS)
    + ", \n\tPRIMARY KEY (id)\n)"
)

#: ReX's names for the strategies and distributions (``str`` of its enums).
STRATEGY_NAMES = {
    "global": "Strategy.Global",
    "spatial": "Strategy.Spatial",
    "multi": "Strategy.MultiSpotlight",
    "contrastive": "Strategy.Contrastive",
}
DISTRIBUTION_NAMES = {
    "uniform": "Distribution.Uniform",
    "binom": "Distribution.Binomial",
    "betabinom": "Distribution.BetaBinomial",
    "adaptive": "Distribution.Adaptive",
}


def check_database(path: str | Path) -> Path:
    """Fail before a run, not after it, when ``path`` cannot be a database we append to."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"--database {path}: is a directory, not a database file")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"--database {path}: directory {parent} does not exist")
    if target.exists():
        if not os.access(target, os.R_OK | os.W_OK):
            raise OutputError(f"--database {path}: not writable")
        with _connect(target) as connection:
            _check_table(connection, target)
            try:  # take the write lock once, as the append will
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise OutputError(f"--database {path}: not writable ({exc})") from exc
        return target
    try:  # can a file be made there? (permissions alone do not tell, e.g. for root)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".rex-db-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"--database {path}: cannot create it in {parent} ({exc.strerror or exc})"
        ) from exc
    return target


def append_explanation(path: str | Path, result: Explanation) -> int:
    """Append ``result``'s rows (one per kept explanation) in one transaction; returns how
    many were written. The table is created if missing."""
    rows = list(explanation_rows(result))
    if not rows:
        return 0
    names = [name for name, _ in COLUMNS if name != "id"]
    statement = f"INSERT INTO rex ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    target = Path(path)
    try:
        with _connect(target) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(CREATE_TABLE)
                _check_table(connection, target)
                connection.executemany(statement, [[row.get(n) for n in names] for row in rows])
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
    except sqlite3.Error as exc:
        raise OutputError(f"--database {path}: cannot write ({exc})") from exc
    return len(rows)


def explanation_rows(result: Explanation) -> Iterator[dict[str, Any]]:
    """The database rows of one explained input: one per kept multi explanation, else one."""
    config = result.config
    stats = result.stats
    subject = result.subject
    strategy = config.extraction.strategy
    base: dict[str, Any] = {
        "path": subject.source or subject.name,
        "target": int(result.target.classification),
        "confidence": float(result.target.confidence),
        "time": float(stats.wall_s),
        "responsibility": _compress(np.asarray(result.responsibility, np.float32)),
        "responsibility_shape": str(tuple(result.responsibility.shape)),
        "total_work": int(stats.passing + stats.failing),
        "passing": int(stats.passing),
        "failing": int(stats.failing),
        "mask_shape": str(tuple(subject.tensor.shape)),
        "multi": False,
        "depth_reached": int(stats.max_depth),
        "avg_box_size": float(stats.avg_box_size),
        "tree_depth": config.search.tree_depth,
        "search_limit_per_iter": config.search.search_limit,
        "iters": config.search.iters,
        "min_size": config.search.min_box_size,
        "distribution": DISTRIBUTION_NAMES.get(
            str(config.search.distribution.value), str(config.search.distribution)
        ),
        "distribution_args": str(
            list(config.search.distribution_args) if config.search.distribution_args else None
        ),
        "method": STRATEGY_NAMES.get(strategy, strategy),
        "spotlights": 0,
        "spotlight_size": 0,
        "spotlight_eta": 0.0,
    }
    if strategy == "spatial":
        base["spatial_radius"] = config.extraction.spatial_initial_radius
        base["spatial_eta"] = config.extraction.spatial_radius_eta
    base.update(_analysis_columns(result.analysis))
    base.update(_complete_columns(result))
    if result.multi is not None:
        multi = config.multi
        base.update(
            multi=True,
            spotlights=multi.spotlights,
            spotlight_size=multi.spotlight_size,
            spotlight_eta=multi.spotlight_eta,
            obj_function=multi.spotlight_objective_function,
        )
        analysis = result.analysis or {}
        per = {e["spotlight"]: e for e in analysis.get("explanations", [])}
        for found in result.multi.kept:
            row = dict(base)
            row.update(
                sufficiency_mask=_mask_bytes(result, found.mask),
                sufficiency_confidence=float(found.confidence),
                multi_no=int(found.index),
            )
            if found.index in per:
                row["area"] = per[found.index]["area"]
            yield row
        return
    if result.sufficiency is None:
        return
    row = dict(base)
    row.update(
        sufficiency_mask=_mask_bytes(result, result.sufficiency.mask),
        sufficiency_confidence=float(result.sufficiency.confidence),
    )
    if strategy == "contrastive" and "contrastive_mask" not in row:
        row["contrastive_mask"] = row["sufficiency_mask"]
        row["contrastive_confidence"] = row["sufficiency_confidence"]
    yield row


def mask_in_model_layout(result: Explanation, mask: np.ndarray) -> np.ndarray:
    """A spatial mask broadcast over the model input's other axes (ReX's mask layout)."""
    subject = result.subject
    return np.ascontiguousarray(
        np.broadcast_to(subject.expand(np.asarray(mask, bool)), subject.tensor.shape)
    )


def _mask_bytes(result: Explanation, mask: np.ndarray) -> bytes:
    return _compress(mask_in_model_layout(result, mask))


def _compress(array: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(array).tobytes(), 9)


def _analysis_columns(analysis: Mapping[str, Any] | None) -> dict[str, Any]:
    """ReX's analysis columns: area, "entropy" (ReX's KL(U‖P) figure), the curves' AUCs."""
    if not analysis:
        return {}
    names = {
        "area": "area",
        "entropy": "kl_divergence",
        "insertion_curve": "insertion_auc",
        "deletion_curve": "deletion_auc",
    }
    return {
        column: float(analysis[key])
        for column, key in names.items()
        if analysis.get(key) is not None
    }


def _complete_columns(result: Explanation) -> dict[str, Any]:
    """The contrastive/complete columns of a ``--complete`` run, as ReX fills them: the
    sufficient-and-necessary mask, the class without it, and the elements added to reach
    the original confidence with their class alone."""
    complete = result.complete
    if complete is None:
        return {}
    return {
        "contrastive_mask": _mask_bytes(result, complete.necessary.mask),
        "contrastive_confidence": float(complete.necessary.confidence),
        "inverse_classification": int(complete.inverse_classification),
        "inverse_confidence": float(complete.inverse_confidence),
        "complete_mask": _mask_bytes(result, complete.added),
        "complete_classification": int(complete.added_classification),
        "complete_confidence": float(complete.added_confidence),
    }


class _Connection:
    """A sqlite connection that waits for other writers and is always closed."""

    def __init__(self, path: Path) -> None:
        try:
            self.connection = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise OutputError(f"--database {path}: cannot open ({exc})") from exc

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, *exc: object) -> None:
        self.connection.close()


def _connect(path: Path) -> _Connection:
    return _Connection(path)


def _check_table(connection: sqlite3.Connection, path: Path) -> None:
    """An existing ``rex`` table must have ReX's columns (an older ReX's table does not)."""
    try:
        present = {row[1] for row in connection.execute("PRAGMA table_info(rex)")}
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"--database {path}: not an sqlite database ({exc})") from exc
    missing = [name for name, _ in COLUMNS if name not in present]
    if present and missing:
        raise OutputError(
            f"--database {path}: its table rex lacks ReX 0.4.1's columns "
            f"{', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}"
        )
