"""Secrets, TLS and redirect rules shared by the network backends (HTTP and Triton).

Both backends spell these options the same way (``--backend-option KEY=VALUE``):

- ``header.NAME=VALUE``: a header sent with every request; ``env:VAR`` or ``file:PATH`` read
  the value from the environment or a file. Values never appear in errors or logs, only names.
- ``token_env=VAR`` or ``token_file=PATH``: a token sent as ``Authorization: Bearer …``
  (``auth=bearer``, the default), as Triton's access header (``auth=triton``) or raw in a header
  of your choice (``auth_header=NAME``).
- ``ca_bundle=PATH`` (a private CA), ``client_cert=PATH`` and ``client_key=PATH`` (a client
  certificate), ``insecure=true`` (no certificate verification; logs a warning).
- ``allow_insecure_redirect=true``: follow a redirect from https to plain http (refused
  otherwise). Secrets go only to the configured origin (scheme, host, port).

Older names (``ssl_ca``, ``ssl_cert``, ``ssl_key``) still work, with a ``DeprecationWarning``
that names the new one (:func:`renamed_options`).
"""

from __future__ import annotations

import logging
import os
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from rex_stream.engine.options import option_flag
from rex_stream.errors import BackendError, ConfigError

HEADER_PREFIX = "header."
#: Deprecated option names and the names that replace them (the same for every backend).
RENAMED = {"ssl_ca": "ca_bundle", "ssl_cert": "client_cert", "ssl_key": "client_key"}
TOKEN_OPTIONS = ("token_env", "token_file", "auth", "auth_header")
TLS_OPTIONS = ("ca_bundle", "client_cert", "client_key", "insecure")
REDIRECT_OPTIONS = ("allow_insecure_redirect",)
#: Every option this module reads (plus ``header.NAME``, see :func:`is_security_option`).
OPTIONS = (*TOKEN_OPTIONS, *TLS_OPTIONS, *REDIRECT_OPTIONS)
#: Triton's own header for its restricted APIs.
TRITON_ACCESS_HEADER = "triton-access-token"
#: gRPC clients send Triton's access header with this prefix.
TRITON_GRPC_PREFIX = "triton-grpc-protocol-"


def is_security_option(key: str) -> bool:
    """Whether this module reads the option ``key``."""
    return key in OPTIONS or key.startswith(HEADER_PREFIX)


