"""The store defends itself: checksummed records, the model's identity, one-line damage errors."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import zarr
from onnx import numpy_helper

from rex_stream import StoreError, explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.cli.main import main
from rex_stream.engine.store import ExplanationStore

SETTINGS = {"iters": 6, "seed": 3, "min_box_size": 4}


@pytest.fixture
def finished(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A finished store, and the map an uninterrupted run gives."""
    store = tmp_path / "s.zarr"
    result = explain_sync(tiny_image, str(tiny_cnn), store=store, **SETTINGS)
    return store, result.responsibility


def _changed_keys(message: str) -> set[str]:
    """The dotted keys a 'different settings (…)' refusal names."""
    inside = message.split("different settings (", 1)[1].rsplit(");", 1)[0]
    return set(re.findall(r"(?:^|, )([\w.]+): ", inside))


def _unpack(store: Path) -> None:
    """Back to one record per iteration (the layout before the input finished), through the
    store's own writes: the single-record damage below is then what a killed run leaves."""
    attached = ExplanationStore.attach(store, "tiny", 2)
    records = attached.committed("ledger")
    for record in records.values():
        attached.commit("ledger", record)
    for pack in (store / "tiny" / "ledger").glob("pack-*"):
        shutil.rmtree(pack)


def _chunk(store: Path, iteration: int) -> Path:
    chunks = [p for p in (store / "tiny" / "ledger" / f"{iteration:06d}").rglob("*") if p.is_file()]
    return next(p for p in chunks if p.name != "zarr.json")


def _resume(tiny_cnn: Path, tiny_image: Path, store: Path, caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="rex_stream.engine.store"):
        return explain_sync(tiny_image, str(tiny_cnn), store=store, resume=True, **SETTINGS)


