"""Options of the HTTP backend: parsed and checked once, before any connection is made.

``settings.options`` arrive as strings (``--backend-option KEY=VALUE`` on the command line);
:meth:`HttpOptions.parse` turns them into typed values and rejects unknown keys and bad values
with a :class:`~rex_stream.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from yarl import URL

from rex_stream.adapters.http.protocols import CustomTemplate
from rex_stream.engine.options import option_flag
from rex_stream.errors import ConfigError

logger = logging.getLogger("rex_stream.adapters.http.backend")

PROTOCOLS = ("v2", "v2-json", "v2-binary", "rows", "custom")
KEYS = (
    "protocol", "template", "max_batch", "gzip", "ca_bundle", "insecure", "input", "output",
    "allow_insecure_redirect",
)  # fmt: skip
HEADER_PREFIX = "header."


def public_url(url: URL) -> str:
    """The URL without credentials, query or fragment (any of them may carry secrets)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def _positive_int(options: Mapping[str, str], key: str) -> int | None:
    raw = options.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"option {key}={raw!r}: expected a positive integer")
    return value


def header_value(name: str, source: str) -> str:
    """Resolve ``env:VAR`` / ``file:PATH`` / a literal into a header value."""
    if source.startswith("env:"):
        variable = source[4:]
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"header {name}: environment variable {variable} is not set")
        return value.strip()
    if source.startswith("file:"):
        try:
            return Path(source[5:]).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"header {name}: cannot read {source[5:]}: {exc.strerror or exc}"
            ) from exc
    return source


def _tls(options: Mapping[str, str], url: URL) -> ssl.SSLContext | bool:
    """TLS verification on by default; a private CA bundle; or off, loudly."""
    if option_flag(options, "insecure"):
        logger.warning("TLS certificate verification is OFF for %s (insecure=true)", url.host)
        return False
    bundle = options.get("ca_bundle")
    if bundle:
        try:
            return ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ca_bundle={bundle}: cannot load it ({exc})") from exc
    return True


def _protocol(url: URL, options: Mapping[str, str]) -> str:
    protocol = options.get("protocol")
    if protocol is None:
        if options.get("template"):
            return "custom"
        return "v2" if "/v2/models/" in url.path else "rows"
    protocol = protocol.strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"option protocol={protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if protocol.startswith("v2") and "/v2/models/" not in url.path:
        raise ConfigError(
            f"protocol={protocol} needs a model URL such as http://host:8000/v2/models/NAME, "
            f"not {public_url(url)}"
        )
    if protocol == "custom" and not options.get("template"):
        raise ConfigError("protocol=custom needs template=PATH (a JSON request template)")
    return protocol


@dataclass(frozen=True)
class HttpOptions:
    """The HTTP backend's knobs, typed. Header values are secrets: kept out of ``repr``."""

    protocol: str
    template: CustomTemplate | None = None
    max_batch: int | None = None
    gzip: bool = False
    tls: ssl.SSLContext | bool = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    input_name: str | None = None
    output_name: str | None = None
    insecure_redirect: bool = False  # follow https → http redirects (never with the headers)

    @property
    def header_names(self) -> tuple[str, ...]:
        """Names of the custom headers, the only part of them that messages may show."""
        return tuple(self.headers)

    @classmethod
    def parse(cls, url: URL, options: Mapping[str, str]) -> HttpOptions:
        """Check every option; ConfigError names the first bad one."""
        unknown = [k for k in options if k not in KEYS and not k.startswith(HEADER_PREFIX)]
        if unknown:
            raise ConfigError(
                f"unknown HTTP backend option(s) {', '.join(sorted(unknown))}; known: "
                f"{', '.join(KEYS)}, {HEADER_PREFIX}NAME"
            )
        protocol = _protocol(url, options)
        template = options.get("template") if protocol == "custom" else None
        headers = {
            key[len(HEADER_PREFIX) :]: header_value(key[len(HEADER_PREFIX) :], value)
            for key, value in options.items()
            if key.startswith(HEADER_PREFIX)
        }
        return cls(
            protocol=protocol,
            template=CustomTemplate.load(template) if template else None,
            max_batch=_positive_int(options, "max_batch"),
            gzip=option_flag(options, "gzip"),
            tls=_tls(options, url),
            headers=headers,
            input_name=options.get("input"),
            output_name=options.get("output"),
            insecure_redirect=option_flag(options, "allow_insecure_redirect"),
        )
