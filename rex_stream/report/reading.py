"""What stores hold, for a report: one :class:`Entry` per input (or per detection target),
each with the :class:`Section` s the stores hold for it — a ReX explanation (with ``--multi``
and ``--complete``), evaluation scores and curves, a CEM pertinent positive or negative, an
L2X selection — and its status: explained, failed (with its one-line reason) or running.

Groups and their small arrays are read straight from the store's files
(:mod:`.store_files`), anything else with plain ``zarr``; evaluation records through the
evaluation wing's own record reader. A store on object storage (``s3://…``) is first copied
into a temporary local folder (:mod:`.object_copy`) and read from there. Nothing here writes
to a store.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rex_stream.engine.failure_log import read_failures as stored_failures
from rex_stream.engine.lock import GroupLock
from rex_stream.engine.store import Record
from rex_stream.engine.store_location import parse_store
from rex_stream.engine.store_pack import is_pack_name, read_pack
from rex_stream.errors import InputError
from rex_stream.evaluation.detection.targets import GROUP_INFIX
from rex_stream.evaluation.records import METRIC, from_record
from rex_stream.labels import class_name, labels_for_model
from rex_stream.report.object_copy import ObjectStoreCopy, copy_object_store, is_object_store
from rex_stream.report.store_files import members as listed_members
from rex_stream.report.store_files import node_metadata, read_array

EXPLAINED, FAILED, RUNNING = "explained", "failed", "running"

#: Arrays that make a group an input's group, whatever method wrote it.
RESULT_ARRAYS = (
    "responsibility",
    "pertinent_positive",
    "pertinent_negative",
    "pertinent_positive_regions",
    "pertinent_negative_regions",
    "l2x_selection",
)

#: A lock whose heartbeat is older than this belongs to a writer that is gone (the lock's own).
STALE_AFTER_S = 60.0


@dataclass
class Curve:
    """One evaluation metric of one attribution: its score and its curve, if it has one."""

    metric: str
    attribution: str
    score: float
    curve: np.ndarray | None
    queries: int = 0


@dataclass
class Section:
    """One store group's contribution to an input: what it holds and how it was made."""

    store: str
    key: str
    kind: str  # "rex", "evaluation", "cem", "l2x" or "other"
    attributes: dict[str, Any]
    curves: list[Curve] = field(default_factory=list)
    #: where the group's files are read from when not ``store`` (an object store's local copy)
    root: str = ""
    #: the names in the group, listed once (each ``name in group`` is a store round trip)
    members: frozenset[str] = frozenset()
    #: the group through zarr, opened when first needed (never pickled: drawing processes
    #: open their own)
    opened: zarr.Group | None = field(default=None, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        """The group's folder in its store."""
        return Path(self.root or self.store) / self.key

    @property
    def group(self) -> zarr.Group:
        """The group through zarr (opened once)."""
        if self.opened is None:
            self.opened = zarr.open_group(str(self.folder), mode="r")
        return self.opened

    def array(self, name: str) -> np.ndarray | None:
        """The array ``name`` of the group, or None."""
        if name not in self.members:
            return None
        values = read_array(self.folder / name)
        if values is not None:
            return values
        node = self.group[name]
        return np.asarray(node[...]) if isinstance(node, zarr.Array) else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["opened"] = None
        return state

    @property
    def settings(self) -> dict[str, Any]:
        """The settings the group was made with."""
        value = self.attributes.get("settings")
        return value if isinstance(value, dict) else {}


@dataclass
class Entry:
    """One row of the report: an input (or a detection target) and everything about it."""

    key: str
    name: str
    status: str
    reason: str = ""
    sections: list[Section] = field(default_factory=list)
    class_id: int | None = None
    class_label: str = ""
    confidence: float | None = None
    area: float | None = None
    queries: int = 0
    wall_s: float = 0.0
    mode: str = ""
    #: for a detection target: its input's key and its own name (``detection 2``)
    input: str = ""
    target: str = ""

    def first(self, kind: str) -> Section | None:
        """The first section of ``kind``, if any."""
        return next((s for s in self.sections if s.kind == kind), None)


@dataclass
class Contents:
    """Everything the report shows: its entries and the stores they came from."""

    stores: list[str]
    entries: list[Entry]
    models: list[dict[str, Any]]
    #: local copies of object stores the sections read from (:meth:`close` removes them)
    copies: list[ObjectStoreCopy] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Remove the local copies of object stores (the sections cannot be read after)."""
        for copy in self.copies:
            copy.close()

    @property
    def counts(self) -> dict[str, int]:
        """Entries per status."""
        counts = {EXPLAINED: 0, FAILED: 0, RUNNING: 0}
        for entry in self.entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return counts


def read_contents(
    stores: Iterable[str | Path],
    summaries: Iterable[str | Path] = (),
    labels: tuple[str, ...] | None = None,
) -> Contents:
    """Read every store (with the failures recorded beside it, and those listed in ``--json``
    summaries) into entries, one per input key, in store order; raises :class:`InputError`
    for a path that is not a rex-stream store."""
    entries: dict[str, Entry] = {}
    names: list[str] = []
    copies: list[ObjectStoreCopy] = []
    try:
        for path in stores:
            if is_object_store(path):
                copies.append(copy_object_store(path))
                _read_object_store(copies[-1], entries)
                names.append(copies[-1].url)
                continue
            if "://" in str(path):  # file:///…: a local folder
                path = parse_store(str(path)).local_path()
            open_store(path)
            names.append(str(path))
            for key, attributes, inside in input_groups(Path(path)):
                section = read_section(str(path), key, attributes, inside)
                entry = entries.setdefault(key, _new_entry(key))
                entry.sections.append(section)
                _settle_status(entry, section, Path(path))
            _add_failures(entries, stored_failures(path))
    except BaseException:
        for copy in copies:
            copy.close()
        raise
    for path in summaries:
        for key, message in read_failures(path):
            if key not in entries and not any(e.name == key for e in entries.values()):
                entries[key] = Entry(key, key, FAILED, message)
    for entry in entries.values():
        _fill_facts(entry, labels)
    models = _models(entries.values())
    return Contents(names, list(entries.values()), models, copies)


def _read_object_store(copy: ObjectStoreCopy, entries: dict[str, Entry]) -> None:
    """The entries of an object store, read from its local copy: curves from the records'
    pack, a running input from its lease."""
    for key, attributes, inside in input_groups(copy.folder):
        section = read_section(copy.url, key, attributes, inside, root=str(copy.folder))
        if section.kind == "evaluation":
            section.curves = curves_of(copy.records(key, METRIC))
        entry = entries.setdefault(key, _new_entry(key))
        entry.sections.append(section)
        alive = partial(copy.writer_alive, key)
        _settle_status(
            entry, section, alive=alive, progress=partial(_object_progress, copy, section)
        )
    _add_failures(entries, copy.failures())


def _add_failures(entries: dict[str, Entry], failures: list[dict[str, Any]]) -> None:
    """Inputs that failed and never got a group."""
    for failure in failures:
        key = failure["name"]
        if key not in entries:
            reason = str(failure.get("error") or "failed")
            entries[key] = Entry(key, str(failure.get("input") or key), FAILED, reason)


def open_store(path: str | Path) -> zarr.Group:
    """The store's root group, read-only; one-line errors for anything else."""
    where = Path(path)
    if not where.exists():
        raise InputError(f"{where}: no such store")
    if not where.is_dir() or not (where / "zarr.json").is_file():
        raise InputError(f"{where} is not a rex-stream store (no Zarr group: zarr.json)")
    try:
        root = zarr.open_group(str(where), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{where} is not a rex-stream store ({exc})") from exc
    return root


def input_groups(
    folder: Path, prefix: str = ""
) -> list[tuple[str, dict[str, Any], frozenset[str]]]:
    """(key, attributes, member names) of every input's group, sorted by key, each group read
    once; a group holding per-target groups (detections) gives one per target, keyed
    ``input/target``."""
    found: list[tuple[str, dict[str, Any], frozenset[str]]] = []
    for name in listed_members(folder)[0]:
        if ("~" in name and name.endswith("new")) or name.startswith("."):
            continue  # an overwrite being built beside the old group
        attributes = (node_metadata(folder / name) or {}).get("attributes") or {}
        groups, arrays = listed_members(folder / name)
        inside = frozenset(groups) | frozenset(arrays)
        if "rex_stream" in attributes or set(RESULT_ARRAYS) & inside:
            found.append((prefix + name, attributes, inside))
        elif not prefix:
            found.extend(input_groups(folder / name, f"{name}/"))
    return found


def read_section(
    store: str, key: str, attributes: dict[str, Any], members: frozenset[str], root: str = ""
) -> Section:
    """What one input's group holds (read from ``root`` when not from ``store``)."""
    attributes = _plain(attributes)
    found = attributes.get("settings")
    settings: dict[str, Any] = found if isinstance(found, dict) else {}
    if "evaluation" in settings or METRIC in members:
        kind = "evaluation"
    elif "cem" in attributes or members & {"pertinent_positive", "pertinent_negative"}:
        kind = "cem"
    elif "l2x" in attributes or "l2x_selection" in members:
        kind = "l2x"
    elif "responsibility" in members or "search" in settings:
        kind = "rex"
    else:
        kind = "other"
    section = Section(store, key, kind, attributes, members=members, root=root)
    if kind == "evaluation" and not root:
        section.curves = read_curves(section.group)
    return section


def read_curves(group: zarr.Group) -> list[Curve]:
    """The evaluation group's committed (attribution, metric) results, in record order."""
    if METRIC not in set(group.group_keys()):
        return []
    records = group[METRIC]
    return curves_of(committed_records(records)) if isinstance(records, zarr.Group) else []


def curves_of(records: Mapping[int, Record]) -> list[Curve]:
    """The curves of committed evaluation records, in record order."""
    curves: list[Curve] = []
    for record in records.values():
        metric, attribution, result = from_record(record)
        curve = None if result.curve is None else np.asarray(result.curve, np.float64)
        curves.append(Curve(metric, attribution, float(result.score), curve, result.queries))
    return curves


def committed_records(records: zarr.Group) -> dict[int, Record]:
    """One kind's committed records by index, read only: those packed when the input finished
    and those still single (a record in both is read from its pack)."""
    names = sorted(records.array_keys())
    done: dict[int, Record] = {}
    for name in filter(is_pack_name, names):
        array = records[name]
        if isinstance(array, zarr.Array):
            done.update(read_pack(array, f"{records.path}/{name}"))
    for name in names:
        if not name.isdigit() or int(name) in done:
            continue
        array = records[name]
        attributes = dict(array.attrs) if isinstance(array, zarr.Array) else {}
        if isinstance(array, zarr.Array) and attributes.get("committed"):
            done[int(name)] = Record(int(name), np.asarray(array[...]), attributes)
    return dict(sorted(done.items()))


def read_failures(path: str | Path) -> list[tuple[str, str]]:
    """(input, one-line reason) of every failed input in a run's ``--json`` summary."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--summary {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--summary {path}: not a rex-stream --json summary ({exc})") from exc
    items = data if isinstance(data, list) else [data]
    failures = []
    for item in items:
        if isinstance(item, dict) and "error" in item and "input" in item:
            reason = str(item["error"]).splitlines()[0] if item["error"] else "failed"
            failures.append((str(item["input"]), reason))
    return failures


def writer_alive(store: Path, key: str) -> bool:
    """Whether a live process holds the group's lock (a run still writing it)."""
    holder = GroupLock.for_group(store, key).holder()
    if holder is None:
        return False
    if time.time() - holder.heartbeat > STALE_AFTER_S:
        return False
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _settle_status(
    entry: Entry,
    section: Section,
    store: Path | None = None,
    *,
    alive: Callable[[], bool] | None = None,
    progress: Callable[[], str] | None = None,
) -> None:
    """An entry is failed or running when any of its groups is; failed wins. Whether a
    writer is alive and how far it got: the local store's lock and records, unless given."""
    attributes = section.attributes
    if isinstance(attributes.get("error"), str):
        entry.status, entry.reason = FAILED, attributes["error"].splitlines()[0]
        return
    if attributes.get("complete") is True or entry.status == FAILED:
        return
    running = (
        alive() if alive is not None else store is not None and writer_alive(store, section.key)
    )
    done = progress() if progress is not None else _progress(section)
    if running:
        entry.status, entry.reason = RUNNING, f"being written ({done})"
    else:
        entry.status = FAILED
        entry.reason = f"stopped before it finished ({done}); continue with --resume"


def _object_progress(copy: ObjectStoreCopy, section: Section) -> str:
    """How far an unfinished group on an object store got, in its records."""
    for kind, what in (("ledger", "iterations"), (METRIC, "metric results"), ("cem_chain", "")):
        done = len(copy.records(section.key, kind))
        if done:
            return f"{done} {what or 'chain records'} committed"
    return "nothing committed yet"


def _progress(section: Section) -> str:
    """How far an unfinished group got, in its own records."""
    for kind, what in (("ledger", "iterations"), (METRIC, "metric results"), ("cem_chain", "")):
        records = section.group[kind] if kind in section.members else None
        if isinstance(records, zarr.Group):
            done = len(committed_records(records))
            return f"{done} {what or 'chain records'} committed"
    return "nothing committed yet"


def _new_entry(key: str) -> Entry:
    """An explained entry for ``key`` (a detection target's knows its input and target)."""
    input_key, target = _target_of(key)
    return Entry(key, key, EXPLAINED, input=input_key, target=target)


def _target_of(key: str) -> tuple[str, str]:
    """(input key, target name) of a detection target's group (``photo__detection-2`` or a
    nested ``photo/target``); ("", "") for an input's own group."""
    if GROUP_INFIX in key:
        head, _, index = key.rpartition(GROUP_INFIX)
        return head, f"detection {index}"
    if "/" in key:
        head, _, tail = key.partition("/")
        return head, tail
    return "", ""


def _fill_facts(entry: Entry, labels: tuple[str, ...] | None) -> None:
    """The index columns, from the first section that knows each."""
    for section in entry.sections:
        attributes = section.attributes
        source = attributes.get("source")
        if isinstance(source, str) and entry.name == entry.key:
            entry.name = f"{source} · {entry.target}" if entry.target else source
        method = attributes.get("cem") or attributes.get("l2x") or {}
        target = attributes.get("target") or method.get("target")
        if isinstance(target, dict) and entry.class_id is None and "class" in target:
            entry.class_id = int(target["class"])
            entry.confidence = _number(target.get("confidence"))
            model = (section.settings.get("model") or {}).get("name") or attributes.get("model")
            named = labels or labels_for_model(model if isinstance(model, str) else None)
            label = target.get("label")
            entry.class_label = (
                f"{label} ({entry.class_id})" if label else class_name(entry.class_id, named)
            )
        explanation = attributes.get("explanation")
        if entry.area is None and isinstance(explanation, dict):
            entry.area = _number(explanation.get("area"))
        if entry.area is None and section.kind == "l2x":
            selection = section.array("l2x_selection")
            entry.area = float(np.mean(selection > 0)) if selection is not None else None
        stats = attributes.get("stats") or method.get("stats") or {}
        entry.queries += int(stats.get("queries") or method.get("queries") or 0)
        entry.queries += sum(c.queries for c in section.curves)
        entry.wall_s += float(stats.get("wall_s") or 0.0)
        if not entry.mode and isinstance(attributes.get("mode"), str):
            entry.mode = attributes["mode"]


def _models(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Each distinct (model name, identity) the groups were made with."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for section in entry.sections:
            model = section.settings.get("model") or {}
            name = model.get("name") or section.attributes.get("model")
            identity = model.get("identity") or section.attributes.get("model_identity") or {}
            explainer = section.settings.get("explainer")
            if not name and isinstance(explainer, dict):
                name = explainer.get("model")
            if not name:
                continue
            known = seen.setdefault(str(name), {"name": name, "identity": identity})
            if identity and not known["identity"]:
                known["identity"] = identity
    return list(seen.values())


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


def _plain(value: Any) -> Any:
    """Attributes as plain JSON values (zarr may hand back its own mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
