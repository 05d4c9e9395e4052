"""ReX's sqlite database: our rows, read back by sqlite, by two appending processes, and by
ReX 0.4.1's own reader (``db_to_pandas``) in its own venv (REX_STREAM_REX_PYTHON)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import zlib
from ast import literal_eval
from pathlib import Path

import numpy as np
import pytest

from rex_stream import explain_sync
from rex_stream.errors import OutputError
from rex_stream.result import Explanation
from rex_stream.rex_compat.database import (
    COLUMNS,
    append_explanation,
    check_database,
    mask_in_model_layout,
)
from tests.cli.test_cli import rex

REX_PYTHON = os.environ.get("REX_STREAM_REX_PYTHON")

READER = """
import json, sys
import numpy as np
from rex_xai.output.database import db_to_pandas
frame = db_to_pandas(sys.argv[1])
np.savez(sys.argv[2], **{
    f"mask{i}": np.asarray(m) for i, m in enumerate(frame["sufficiency_mask"])
}, **{f"map{i}": np.asarray(m) for i, m in enumerate(frame["responsibility"])})
print(json.dumps({
    "rows": len(frame), "multi": [bool(v) for v in frame["multi"]],
    "multi_no": [None if v != v else int(v) for v in frame["multi_no"]],
    "method": list(frame["method"]), "path": list(frame["path"]),
}))
"""


@pytest.fixture(scope="module")
def global_result(tiny_cnn: Path, tiny_image: Path) -> Explanation:
    return explain_sync(tiny_image, str(tiny_cnn), iters=3, seed=2, min_box_size=4)


@pytest.fixture(scope="module")
def multi_result(tiny_cnn: Path, tiny_image: Path) -> Explanation:
    return explain_sync(
        tiny_image,
        str(tiny_cnn),
        iters=3,
        seed=2,
        min_box_size=4,
        strategy="multi",
        spotlights=6,
        spatial_initial_radius=4,
        permitted_overlap=1.0,
    )


def _rows(path: Path) -> list[dict[str, object]]:
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in connection.execute("SELECT * FROM rex ORDER BY id")]
    finally:
        connection.close()


def test_rows_have_rex_columns_and_encodings(
    global_result: Explanation, multi_result: Explanation, tmp_path: Path
) -> None:
    path = tmp_path / "rex.db"
    assert append_explanation(path, global_result) == 1
    assert multi_result.multi is not None
    assert append_explanation(path, multi_result) == len(multi_result.multi.kept)
    rows = _rows(path)
    assert list(rows[0]) == [name for name, _ in COLUMNS]
    first = rows[0]
    assert first["multi"] == 0 and first["multi_no"] is None
    assert first["method"] == "Strategy.Global" and first["distribution"] == "Distribution.Uniform"
    shape = literal_eval(str(first["responsibility_shape"]))
    stored = np.frombuffer(zlib.decompress(first["responsibility"]), np.float32).reshape(shape)
    assert np.array_equal(stored, global_result.responsibility)
    mask = np.frombuffer(zlib.decompress(first["sufficiency_mask"]), np.bool_)
    assert global_result.mask is not None
    expected = mask_in_model_layout(global_result, global_result.mask)
    assert np.array_equal(mask.reshape(literal_eval(str(first["mask_shape"]))), expected)
    multi_rows = rows[1:]
    assert all(r["multi"] == 1 and r["method"] == "Strategy.MultiSpotlight" for r in multi_rows)
    assert [r["multi_no"] for r in multi_rows] == [e.index for e in multi_result.multi.kept]
    assert all(r["spotlights"] == 6 for r in multi_rows)


def _append_many(path: str, result: Explanation, times: int) -> None:
    for _ in range(times):
        append_explanation(path, result)


def test_two_processes_append_safely(global_result: Explanation, tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_append_many, args=(path, global_result, 15)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    rows = _rows(Path(path))
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30


def test_bad_database_paths(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        check_database(tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        check_database(tmp_path / "missing" / "rex.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all " * 100)
    with pytest.raises(OutputError, match="not an sqlite database"):
        check_database(junk)
    older = tmp_path / "older.db"
    connection = sqlite3.connect(older)
    connection.execute("CREATE TABLE rex (id INTEGER PRIMARY KEY, explanation BLOB)")
    connection.commit()
    connection.close()
    with pytest.raises(OutputError, match=r"lacks ReX 0\.4\.1's columns"):
        check_database(older)


def test_database_where_no_file_can_be_made_is_refused() -> None:
    """/proc takes no new files, whoever asks (root included)."""
    with pytest.raises(OutputError, match="cannot create it in /proc"):
        check_database("/proc/rex.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_read_only_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    path.write_bytes(b"")
    path.chmod(0o444)
    with pytest.raises(OutputError, match="not writable"):
        check_database(path)


def test_cli_database_errors_are_one_line(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "-db", str(tmp_path))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a directory" in lines[0]


@pytest.mark.skipif(not REX_PYTHON, reason="REX_STREAM_REX_PYTHON (a ReX 0.4.1 venv) is not set")
def test_rex_reader_loads_a_directory_run(tiny_cnn: Path, tmp_path: Path) -> None:
    """A 10-input directory run's database (plus a multi run's rows) read by ReX's own
    db_to_pandas: the same masks and maps as ours and as the store's."""
    from PIL import Image

    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(10):
        pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"in{i}.png")
    db = tmp_path / "run.db"
    store = tmp_path / "run.zarr"
    args = ["--model", str(tiny_cnn), "--iters", "2", "--seed", "1", "--min-box-size", "4"]
    out = rex(str(folder), *args, "-db", str(db), "--store", str(store), "--json")
    assert out.returncode == 0, out.stderr
    groups = {s["input"]: s["store"] for s in json.loads(out.stdout)}
    out = rex(str(folder / "in0.png"), *args, "--multi", "4", "-db", str(db))
    assert out.returncode == 0, out.stderr
    read = subprocess.run(
        [str(REX_PYTHON), "-c", READER, str(db), str(tmp_path / "read.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr
    facts = json.loads(read.stdout.strip().splitlines()[-1])
    rows = _rows(db)
    assert facts["rows"] == len(rows) >= 11
    assert facts["multi"] == [bool(r["multi"]) for r in rows]
    assert facts["multi_no"] == [r["multi_no"] for r in rows]
    arrays = np.load(tmp_path / "read.npz")
    for i, row in enumerate(rows):
        mask = np.frombuffer(zlib.decompress(row["sufficiency_mask"]), np.bool_)
        assert np.array_equal(arrays[f"mask{i}"].ravel(), mask)
        assert arrays[f"mask{i}"].shape == literal_eval(str(row["mask_shape"]))
        flat = np.frombuffer(zlib.decompress(row["responsibility"]), np.float32)
        assert np.array_equal(arrays[f"map{i}"].ravel(), flat)
    # and the directory run's rows hold exactly what the store holds
    import zarr

    for i, row in enumerate(rows[:10]):
        group = zarr.open_group(groups[row["path"]], mode="r")
        assert np.array_equal(arrays[f"map{i}"], np.asarray(group["responsibility"][:]))
        stored_mask = np.asarray(group["explanation"][:]).astype(bool)
        assert np.array_equal(arrays[f"mask{i}"].any(axis=0), stored_mask)
