"""``rex-stream report s3://…``: a store on object storage (moto's S3 on 127.0.0.1) gives the
same page as the same run stored in a local folder — failed inputs from the object store's
failure records, evaluation curves from its record packs, detection targets — reads each
input's current generation (the old result while an overwrite runs, the new one once the head
switched, even when the switch lands while the report reads), and fails in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from rex_stream.cli.main import main
from rex_stream.engine.object_head import GENERATION, read_head, write_head
from rex_stream.engine.store import ExplanationStore, Record
from rex_stream.engine.store_location import parse_store, remember_storage_options
from rex_stream.evaluation.records import METRIC
from rex_stream.report import object_copy
from rex_stream.report.reading import Contents, Entry, read_contents
from tests.detection.planted import planted_photo, save_detector
from tests.engine.s3_server import FAKE_KEY, FAKE_SECRET, make_bucket, moto_s3
from tests.onnx_models import save_tiny_cnn
from tests.report.browser import open_page
from tests.report.photos import photos_and_a_broken_one

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "reports"
RUNS = f"s3://{BUCKET}/runs.zarr"
RECORD_KINDS = frozenset({"ledger", METRIC, "cem_chain"})


@dataclass(frozen=True)
class Pair:
    """The same runs written to S3 and to local folders."""

    folder: Path
    model: Path
    local: Path
    evaluation: Path
    detections: Path


def _quiet(arguments: list[str]) -> int:
    with redirect_stdout(StringIO()):
        return main(arguments)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("report-s3")
    model = save_tiny_cnn(folder / "tiny.onnx", size=32, classes=10)
    photos = photos_and_a_broken_one(folder, 4, seed=3)
    run = [str(photos), "--model", str(model), "--iters", "2", "--seed", "1", "-q", "--multi", "2"]
    good = folder / "good"
    good.mkdir()
    for number in range(2):
        (good / f"photo{number}.png").write_bytes((photos / f"photo{number}.png").read_bytes())
    metrics = "pixel-flipping:features_in_step=64,sparseness"
    boxes = folder / "boxes"
    boxes.mkdir()
    detector = save_detector(folder / "yolov8.onnx", "yolov8")
    planted_photo(boxes / "two.png", [(2, 3, 0), (5, 6, 2)])
    planted_photo(boxes / "one.png", [(1, 1, 1)], seed=3)
    detect = [str(boxes), "--model", str(detector), "--detections", "yolov8", "--all-detections"]
    detect += ["--iters", "2", "--seed", "4", "--min-box-size", "2", "-q"]
    with moto_s3():
        make_bucket(BUCKET)
        for store in (RUNS, str(folder / "runs.zarr")):
            assert _quiet([*run, "--store", store]) == 1  # broken.png fails alone
        for store in (f"s3://{BUCKET}/eval.zarr", str(folder / "eval.zarr")):
            evaluate = ["evaluate", str(good), "--model", str(model), "--metrics", metrics]
            evaluate += ["--attribution", f"rex={folder / 'runs.zarr'}", "--store", store]
            assert _quiet(evaluate) == 0
        for store in (f"s3://{BUCKET}/boxes.zarr", str(folder / "boxes.zarr")):
            assert _quiet([*detect, "--store", store]) == 0
        yield Pair(folder, model, folder / "runs.zarr", folder / "eval.zarr", folder / "boxes.zarr")


def _facts(entry: Entry) -> tuple[Any, ...]:
    """What a report shows of an entry, but its timings and the store's name."""
    return (
        entry.key,
        entry.name,
        entry.status,
        entry.reason,
        entry.class_id,
        entry.class_label,
        entry.confidence,
        entry.area,
        entry.queries,
        entry.mode,
        entry.input,
        entry.target,
        # records live beside an object store's groups (<store>.records), inside a local one's
        [(s.kind, s.key, sorted(s.members - RECORD_KINDS)) for s in entry.sections],
    )


def _same_contents(remote: Contents, local: Contents) -> None:
    assert [_facts(e) for e in remote.entries] == [_facts(e) for e in local.entries]
    for ours, theirs in zip(remote.entries, local.entries, strict=True):
        for section, other in zip(ours.sections, theirs.sections, strict=True):
            assert section.attributes.get("settings") == other.attributes.get("settings")
            for name in ("responsibility", "explanation", "explanations", "l2x_selection"):
                mine, expected = section.array(name), other.array(name)
                assert (mine is None) == (expected is None)
                if expected is not None:
                    np.testing.assert_array_equal(mine, expected)
            assert [(c.metric, c.attribution, c.score) for c in section.curves] == [
                (c.metric, c.attribution, c.score) for c in other.curves
            ]
            for curve, expected_curve in zip(section.curves, other.curves, strict=True):
                assert (curve.curve is None) == (expected_curve.curve is None)
                if expected_curve.curve is not None:
                    np.testing.assert_array_equal(curve.curve, expected_curve.curve)


