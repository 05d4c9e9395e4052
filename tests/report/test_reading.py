"""What the report reads from real stores: one entry per input, each method's section, and
the status of every input (explained, failed with its reason, running)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from rex_stream.engine.lock import GroupLock
from rex_stream.report import ReportOptions, parse_filters, read_contents
from rex_stream.report.page import chosen_entries
from tests.report.conftest import Stores


def test_every_method_and_failure_is_one_entry_per_input(stores: Stores) -> None:
    paths = [stores.rex, stores.evaluation, stores.cem, stores.l2x]
    contents = read_contents(paths, [stores.summary])
    by_key = {entry.key: entry for entry in contents.entries}
    assert len(by_key) == stores.photos + 2  # the photos, the digit, the broken photo
    photo = by_key["photo0.png"]
    assert [s.kind for s in photo.sections] == ["rex", "evaluation"]
    rex = photo.first("rex")
    assert rex is not None and rex.array("explanations") is not None
    evaluation = photo.first("evaluation")
    assert evaluation is not None
    assert {c.attribution for c in evaluation.curves} == {"rex", "same"}
    flipping = [c for c in evaluation.curves if c.metric.startswith("pixel-flipping")]
    assert all(c.curve is not None and c.curve.size > 2 for c in flipping)
    stored: dict[str, Any] = dict(zarr.open_group(str(stores.rex), mode="r")["photo0.png"].attrs)
    assert photo.class_id == stored["target"]["class"] and photo.status == "explained"
    assert photo.area == pytest.approx(stored["explanation"]["area"])
    digit = by_key["digit"]
    assert [s.kind for s in digit.sections] == ["cem", "l2x"] and digit.class_id is not None
    broken = next(e for e in contents.entries if e.name.endswith("broken.png"))
    assert broken.status == "failed" and "not an image" in broken.reason
    assert contents.counts == {"explained": stores.photos + 1, "failed": 1, "running": 0}


def test_unfinished_groups_are_running_while_locked_and_failed_after(
    stores: Stores, tmp_path: Path
) -> None:
    store = tmp_path / "copy.zarr"
    shutil.copytree(stores.rex, store)
    group = zarr.open_group(str(store / "photo1.png"), mode="r+")
    group.attrs["complete"] = False
    stopped = {e.key: e for e in read_contents([store]).entries}["photo1.png"]
    assert stopped.status == "failed"
    assert "2 iterations committed" in stopped.reason and "--resume" in stopped.reason
    with GroupLock.for_group(store, "photo1.png"):
        running = {e.key: e for e in read_contents([store]).entries}["photo1.png"]
    assert running.status == "running" and "being written" in running.reason


def test_limit_and_filters_choose_entries(stores: Stores) -> None:
    contents = read_contents([stores.rex], [stores.summary])
    classes = {e.class_id for e in contents.entries if e.class_id is not None}
    wanted = sorted(classes)[0]
    options = ReportOptions(filters=parse_filters([f"class={wanted}"]))
    kept = chosen_entries(contents, options)
    assert kept and all(e.class_id == wanted for e in kept)
    failed = chosen_entries(contents, ReportOptions(filters=parse_filters(["status=failed"])))
    assert [e.status for e in failed] == ["failed"]
    assert len(chosen_entries(contents, ReportOptions(limit=2))) == 2


def test_a_nested_target_group_is_an_entry_of_its_own(tmp_path: Path) -> None:
    store = zarr.open_group(str(tmp_path / "boxes.zarr"), mode="w")
    photo = store.create_group("photo.png")
    for number in range(2):
        target = photo.create_group(f"target-{number}")
        target.attrs.update({"complete": True, "target_box": [1, 2, 10, 12]})
        target.create_array("responsibility", data=np.eye(16, dtype=np.float32))
    keys = [e.key for e in read_contents([tmp_path / "boxes.zarr"]).entries]
    assert keys == ["photo.png/target-0", "photo.png/target-1"]


def test_a_failed_input_is_listed_from_the_store_alone(stores: Stores, tmp_path: Path) -> None:
    contents = read_contents([stores.rex])  # no --summary
    failed = [e for e in contents.entries if e.status == "failed"]
    assert [e.key for e in failed] == ["broken.png"]
    assert failed[0].name.endswith("broken.png") and "not an image" in failed[0].reason
    with_summary = read_contents([stores.rex], [stores.summary])
    assert len(with_summary.entries) == len(contents.entries)  # the same failure, once
    copy = tmp_path / "copy.zarr"  # a store copied without its failure records
    shutil.copytree(stores.rex, copy)
    assert all(e.status == "explained" for e in read_contents([copy]).entries)


def test_detection_targets_know_their_input(tmp_path: Path) -> None:
    store = zarr.open_group(str(tmp_path / "boxes.zarr"), mode="w")
    for name in ("street.jpg__detection-0", "street.jpg__detection-1", "park.jpg__detection-0"):
        group = store.create_group(name)
        group.attrs.update({"complete": True, "source": name.split("__")[0], "rex_stream": "t"})
        group.create_array("responsibility", data=np.eye(8, dtype=np.float32))
    entries = read_contents([tmp_path / "boxes.zarr"]).entries
    assert [(e.input, e.target) for e in entries] == [
        ("park.jpg", "detection 0"),
        ("street.jpg", "detection 0"),
        ("street.jpg", "detection 1"),
    ]
    assert entries[2].name == "street.jpg · detection 1"
