"""Where a store lives: a local folder, or a prefix in an object store named by a URL.

``--store runs.zarr`` and ``--store file:///data/runs.zarr`` are local folders (today's store);
``--store s3://bucket/runs.zarr``, ``memory://runs.zarr`` and the other fsspec protocols are
object stores, reached through zarr's :class:`~zarr.storage.FsspecStore`. Any other
``scheme://`` is refused in one line: it must never become a local folder named ``s3:``.

Credentials come from each cloud's standard environment and files (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE`` …) through the filesystem
library itself; ``--storage-option KEY=VALUE`` adds what they do not cover. Options are never
shown: :attr:`StoreLocation.url` carries no credentials, and a URL that embeds some
(``s3://key:secret@bucket``) is refused rather than echoed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from rex_stream.errors import ConfigError, StoreError

#: Object-store protocols whose buckets come first in the path (a store needs a prefix too).
BUCKETED = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
#: What to install for each protocol's filesystem library.
EXTRAS = {"s3": "rex-stream[s3]", "s3a": "rex-stream[s3]", "gs": "gcsfs", "gcs": "gcsfs"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


@dataclass(frozen=True)
class StoreLocation:
    """A parsed ``--store``: a local folder, or an object-store protocol, path and options."""

    protocol: str  # "file" for a local folder
    path: str  # the folder, or "bucket/prefix" without the scheme
    options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_local(self) -> bool:
        """Whether this is a folder on the local disk (today's store)."""
        return self.protocol == "file"

    @property
    def url(self) -> str:
        """The store as the user named it, without options (safe to print)."""
        return self.path if self.is_local else f"{self.protocol}://{self.path}"

    def local_path(self) -> Path:
        """The local folder (only for :attr:`is_local` locations)."""
        return Path(self.path)

    def child(self, suffix: str) -> StoreLocation:
        """A sibling location next to this one: ``<path><suffix>`` (locks, records)."""
        return StoreLocation(self.protocol, self.path.rstrip("/") + suffix, self.options)

    def filesystem_options(self) -> dict[str, Any]:
        """The options the filesystem is made with: the defaults, then the user's own."""
        defaults = FILESYSTEM_DEFAULTS.get(self.protocol, NO_LISTINGS_CACHE)
        return {**defaults, **self.options}

    def filesystem(self) -> Any:
        """The fsspec filesystem (synchronous API) for this protocol and its options."""
        import fsspec

        try:
            return fsspec.filesystem(self.protocol, **self.filesystem_options())
        except ImportError as exc:
            raise StoreError(_install_hint(self.protocol, exc)) from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"--storage-option for {self.protocol}:// not accepted: {type(exc).__name__}",
                key="--storage-option",
            ) from None


#: Filesystem defaults for object stores (a ``--storage-option`` of the same name wins):
#: no listings cache — fsspec answers "no such file" from a cached listing of the parent
#: folder, so an object another process wrote after this one listed (a pack, a successor's
#: lease, a head) would read as missing — and, on S3, one GET per read instead of a HEAD
#: (the object's size, for a ranged download of large objects) then a GET.
FILESYSTEM_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "s3": {"use_listings_cache": False, "max_concurrency": 1},
    "s3a": {"use_listings_cache": False, "max_concurrency": 1},
}
NO_LISTINGS_CACHE: Mapping[str, Any] = {"use_listings_cache": False}


def parse_store(
    store: str | Path | StoreLocation, options: Mapping[str, Any] | None = None
) -> StoreLocation:
    """The location of ``store``: a path or ``file://`` URL is local, any other scheme an
    object store (refused in one line when fsspec does not know it or its library is absent)."""
    if isinstance(store, StoreLocation):
        return store
    text = str(store)
    match = _SCHEME.match(text)
    if match is None:
        if options:
            raise ConfigError(
                "--storage-option is for object stores (--store s3://…), not a local folder",
                key="--storage-option",
            )
        return StoreLocation("file", text)
    protocol, rest = match.group(1).lower(), match.group(2)
    if protocol == "file":
        if not rest.startswith("/"):
            raise StoreError(f"--store {text}: a file:// URL needs an absolute path (file:///…)")
        return StoreLocation("file", unquote(rest))
    if "@" in rest.split("/", 1)[0]:
        raise StoreError(
            f"--store {protocol}://…: credentials in the URL are refused (they would show in "
            "logs); use the environment (e.g. AWS_ACCESS_KEY_ID) or --storage-option"
        )
    path = rest.strip("/")
    _check_protocol(protocol)
    if not path or (protocol in BUCKETED and "/" not in path):
        raise StoreError(
            f"--store {protocol}://{path}: name a prefix inside the bucket "
            f"({protocol}://bucket/runs.zarr), not the bucket itself"
        )
    if options is None:
        options = _REMEMBERED.get(f"{protocol}://{path}", {})
    return StoreLocation(protocol, path, dict(options))


#: Storage options given on the command line, by store URL (the CLI remembers them once, so
#: that every layer between it and the store can keep passing the URL as a plain string).
_REMEMBERED: dict[str, dict[str, Any]] = {}


def remember_storage_options(store: str, options: Mapping[str, Any]) -> StoreLocation:
    """Parse ``store`` with ``options`` and remember them for later parses of the same URL."""
    location = parse_store(store, options)
    if not location.is_local:
        _REMEMBERED[location.url] = dict(options)
    return location


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as storage options; values that read as JSON (numbers, true,
    objects) are taken as such, dotted keys nest (``client_kwargs.region_name=eu-west-1``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        if not equals or not key.strip():
            raise ConfigError(
                f"--storage-option {key.strip() or pair!r}: expected KEY=VALUE",
                key="--storage-option",
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.strip().split(".")
        level = options
        for name in parents:
            nested = level.setdefault(name, {})
            if not isinstance(nested, dict):
                raise ConfigError(
                    f"--storage-option {key.strip()}: {name} is given twice", key="--storage-option"
                )
            level = nested
        level[leaf] = value
    return options


def _check_protocol(protocol: str) -> None:
    """fsspec must know ``protocol``, and its library must be installed."""
    try:
        from fsspec.registry import get_filesystem_class
    except ImportError:
        raise StoreError(
            f"--store {protocol}://…: object stores need fsspec: pip install 'rex-stream[s3]'"
        ) from None
    try:
        get_filesystem_class(protocol)
    except ImportError as exc:
        raise StoreError(_install_hint(protocol, exc)) from None
    except ValueError:
        raise StoreError(
            f"--store {protocol}://…: unknown storage protocol {protocol!r} (a local folder "
            "is a plain path; object stores: s3://, gs://, az://, memory://)"
        ) from None


def _install_hint(protocol: str, exc: BaseException) -> str:
    package = EXTRAS.get(protocol, "the fsspec library for it")
    return (
        f"--store {protocol}://…: {protocol} needs a library that is not installed "
        f"({type(exc).__name__}): pip install '{package}'"
    )
