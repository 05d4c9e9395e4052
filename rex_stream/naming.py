"""Store group and output names for inputs: collision-free, stable, readable where possible.

A name is a function of one input's path alone (relative to the directory of a directory run),
so it never changes when other files come or go, and a resumed run finds its group again.

- A plain path keeps its spelling: ``photo.jpg`` → ``photo.jpg``, ``cats/tom.png`` →
  ``cats__tom.png`` (``__`` joins the path's parts).
- Any other path (non-ASCII letters, spaces, newlines, a leading ``.``, ``-`` or ``_``, a part
  holding ``__``, a very long name) gets a readable approximation plus ``~`` and 12 hex digits
  of the SHA-256 of its exact spelling: ``猫.jpg`` → ``jpg~1b2c…``.

Plain names never hold ``~`` and hashed names always do, and splitting a plain name on ``__``
gives back its parts, so two different paths never share a name (short of a 48-bit hash
collision).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath

from rex_stream.errors import StoreError

#: One plain part of a path: starts with a letter or digit, no ``_`` at either end, no ``__``.
_PLAIN_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9.-])?")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASHED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*~[0-9a-f]{12}|input~[0-9a-f]{12}")
#: Longest readable part: leaves room for ``~hash`` and ``-heatmap.png`` under 255 bytes.
MAX_READABLE = 96
SEPARATOR = "__"


def input_name(relative: str | PurePath) -> str:
    """The store group and output name of an input at path ``relative``."""
    parts = PurePath(relative).parts if isinstance(relative, PurePath) else (relative,)
    joined = SEPARATOR.join(parts)
    if (
        all(_PLAIN_PART.fullmatch(p) and SEPARATOR not in p for p in parts)
        and len(joined) <= MAX_READABLE
    ):
        return joined
    exact = "/".join(parts).encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(exact).hexdigest()[:12]
    readable = SEPARATOR.join(_UNSAFE.sub("_", p) for p in parts).lstrip("._-")
    readable = readable[:MAX_READABLE].rstrip("_") or "input"
    return f"{readable}~{digest}"


def check_name(name: str) -> str:
    """``name`` if it can be a store group and file name as it is; else a StoreError."""
    plain = all(_PLAIN_PART.fullmatch(p) for p in name.split(SEPARATOR))
    if (plain or _HASHED.fullmatch(name)) and len(name) <= MAX_READABLE + 13:
        return name
    raise StoreError(
        f"{name!r} cannot name a store group: use letters, digits, '.', '-' and '_' "
        f"(starting with a letter or digit, at most {MAX_READABLE} characters)"
    )
