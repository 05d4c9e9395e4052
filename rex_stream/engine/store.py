"""The Zarr store: one group per explained input, durable record by record.

The seam between the engine and the methods: the store knows nothing of any method. A method
hands it :class:`Record` s — a numeric table plus a few scalar attributes, filed under a *kind*
(``"ledger"`` for the causal method's iterations; the evaluation, CEM and L2X wings file their
own kinds) and an index — and reads back the ones that were completely written. Turning a
method's own results into records and back is the method's business (e.g.
``rex_stream.causal.records``).

Layout of ``<store>/<input key>/`` (readable with plain ``zarr`` or xarray):

- attributes: ``rex_stream`` (format and package version), ``settings`` (everything that
  shapes the map, seed included), ``target`` (class, confidence), and when finished ``stats``,
  ``explanation`` (confidence, area), ``evaluation`` (insertion/deletion AUC);
- ``ledger/<iteration>``: float64 table, one row per contribution:
  ``start[0..d), stop[0..d), class, amount``; attribute ``committed`` is set only after the
  rows are written, so a half-written iteration is never taken for a finished one;
- ``responsibility``: float32 map of the target class over the spatial axes (chunked);
- ``explanation``: uint8 mask of the sufficient explanation over the spatial axes.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rex_stream.errors import StoreError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Record:
    """One durable unit of a method's work: a float64 table and its scalar attributes."""

    index: int
    table: np.ndarray
    attributes: Mapping[str, Any] = field(default_factory=dict)


class ExplanationStore:
    """One input's group in a Zarr store."""

    def __init__(self, group: zarr.Group, ndim: int, location: str) -> None:
        self.group = group
        self.ndim = ndim
        self.location = location

    @classmethod
    def open(
        cls,
        path: str | Path,
        key: str,
        settings: Mapping[str, Any],
        ndim: int,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> ExplanationStore:
        """Open (or create) the group for ``key``, checking that a resumed group matches."""
        path = Path(path)
        location = f"{path}/{key}"
        try:
            root = zarr.open_group(str(path), mode="a")
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot open or create the Zarr store {path}: {exc}") from exc
        settings = _plain(settings)
        if key in root:
            if overwrite:
                _remove(path / key)
            elif not resume:
                raise StoreError(
                    f"{location} already exists: pass --resume to continue it "
                    "or --overwrite to start again"
                )
            else:
                group = root[key]
                if not isinstance(group, zarr.Group):
                    raise StoreError(f"{location} is not a rex-stream group")
                stored = group.attrs.get("settings")
                if stored != settings:
                    raise StoreError(
                        f"{location} was created with different settings "
                        f"({_differences(stored, settings)}); use another --store, "
                        "the same settings, or --overwrite"
                    )
                return cls(group, ndim, location)
        try:
            group = root.create_group(key)
            group.attrs.update(
                {
                    "rex_stream": {"format": FORMAT_VERSION, "version": _version()},
                    "settings": settings,
                }
            )
        except OSError as exc:
            raise StoreError(f"cannot write to the Zarr store {path}: {exc}") from exc
        return cls(group, ndim, location)

    @staticmethod
    def stored_settings(path: str | Path, key: str) -> dict[str, Any] | None:
        """The settings a store holds for ``key``, or None if there is no such group."""
        try:
            root = zarr.open_group(str(path), mode="r")
            return dict(root[key].attrs.get("settings", {}))  # type: ignore[arg-type]
        except (FileNotFoundError, KeyError, OSError, ValueError):
            return None

    def committed(self, kind: str) -> dict[int, Record]:
        """Records of ``kind`` that were completely written, by index."""
        if kind not in self.group:
            return {}
        records = self.group[kind]
        if not isinstance(records, zarr.Group):
            return {}
        done: dict[int, Record] = {}
        for name in sorted(records.array_keys()):
            try:
                array = records[name]
                if not isinstance(array, zarr.Array):
                    continue
                attrs: dict[str, Any] = dict(array.attrs)
                if not attrs.pop("committed", False):
                    continue
                table = np.asarray(array[:])
            except Exception as exc:  # a torn write from a killed run: redo that record
                logger.warning("ignoring unreadable %s record %s: %s", kind, name, exc)
                continue
            done[int(name)] = Record(int(name), table, attrs)
        return done

    def commit(self, kind: str, record: Record) -> None:
        """Write one record's table, then mark it committed (the mark is written last)."""
        table = np.asarray(record.table, dtype=np.float64)
        name = f"{kind}/{record.index:06d}"
        rows = max(1, table.shape[0])
        try:
            array = self.group.create_array(
                name,
                shape=table.shape,
                dtype="float64",
                chunks=(rows, *table.shape[1:]),
                attributes={"committed": False},
                overwrite=True,
            )
            if table.size:
                array[:] = table
            array.update_attributes({**_plain(record.attributes), "committed": True})
        except OSError as exc:
            raise StoreError(
                f"cannot write {kind} {record.index} to {self.location}: {exc}"
            ) from exc

    def update_attributes(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the group's attributes."""
        try:
            self.group.attrs.update(_plain(values))
        except OSError as exc:
            raise StoreError(f"cannot write to {self.location}: {exc}") from exc

    def attributes(self) -> dict[str, Any]:
        """The group's attributes."""
        return dict(self.group.attrs)

    def write_array(self, name: str, values: np.ndarray, dtype: str, chunk_edge: int = 256) -> None:
        """Write a dense spatial array (map or mask), chunked."""
        chunks = tuple(min(extent, chunk_edge) for extent in values.shape)
        try:
            array = self.group.create_array(
                name, shape=values.shape, dtype=dtype, chunks=chunks, fill_value=0, overwrite=True
            )
            # slab by slab: a whole-array astype would copy a large volume's map at once
            step = max(1, chunks[0]) if values.ndim else 1
            if values.ndim == 0:
                array[...] = values.astype(dtype)
            for first in range(0, values.shape[0] if values.ndim else 0, step):
                array[first : first + step] = values[first : first + step].astype(dtype)
        except OSError as exc:
            raise StoreError(f"cannot write {name} to {self.location}: {exc}") from exc


def _version() -> str:
    from rex_stream import __version__

    return __version__


def _remove(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc}") from exc


def _plain(value: Any) -> Any:
    """JSON-compatible copy (tuples → lists, enums → values, numpy scalars → Python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return _plain(value.value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _differences(stored: Any, wanted: Mapping[str, Any]) -> str:
    if not isinstance(stored, Mapping):
        return "no settings recorded"
    keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    shown = ", ".join(f"{k}: {stored.get(k)!r} → {wanted.get(k)!r}" for k in keys[:4])
    return shown + (" …" if len(keys) > 4 else "")