@pytest.mark.parametrize("damage", ["delete chunk", "garbage chunk", "altered values", "metadata"])
def test_a_damaged_record_is_run_again(
    tiny_cnn: Path,
    tiny_image: Path,
    finished: tuple[Path, np.ndarray],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    store, reference = finished
    _unpack(store)
    if damage == "delete chunk":
        _chunk(store, 2).unlink()  # reads back as zeros
    elif damage == "garbage chunk":
        chunk = _chunk(store, 2)
        chunk.write_bytes(np.random.default_rng(0).bytes(chunk.stat().st_size))
    elif damage == "altered values":  # valid chunk, wrong numbers: only the checksum sees it
        zarr.open_array(str(store / "tiny" / "ledger" / "000002"), mode="r+")[0, -1] = 9.0
    else:
        meta = store / "tiny" / "ledger" / "000002" / "zarr.json"
        meta.write_text(meta.read_text()[:40])
    resumed = _resume(tiny_cnn, tiny_image, store, caplog)
    assert resumed.stats.resumed_iterations == SETTINGS["iters"] - 1
    assert np.array_equal(resumed.responsibility, reference)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{store}/tiny: ledger 2 " in warnings[0], warnings
    assert "running it again" in warnings[0]
    again = _resume(tiny_cnn, tiny_image, store, caplog)  # repaired: all resume now
    assert again.stats.resumed_iterations == SETTINGS["iters"]


@pytest.mark.parametrize("damage", ["altered value", "garbage chunk"])
def test_a_damaged_pack_is_run_again(
    tiny_cnn: Path,
    tiny_image: Path,
    finished: tuple[Path, np.ndarray],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    """A finished input's pack: one altered value costs its own record, an unreadable chunk
    every record; either way the resumed map is the same and the pack whole again."""
    store, reference = finished
    (pack,) = (store / "tiny" / "ledger").glob("pack-*")
    if damage == "altered value":
        array = zarr.open_array(str(pack), mode="r+")
        spans = [int(np.prod(r["shape"])) for r in array.attrs["records"]]
        array[sum(spans[:2])] = 9.0  # the first value of iteration 2
    else:
        chunk = next(p for p in pack.rglob("*") if p.is_file() and p.name != "zarr.json")
        chunk.write_bytes(np.random.default_rng(0).bytes(chunk.stat().st_size))
    resumed = _resume(tiny_cnn, tiny_image, store, caplog)
    lost = 1 if damage == "altered value" else SETTINGS["iters"]
    assert resumed.stats.resumed_iterations == SETTINGS["iters"] - lost
    assert np.array_equal(resumed.responsibility, reference)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "running" in warnings[0] and f"{store}/tiny" in warnings[0]
    if damage == "altered value":
        assert "ledger 2 (packed) failed its checksum" in warnings[0]
    assert [p.name for p in (store / "tiny" / "ledger").iterdir()] != [pack.name]
    again = _resume(tiny_cnn, tiny_image, store, caplog)  # repaired: all resume now
    assert again.stats.resumed_iterations == SETTINGS["iters"]


@pytest.mark.parametrize("where", ["group", "root"])
def test_damaged_metadata_is_one_line(
    tiny_cnn: Path,
    tiny_image: Path,
    finished: tuple[Path, np.ndarray],
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    store, reference = finished
    meta = store / "tiny" / "zarr.json" if where == "group" else store / "zarr.json"
    meta.write_text(meta.read_text()[:25])
    args = [str(tiny_image), "--model", str(tiny_cnn), "--store", str(store), "--iters", "6"]
    args += ["--seed", "3", "--min-box-size", "4"]
    assert main([*args, "--resume"]) == 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rex-stream: error:"), err
    assert str(meta) in err and "damaged" in err and "Traceback" not in err
    if where == "group":
        assert "--overwrite" in err
        assert main([*args, "--overwrite"]) == 0
    else:
        assert "delete that file" in err
        meta.unlink()
        assert main([*args, "--resume"]) == 0
    group = zarr.open_group(str(store), mode="r")["tiny"]
    assert np.array_equal(group["responsibility"][:], reference)


def test_another_model_with_the_same_file_name_is_refused(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_cnn, model)
    store = tmp_path / "s.zarr"
    first = explain_sync(tiny_image, str(model), store=store, **SETTINGS)
    graph = onnx.load(str(model))
    for tensor in graph.graph.initializer:
        if tensor.name == "gemm_b":  # another model: same name and shape, and the same class
            bias = numpy_helper.to_array(tensor).copy()
            bias[first.target.classification] += 0.5
            tensor.CopyFrom(numpy_helper.from_array(bias, "gemm_b"))
    onnx.save(graph, str(model))
    with pytest.raises(StoreError, match="different settings") as refused:
        explain_sync(tiny_image, str(model), store=store, resume=True, **SETTINGS)
    assert _changed_keys(str(refused.value)) == {"model.identity.sha256", "target.confidence"}


def test_a_refusal_names_only_what_changed(
    tiny_cnn: Path, finished: tuple[Path, np.ndarray], tiny_image: Path
) -> None:
    store, _ = finished
    changed = {**SETTINGS, "min_box_size": 8}
    with pytest.raises(StoreError) as refused:
        explain_sync(tiny_image, str(tiny_cnn), store=store, resume=True, **changed)
    assert "search.min_box_size: 4 → 8" in str(refused.value)
    assert _changed_keys(str(refused.value)) == {"search.min_box_size"}


def test_another_python_function_is_refused(tiny_image: Path, tmp_path: Path) -> None:
    def brighter(batch: np.ndarray) -> np.ndarray:
        return np.stack([batch.mean(axis=(1, 2, 3)), 0.5 + 0 * batch.mean(axis=(1, 2, 3))], 1)

    def darker(batch: np.ndarray) -> np.ndarray:
        return brighter(batch)

    store = tmp_path / "s.zarr"
    first = PythonBackend(brighter, (3, 32, 32), name="model")
    explain_sync(tiny_image, first, store=store, **SETTINGS)
    with pytest.raises(StoreError) as refused:
        other = PythonBackend(darker, (3, 32, 32), name="model")
        explain_sync(tiny_image, other, store=store, resume=True, **SETTINGS)
    assert _changed_keys(str(refused.value)) == {"model.identity.function"}
    assert "brighter" in str(refused.value) and "darker" in str(refused.value)


def test_an_older_store_format_is_refused(
    tiny_cnn: Path, tiny_image: Path, finished: tuple[Path, np.ndarray]
) -> None:
    store, _ = finished
    meta = store / "tiny" / "zarr.json"
    content = json.loads(meta.read_text())
    content["attributes"]["rex_stream"]["format"] = 1
    meta.write_text(json.dumps(content))
    with pytest.raises(StoreError, match=r"store format 1 .*--overwrite"):
        explain_sync(tiny_image, str(tiny_cnn), store=store, resume=True, **SETTINGS)
