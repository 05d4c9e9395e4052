"""Wire formats of the HTTP backend: the codec interface, row JSON and custom templates.

A codec turns a batch into a request body and a reply body back into scores. It knows nothing
about sessions, URLs or retries; malformed replies raise :class:`ReplyError`, which the adapter
turns into a one-line :class:`~rex_stream.errors.BackendError` naming the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rex_stream.engine.inputs import is_text, text_rows
from rex_stream.errors import ConfigError


def one_line(text: str, limit: int = 240) -> str:
    """Collapse whitespace so server messages fit the one-line error contract.

    A long message keeps its start and its end: servers that send tracebacks put the cause last.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + " … " + text[len(text) - (limit - head - 3) :]


class ReplyError(Exception):
    """A reply that does not have the shape the protocol promises (message is one line)."""


#: Consecutive pieces of a request body: bytes, or a flat byte view of an array that goes out
#: as it is (a batch of tensors is never copied into a joined body).
BodyParts = tuple[bytes | memoryview, ...]


@dataclass(frozen=True)
class EncodedRequest:
    """A request body (one ``bytes``, or parts sent one after another) and its headers."""

    content: bytes | BodyParts
    headers: Mapping[str, str]

    @property
    def parts(self) -> BodyParts:
        """The body's pieces, in order."""
        return (self.content,) if isinstance(self.content, bytes) else self.content

    @property
    def body(self) -> bytes:
        """The body as one ``bytes`` (a copy when it is in several parts)."""
        return self.content if isinstance(self.content, bytes) else b"".join(self.content)


class Codec(Protocol):
    """Encodes batches into request bodies and decodes reply bodies into raw score arrays."""

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """Build the request body for one batch."""
        ...

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Extract the scores from a reply (shape is checked by the adapter)."""
        ...


def dumps(document: Any) -> bytes:
    # allow_nan=False: a NaN in a request means a bug upstream, not something to send.
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def parse_json(body: bytes) -> Any:
    """Parse a reply body as JSON, or raise ReplyError quoting its first bytes."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        start = body[:60].decode("utf-8", "replace").replace("\n", " ")
        raise ReplyError(f"reply is not valid JSON ({reason}); it starts with {start!r}") from exc


def as_score_array(values: Any, what: str) -> np.ndarray:
    """Turn a JSON value (nested lists of numbers) into a float array, or raise ReplyError."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ReplyError(f"{what} is not a rectangular array of numbers") from exc
    return array


class RowsCodec:
    """Row-oriented JSON (TF Serving, TorchServe): ``{"instances": [...]}`` → predictions."""

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """One nested list per input (a string per input for text), under ``instances``."""
        instances = text_rows(batch) if is_text(batch.dtype) else batch.tolist()
        return EncodedRequest(dumps({"instances": instances}), {"Content-Type": "application/json"})

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Accept ``{"predictions": rows}`` (TF Serving) or a bare list of rows (TorchServe)."""
        document = parse_json(body)
        if isinstance(document, dict):
            if "predictions" not in document:
                keys = ", ".join(map(str, document)) or "none"
                raise ReplyError(f"reply has no 'predictions' key (keys: {keys})")
            document = document["predictions"]
        if not isinstance(document, list):
            raise ReplyError("reply's predictions are not a list of rows")
        return as_score_array(document, "predictions")


PLACEHOLDERS = ("{{batch}}", "{{batch_flat}}", "{{batch_shape}}", "{{batch_size}}")


@dataclass(frozen=True)
class CustomTemplate:
    """A declarative wire format: a request body with placeholders, a path to the scores.

    The template file is JSON: ``{"request": {...}, "scores": "result.scores", "flat": false}``.
    In ``request``, a string value that is exactly ``{{batch}}`` becomes the batch as nested
    lists, ``{{batch_flat}}`` a flat list, ``{{batch_shape}}`` its shape, ``{{batch_size}}`` the
    number of inputs. ``scores`` is a dotted path into the reply (list indices are numbers, e.g.
    ``outputs.0.data``); with ``"flat": true`` a flat list is reshaped to one row per input.
    """

    request: Any
    scores_path: tuple[str, ...]
    flat: bool = False

    @classmethod
    def load(cls, path: str) -> CustomTemplate:
        """Read and validate a template file; ConfigError names the file and the problem."""
        try:
            document = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read template={path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"template={path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict) or not {"request", "scores"} <= document.keys():
            raise ConfigError(f"template={path} needs the keys 'request' and 'scores'")
        unknown = set(document) - {"request", "scores", "flat"}
        if unknown:
            raise ConfigError(f"template={path} has unknown keys: {', '.join(sorted(unknown))}")
        scores = document["scores"]
        if not isinstance(scores, str) or not scores.strip("$."):
            raise ConfigError(f"template={path}: 'scores' must be a dotted path such as a.b.0")
        if "{{batch" not in json.dumps(document["request"]):
            raise ConfigError(f"template={path}: 'request' has no {{{{batch}}}} placeholder")
        path_parts = tuple(scores.removeprefix("$").strip(".").split("."))
        return cls(document["request"], path_parts, bool(document.get("flat", False)))


class CustomCodec:
    """Fills a :class:`CustomTemplate` with each batch and follows its path to the scores."""

    def __init__(self, template: CustomTemplate) -> None:
        self.template = template

    def _fill(self, node: Any, batch: np.ndarray) -> Any:
        if isinstance(node, dict):
            return {key: self._fill(value, batch) for key, value in node.items()}
        if isinstance(node, list):
            return [self._fill(value, batch) for value in node]
        if node == "{{batch}}":
            return batch.tolist()
        if node == "{{batch_flat}}":
            return batch.ravel().tolist()
        if node == "{{batch_shape}}":
            return list(batch.shape)
        if node == "{{batch_size}}":
            return len(batch)
        return node

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """The template's request with the placeholders filled in."""
        body = dumps(self._fill(self.template.request, batch))
        return EncodedRequest(body, {"Content-Type": "application/json"})

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Follow the scores path; reshape a flat list when the template says so."""
        node = parse_json(body)
        walked: list[str] = []
        for part in self.template.scores_path:
            walked.append(part)
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise ReplyError(f"reply has nothing at {'.'.join(walked)}") from exc
        scores = as_score_array(node, ".".join(walked))
        if self.template.flat:
            if scores.ndim != 1 or scores.size % max(batch_size, 1):
                raise ReplyError(
                    f"{'.'.join(walked)} holds {scores.size} values, not a multiple of the "
                    f"batch size {batch_size}"
                )
            scores = scores.reshape(batch_size, -1)
        return scores
