"""What an HTTP status means: the error a user can act on, transient or not, and when to retry.

The one mapping from a non-2xx reply to :mod:`rex_stream.errors`; a batch refused for its size
becomes :class:`BatchTooLarge`, which the backend answers by halving the batch.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Mapping

from rex_stream.adapters.http.protocols import ReplyError, one_line, parse_json
from rex_stream.errors import BackendError, TransientBackendError

# Replies that mean "this batch is too large" without being a 413 (Triton answers 400 with this).
TOO_LARGE = re.compile(r"batch[-_ ]?size must be <=|too large|exceeds? .*max", re.IGNORECASE)
#: Server errors that will not pass by retrying (not implemented, HTTP version not supported…).
NOT_TRANSIENT = frozenset({501, 505, 506, 508, 510, 511})


class BatchTooLarge(Exception):
    """The server refused a batch for its size; the caller halves it."""


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def server_message(body: bytes) -> str:
    """The error text of a reply: ``{"error": …}`` / ``{"detail": …}`` or the body itself."""
    text = body[:2000].decode("utf-8", "replace")
    try:
        document = parse_json(body) if body.strip()[:1] in (b"{", b"[") else None
    except ReplyError:
        document = None
    if isinstance(document, dict):
        for key in ("error", "detail", "message", "msg"):
            if key in document:
                return one_line(str(document[key]))
    return one_line(text)


def undecodable(where: str, problem: ReplyError, body: bytes) -> BackendError:
    """The error for a 2xx reply without the promised scores: the server's own message when
    the body is an error document (``{"error": "CUDA out of memory…"}`` sent with a 200)."""
    try:
        document = parse_json(body) if body.strip()[:1] == b"{" else None
    except ReplyError:
        document = None
    if isinstance(document, dict):
        for key in ("error", "detail", "message"):
            if key in document and not isinstance(document[key], (dict, list)):
                return BackendError(
                    f"{where} answered with an error instead of scores: "
                    f"{one_line(str(document[key]))}"
                )
    return BackendError(f"{where}: {problem}")


def check_status(
    where: str,
    status: int,
    body: bytes,
    header_names: tuple[str, ...],
    headers: Mapping[str, str] | None = None,
) -> None:
    """Turn a non-2xx status into the error a user can act on (5xx and 429 transient).

    ``header_names`` are the custom headers sent (names only: their values are secrets).
    """
    if 200 <= status < 300:
        return
    message = server_message(body)
    if status == 413 or (status == 400 and TOO_LARGE.search(message)):
        raise BatchTooLarge(message)
    if status in (401, 403):
        sent = ", ".join(header_names) or "no custom headers"
        hint = (
            "check the credentials those headers carry"
            if header_names
            else "pass one with header.Authorization=env:VAR"
        )
        raise BackendError(
            f"{where} answered {status} ({'unauthorized' if status == 401 else 'forbidden'})"
            f"; sent {sent} (values not shown); {hint}"
        )
    if status == 404:
        raise BackendError(
            f"{where} answered 404 (not found: check the model name and URL)"
            + (f": {message}" if message else "")
        )
    kind = "server error" if status >= 500 else "request rejected"
    text = f"{where} answered {status} ({kind}): {message or 'no message'}"
    if status == 429 or (status >= 500 and status not in NOT_TRANSIENT):
        retry_after = retry_after_s(headers.get("Retry-After") if headers else None)
        raise TransientBackendError(text, retry_after, overloaded=status == 429)
    raise BackendError(text)