def renamed_options(options: Mapping[str, str], stacklevel: int = 3) -> dict[str, str]:
    """The options with deprecated names replaced by the current ones (warning once each)."""
    result = dict(options)
    for old, new in RENAMED.items():
        if old not in result:
            continue
        if new in result:
            raise ConfigError(f"give {new}= only ({old}= is its deprecated name)")
        warnings.warn(
            f"backend option {old} is deprecated; use {new}={result[old]} instead",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        result[new] = result.pop(old)
    return result


def public_url(url: URL) -> str:
    """The URL without credentials, query or fragment (any of them may carry secrets)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


# ----------------------------------------------------------------------------- secrets


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


def custom_headers(options: Mapping[str, str]) -> dict[str, str]:
    """``{NAME: value}`` of every ``header.NAME`` option, values resolved (secrets)."""
    return {
        key[len(HEADER_PREFIX) :]: header_value(key[len(HEADER_PREFIX) :], value)
        for key, value in options.items()
        if key.startswith(HEADER_PREFIX)
    }


def read_token(options: Mapping[str, str]) -> str | None:
    """The secret named by ``token_env`` or ``token_file`` (never logged), if either is given."""
    if "token_env" in options and "token_file" in options:
        raise ConfigError("give either token_env or token_file, not both")
    if "token_env" in options:
        name = options["token_env"]
        token = os.environ.get(name, "").strip()
        if not token:
            raise ConfigError(f"token_env={name}: the environment variable is unset or empty")
        return token
    if "token_file" in options:
        path = Path(options["token_file"]).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"token_file={path}: cannot read it ({exc.strerror})") from exc
        if not token:
            raise ConfigError(f"token_file={path}: the file is empty")
        return token
    return None


def token_headers(options: Mapping[str, str], grpc: bool = False) -> dict[str, str]:
    """The header that carries the token, if one is configured (``grpc``: Triton's gRPC
    spelling of its access header)."""
    token = read_token(options)
    if token is None:
        if "auth" in options or "auth_header" in options:
            raise ConfigError("auth/auth_header given without token_env=NAME or token_file=PATH")
        return {}
    if "auth_header" in options:
        return {options["auth_header"].strip().lower(): token}
    style = options.get("auth", "bearer").strip().lower()
    if style == "bearer":
        return {"authorization": f"Bearer {token}"}
    if style == "triton":
        return {(TRITON_GRPC_PREFIX if grpc else "") + TRITON_ACCESS_HEADER: token}
    raise ConfigError(f"option auth={style!r}: use bearer or triton (or auth_header=NAME)")


# ----------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """TLS settings: a private CA, a client certificate and key, or no verification at all."""

    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> TlsFiles:
        """Read the TLS options; every file given must be readable now (for a clear error)."""
        paths: dict[str, str | None] = {}
        for key in ("ca_bundle", "client_cert", "client_key"):
            paths[key] = _readable(key, options[key]) if options.get(key) else None
        if paths["client_key"] and not paths["client_cert"]:
            raise ConfigError("client_key=PATH needs client_cert=PATH too")
        return cls(**paths, insecure=option_flag(options, "insecure"))

    @property
    def verifies_default(self) -> bool:
        """Whether these are the defaults: the system's CAs, no client certificate."""
        return not (self.insecure or self.ca_bundle or self.client_cert)

    def ssl_context(self, host: str, log: logging.Logger) -> ssl.SSLContext:
        """A context with the private CA and client certificate, or without verification
        (``insecure``, said loudly in ``log``)."""
        if self.insecure:
            log.warning("TLS certificate verification is OFF for %s (insecure=true)", host)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            try:
                context = ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"ca_bundle={self.ca_bundle}: cannot load it ({exc})") from exc
        if self.client_cert:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"client_cert={self.client_cert}: cannot load it ({exc})"
                ) from exc
        return context

    def for_aiohttp(self, host: str, log: logging.Logger) -> ssl.SSLContext | bool:
        """aiohttp's ``ssl`` argument: ``True`` for the defaults, ``False`` for no verification
        (without a client certificate), else a context."""
        if self.verifies_default:
            return True
        if self.insecure and not self.client_cert:
            log.warning("TLS certificate verification is OFF for %s (insecure=true)", host)
            return False
        return self.ssl_context(host, log)


def _readable(key: str, value: str) -> str:
    path = Path(value).expanduser()
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}={value}: cannot read it ({exc.strerror})") from exc
    return str(path)


# ----------------------------------------------------------------------------- redirects


def origin(url: URL) -> tuple[str, str, int | None]:
    """Scheme, host and port: what secrets are bound to."""
    return (url.scheme, (url.host or "").lower(), url.explicit_port or url.port)


@dataclass(frozen=True)
class RedirectRules:
    """Where a redirect may lead: never from https to http (unless allowed), and secrets only
    to the configured origin (``home``)."""

    home: URL
    allow_downgrade: bool = False

    @classmethod
    def from_options(cls, home: URL, options: Mapping[str, str]) -> RedirectRules:
        """The rules for ``home`` with ``allow_insecure_redirect`` read from the options."""
        return cls(home, option_flag(options, "allow_insecure_redirect"))

    def sends_secrets_to(self, url: URL) -> bool:
        """Whether ``url`` is the configured origin, the only one secrets go to."""
        return origin(url) == origin(self.home)

    def check(self, source: URL, destination: URL, where: str) -> None:
        """Refuse a redirect to a non-http(s) URL or, unless allowed, from https to http
        (``where`` starts the message: who redirects)."""
        if destination.scheme not in ("http", "https") or not destination.host:
            raise BackendError(f"{where} redirects to {str(destination)!r}, not an http(s) URL")
        if source.scheme == "https" and destination.scheme == "http" and not self.allow_downgrade:
            raise BackendError(
                f"{where} redirects to plain http ({public_url(destination)}); refusing the "
                "downgrade (allow_insecure_redirect=true allows it)"
            )

    def check_secret(self, destination: URL, where: str) -> None:
        """Refuse a redirect that would carry secrets to another origin (for clients that
        re-send every header when they follow one)."""
        if not self.sends_secrets_to(destination):
            raise BackendError(
                f"{where} redirects to another origin ({destination.origin()}); "
                "refusing to send the token there"
            )
