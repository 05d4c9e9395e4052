"""What a store keeps of a method's work: a :class:`Record` (a float64 table and its scalar
attributes) and its checksum; shared by the local store and the object store."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rex_stream.engine.settings_diff import differences, plain
from rex_stream.errors import StoreError

#: The attribute holding a committed record's checksum.
DIGEST = "sha256"


@dataclass(frozen=True)
class Record:
    """One durable unit of a method's work: a float64 table and its scalar attributes."""

    index: int
    table: np.ndarray
    attributes: Mapping[str, Any] = field(default_factory=dict)


def table_digest(table: np.ndarray) -> str:
    """SHA-256 of a float64 table's shape and little-endian bytes: what a record must read back."""
    data = np.ascontiguousarray(table, dtype="<f8")
    digest = hashlib.sha256(repr(data.shape).encode())
    digest.update(data.data)
    return digest.hexdigest()


FORMAT_VERSION = 2  # 2: records carry a checksum, settings the model's identity

#: Settings to store, or a function of the stored ones (None for a new group) giving them.
Settings = Mapping[str, Any] | Callable[[Mapping[str, Any] | None], Mapping[str, Any]]


def check_resumable(
    attributes: Mapping[str, Any],
    settings: Callable[[Mapping[str, Any] | None], Mapping[str, Any]],
    location: str,
) -> None:
    """Refuse to resume a group of another store format or made with other settings."""
    written = attributes.get("rex_stream")
    made = written.get("format") if isinstance(written, Mapping) else None
    if made != FORMAT_VERSION:
        raise StoreError(
            f"{location} was written in store format {made} (this rex-stream writes "
            f"format {FORMAT_VERSION}, with checksums and the model's identity); pass "
            "--overwrite to explain this input again"
        )
    stored = attributes.get("settings")
    wanted = plain(settings(stored if isinstance(stored, Mapping) else None))
    if stored != wanted:
        raise StoreError(
            f"{location} was created with different settings "
            f"({differences(stored, wanted)}); use another --store, "
            "the same settings, or --overwrite"
        )


def new_group_attributes(
    settings: Callable[[Mapping[str, Any] | None], Mapping[str, Any]],
) -> dict[str, Any]:
    """The attributes a new group starts with: the format, the version, the settings."""
    return {
        "rex_stream": {"format": FORMAT_VERSION, "version": package_version()},
        "settings": plain(settings(None)),
    }


def package_version() -> str:
    """The installed rex-stream's version (recorded in every store it makes)."""
    try:
        return importlib.metadata.version("rex-stream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- records as bytes (object stores)


def encode_record(record: Record) -> bytes:
    """One record as bytes: a JSON header line then the float64 table."""
    table = np.ascontiguousarray(record.table, dtype="<f8")
    header = {
        "index": record.index,
        "shape": list(table.shape),
        "attributes": dict(record.attributes),
        DIGEST: table_digest(table),
    }
    return json.dumps(header).encode() + b"\n" + table.tobytes()


def decode_record(data: bytes) -> tuple[Record, bool]:
    """The record in ``data`` and whether its checksum holds (ValueError if unreadable)."""
    line, _, body = data.partition(b"\n")
    header = json.loads(line)
    table = np.frombuffer(body, dtype="<f8").reshape(header["shape"]).astype(np.float64)
    record = Record(int(header["index"]), table, header["attributes"])
    return record, header[DIGEST] == table_digest(table)


def pack_records(blobs: list[bytes]) -> bytes:
    """Several encoded records as one object (each prefixed by its length)."""
    return b"".join(struct.pack("<Q", len(b)) + b for b in blobs)


def unpack_records(data: bytes) -> list[bytes]:
    """The encoded records of a pack."""
    blobs, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from("<Q", data, at)
        if at + 8 + size > len(data):
            raise ValueError("a pack or batch cut short")
        blobs.append(data[at + 8 : at + 8 + size])
        at += 8 + size
    return blobs
