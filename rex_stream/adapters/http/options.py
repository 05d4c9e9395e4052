"""Options of the HTTP backend: parsed and checked once, before any connection is made.

``settings.options`` arrive as strings (``--backend-option KEY=VALUE`` on the command line);
:meth:`HttpOptions.parse` turns them into typed values and rejects unknown keys and bad values
with a :class:`~rex_stream.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from yarl import URL

from rex_stream.adapters.http.protocols import CustomTemplate
from rex_stream.adapters.security import (
    HEADER_PREFIX,
    RedirectRules,
    TlsFiles,
    custom_headers,
    is_security_option,
    public_url,
    renamed_options,
    token_headers,
)
from rex_stream.adapters.security import (
    OPTIONS as SECURITY_OPTIONS,
)
from rex_stream.engine.options import option_flag
from rex_stream.errors import ConfigError

logger = logging.getLogger("rex_stream.adapters.http.backend")

PROTOCOLS = ("v2", "v2-json", "v2-binary", "rows", "custom")
KEYS = (
    "protocol", "template", "max_batch", "gzip", "input", "output", *SECURITY_OPTIONS,
)  # fmt: skip

__all__ = ["HttpOptions"]


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
    redirects: RedirectRules
    template: CustomTemplate | None = None
    max_batch: int | None = None
    gzip: bool = False
    tls: ssl.SSLContext | bool = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    input_name: str | None = None
    output_name: str | None = None

    @property
    def header_names(self) -> tuple[str, ...]:
        """Names of the custom headers, the only part of them that messages may show."""
        return tuple(self.headers)

    @classmethod
    def parse(cls, url: URL, options: Mapping[str, str]) -> HttpOptions:
        """Check every option; ConfigError names the first bad one (deprecated names warn)."""
        options = renamed_options(options, stacklevel=4)
        unknown = [k for k in options if k not in KEYS and not is_security_option(k)]
        if unknown:
            raise ConfigError(
                f"unknown HTTP backend option(s) {', '.join(sorted(unknown))}; known: "
                f"{', '.join(KEYS)}, {HEADER_PREFIX}NAME"
            )
        protocol = _protocol(url, options)
        template = options.get("template") if protocol == "custom" else None
        headers = {**token_headers(options), **custom_headers(options)}
        if url.user is not None and any(k.lower() == "authorization" for k in headers):
            raise ConfigError(  # aiohttp cannot send both; say so before any request
                f"{public_url(url)}: the URL carries credentials (user:password@) and an "
                "Authorization header is given too (header.Authorization, token_env or "
                "token_file); give one of them"
            )
        return cls(
            protocol=protocol,
            redirects=RedirectRules.from_options(url, options),
            template=CustomTemplate.load(template) if template else None,
            max_batch=_positive_int(options, "max_batch"),
            gzip=option_flag(options, "gzip"),
            tls=TlsFiles.from_options(options).for_aiohttp(url.host or "", logger),
            headers=headers,
            input_name=options.get("input"),
            output_name=options.get("output"),
        )
