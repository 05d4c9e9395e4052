"""Reading ``key=value`` option strings (backend and mode options)."""

from __future__ import annotations

from collections.abc import Mapping

from rex_stream.errors import ConfigError, RexStreamError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def option_flag(
    options: Mapping[str, str],
    key: str,
    default: bool = False,
    error: type[RexStreamError] = ConfigError,
    what: str = "option",
) -> bool:
    """A boolean option: true/false, yes/no, on/off, 1/0; anything else raises ``error``."""
    raw = options.get(key)
    if raw is None:
        return default
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise error(f"{what} {key}={raw!r} must be true or false")