def test_the_s3_page_opens_in_a_browser(pair: Pair, tmp_path: Path) -> None:
    page = tmp_path / "s3.html"
    assert main(["report", RUNS, "-o", str(page), "-q"]) == 0
    dom, console = open_page(page, "status=failed")
    assert 'data-matching="1"' in dom and "Uncaught" not in console


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr class="row".*?</tr>', page)


def test_an_s3_store_gives_the_page_of_the_same_run_stored_locally(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote, local = tmp_path / "s3.html", tmp_path / "local.html"
    assert main(["report", RUNS, "-o", str(remote), "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["report", str(pair.local), "-o", str(local), "--json", "-q"]) == 0
    assert summary["counts"] == json.loads(capsys.readouterr().out)["counts"]
    assert summary["counts"] == {"explained": 4, "failed": 1, "running": 0}
    page = remote.read_text()
    assert _rows(page) == _rows(local.read_text()) and len(_rows(page)) == 5
    assert "not an image" in page  # broken.png, from the object store's failure record
    assert RUNS in page and "rex-stream-report-" not in page  # the URL, not the local copy
    contents = read_contents([RUNS])
    try:
        _same_contents(contents, read_contents([pair.local]))
    finally:
        contents.close()
    assert not contents.copies[0].folder.exists()  # the local copy is removed


def test_evaluation_and_detection_stores_read_as_their_local_twins(pair: Pair) -> None:
    for remote, local in ((f"s3://{BUCKET}/eval.zarr", pair.evaluation),
                          (f"s3://{BUCKET}/boxes.zarr", pair.detections)):  # fmt: skip
        contents = read_contents([remote])
        try:
            _same_contents(contents, read_contents([local]))
        finally:
            contents.close()
        assert contents.entries and all(e.status == "explained" for e in contents.entries)
    evaluation = read_contents([f"s3://{BUCKET}/eval.zarr"])
    evaluation.close()
    sections = [e.first("evaluation") for e in evaluation.entries]
    # one attribution × two metrics each, from the records' pack beside the store
    assert len(sections) == 2 and all(s is not None and len(s.curves) == 2 for s in sections)
    boxes = read_contents([f"s3://{BUCKET}/boxes.zarr"])
    boxes.close()
    assert [(e.input, e.target) for e in boxes.entries] == [
        ("one.png", "detection 0"),
        ("two.png", "detection 0"),
        ("two.png", "detection 1"),
    ]


def _responsibility(url: str, key: str) -> np.ndarray:
    contents = read_contents([url])
    try:
        entry = next(e for e in contents.entries if e.key == key)
        values = entry.sections[0].array("responsibility")
        assert values is not None and entry.status == "explained"
        return values
    finally:
        contents.close()


def _new_generation(url: str, key: str, values: np.ndarray) -> tuple[str, dict[str, Any]]:
    """A finished overwrite's generation of ``key`` written beside the current one (as
    ObjectGroup.finish sends it before the head switches); (its name, the head it needs)."""
    location = parse_store(url)
    head = read_head(location.filesystem(), location, key)
    assert head is not None
    generation = "g" + "0123456789ab"
    group = zarr.open_group(f"{url}/{key}/{generation}", mode="w")
    group.attrs.update({k: v for k, v in head.items() if k != GENERATION})
    group.create_array("responsibility", data=values)
    return generation, {**head, GENERATION: generation}


def test_an_overwrite_shows_the_old_result_until_the_head_switches(pair: Pair) -> None:
    url = f"s3://{BUCKET}/over.zarr"
    photo = pair.folder / "photos" / "photo0.png"
    run = [str(photo), "--model", str(pair.model), "--iters", "2", "--seed", "1", "-q"]
    assert _quiet([*run, "--store", url]) == 0
    old = _responsibility(url, "photo0")
    # an overwrite running: it holds the lease, and its new generation is sent but the head
    # still points to the old one
    writer = ExplanationStore.open(url, "photo0", {"seed": 9}, 2, overwrite=True)
    try:
        _, head = _new_generation(url, "photo0", np.full(old.shape, 7, np.float32))
        np.testing.assert_array_equal(_responsibility(url, "photo0"), old)
        location = parse_store(url)
        write_head(location.filesystem(), location, "photo0", head)  # the switch
        np.testing.assert_array_equal(_responsibility(url, "photo0"), np.full(old.shape, 7))
    finally:
        writer.close()


def test_a_switch_while_the_report_reads_gives_the_new_result(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{BUCKET}/race.zarr"
    photo = pair.folder / "photos" / "photo1.png"
    run = [str(photo), "--model", str(pair.model), "--iters", "2", "--seed", "1", "-q"]
    assert _quiet([*run, "--store", url]) == 0
    location = parse_store(url)
    fs = location.filesystem()
    old_generation = read_head(fs, location, "photo1")[GENERATION]  # type: ignore[index]
    generation, head = _new_generation(url, "photo1", np.full((32, 32), 5, np.float32))
    fetch = object_copy.cat_many
    switched: list[str] = []

    def switch_then_fetch(filesystem: Any, paths: list[str]) -> dict[str, Any]:
        # the report listed and read the old head; the overwrite finishes now: the head
        # switches and the old generation is deleted before its objects are fetched
        if not switched and any(f"/{old_generation}/" in p for p in paths):
            write_head(fs, location, "photo1", head)
            fs.rm(f"{location.path}/photo1/{old_generation}", recursive=True)
            switched.append(generation)
        return fetch(filesystem, paths)

    monkeypatch.setattr(object_copy, "cat_many", switch_then_fetch)
    values = _responsibility(url, "photo1")
    assert switched and np.array_equal(values, np.full((32, 32), 5))


def test_a_running_input_is_running_while_its_lease_is_held_and_failed_after(
    pair: Pair,
) -> None:
    url = f"s3://{BUCKET}/late.zarr"
    writer = ExplanationStore.open(url, "late", {"seed": 1}, 2)
    try:
        for index in range(3):
            writer.commit("ledger", Record(index, np.ones((1, 6))))
        location = parse_store(url)
        deadline = time.monotonic() + 30
        # the head lands with the writer's first records (held back up to a second)
        while read_head(location.filesystem(), location, "late") is None:
            assert time.monotonic() < deadline, "the writer wrote no head"
            time.sleep(0.05)
        contents = read_contents([url])
        contents.close()
        [entry] = contents.entries
        assert entry.status == "running" and "being written" in entry.reason
    finally:
        writer.close()  # killed before it finished: its records stay, the lease goes
    contents = read_contents([url])
    contents.close()
    [entry] = contents.entries
    assert entry.status == "failed" and "3 iterations committed" in entry.reason


def _one_line(capsys: pytest.CaptureFixture[str], code: int, needle: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("rex-stream: error: "), err
    assert needle in err[0] and FAKE_SECRET not in captured.err + captured.out
    return err[0]


def test_store_faults_are_one_line(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "r.html")
    _one_line(capsys, main(["report", "s3://nobucket/runs.zarr", "-o", out]), "does not exist")
    _one_line(capsys, main(["report", f"s3://{BUCKET}/none.zarr", "-o", out]), "no such store")
    records = f"s3://{BUCKET}/runs.zarr.records"  # objects, but no store
    _one_line(capsys, main(["report", records, "-o", out]), "not a rex-stream store")
    _one_line(capsys, main(["report", "nosuch://b/x.zarr", "-o", out]), "unknown storage")
    secret = ["--storage-option", f"key={FAKE_KEY}", "--storage-option", f"secret={FAKE_SECRET}"]
    _one_line(capsys, main(["report", str(pair.local), "-o", out, *secret]), "object stores")
    started = time.monotonic()
    unreachable = ["--storage-option", "endpoint_url=http://127.0.0.1:9", *secret]
    code = main(["report", f"s3://{BUCKET}/elsewhere.zarr", "-o", out, *unreachable])
    _one_line(capsys, code, "Could not connect")
    assert time.monotonic() - started < 60
    assert not Path(out).exists()


def test_without_the_s3_extra_the_report_names_it(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from rex_stream.cli.main import main\n"
        f"sys.exit(main(['report', '{RUNS}', '-o', 'r.html']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "pip install 'rex-stream[s3]'" in lines[0]


def test_watch_and_storage_options_work_on_an_object_store(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "watched.html"
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # only the option is right
    options = ["--storage-option", f"endpoint_url={endpoint}"]
    try:  # nothing is running: one write, then --watch ends
        assert main(["report", RUNS, "-o", str(out), "--watch", "0.1", "-q", *options]) == 0
    finally:
        remember_storage_options(RUNS, {})  # the CLI remembers them for the process
    assert len(_rows(out.read_text())) == 5
    assert not any(scratch.iterdir())  # every local copy removed
