"""How to install an optional extra: always by the package's name and extra, never a path."""

from __future__ import annotations

#: the distribution's name on the package index
DISTRIBUTION = "rex-stream"


def install_command(extra: str) -> str:
    """``pip install 'rex-stream[audio]'``: the same line for every installation (a checkout's
    absolute path means nothing to the next reader of a log or a doc)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
