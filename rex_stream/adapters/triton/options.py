"""Options of the Triton backend: parsed and checked once, before any connection is made.

They come from the spec's query string and ``settings.options`` (the latter win). Secrets, TLS
and redirects are spelled as for the HTTP backend (:mod:`rex_stream.adapters.security`); the
Triton-only ones are ``output=NAME``, ``ssl=true`` and ``shared_memory=system|none``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rex_stream.adapters.security import (
    HEADER_PREFIX,
    TlsFiles,
    custom_headers,
    is_security_option,
    renamed_options,
    token_headers,
)
from rex_stream.adapters.security import OPTIONS as SECURITY_OPTIONS
from rex_stream.adapters.triton.spec import TritonTarget
from rex_stream.engine.options import option_flag
from rex_stream.errors import ConfigError

TRITON_OPTIONS = ("output", "ssl", "shared_memory")
KNOWN_OPTIONS = frozenset(TRITON_OPTIONS + SECURITY_OPTIONS)
TLS_FILES = ("ca_bundle", "client_cert", "client_key")


@dataclass(frozen=True)
class TritonOptions:
    """The Triton backend's knobs, typed. Header values are secrets: kept out of ``repr``."""

    output: str | None = None
    shared_memory: bool = False
    #: TLS to the server (``ssl=true``; on by default when a TLS file or ``insecure`` is given)
    tls: bool = False
    tls_files: TlsFiles = field(default_factory=TlsFiles)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    allow_insecure_redirect: bool = False

    @classmethod
    def parse(cls, target: TritonTarget, options: Mapping[str, str]) -> TritonOptions:
        """Check every option; ConfigError names the first bad one (deprecated names warn)."""
        options = renamed_options(options, stacklevel=4)
        unknown = sorted(k for k in options if k not in KNOWN_OPTIONS and not is_security_option(k))
        if unknown:
            raise ConfigError(
                f"unknown Triton backend option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(KNOWN_OPTIONS))}, {HEADER_PREFIX}NAME"
            )
        shared_memory = options.get("shared_memory", "none").strip().lower()
        if shared_memory not in ("none", "system", ""):
            raise ConfigError(f"option shared_memory={shared_memory!r}: use system or none")
        tls_given = any(k in options for k in TLS_FILES) or option_flag(options, "insecure")
        tls = option_flag(options, "ssl", default=tls_given)
        tls_files = TlsFiles.from_options(options) if tls else TlsFiles()
        if tls_files.insecure and target.grpc:
            raise ConfigError(
                "insecure=true: gRPC cannot skip certificate verification; give the server's CA "
                "with ca_bundle=PATH"
            )
        headers = custom_headers(options)
        if target.grpc:  # gRPC metadata keys are lower case
            headers = {name.lower(): value for name, value in headers.items()}
        return cls(
            output=options.get("output"),
            shared_memory=shared_memory == "system",
            tls=tls,
            tls_files=tls_files,
            headers={**token_headers(options, grpc=target.grpc), **headers},
            allow_insecure_redirect=option_flag(options, "allow_insecure_redirect"),
        )
