"""How to install an optional extra, said the way that works for this installation."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

CHECKOUT = Path(__file__).resolve().parents[2]


def install_command(extra: str) -> str:
    """``pip install '.[audio]'`` when rex-stream runs from (or was installed from) a checkout,
    else ``pip install 'rex-stream[audio]'``."""
    source = _checkout()
    if source is None:
        return f"pip install 'rex-stream[{extra}]'"
    if source == Path.cwd().resolve():
        return f"pip install '.[{extra}]'"
    return f"pip install '{source}[{extra}]'"


def _checkout() -> Path | None:
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "adapters").is_dir():
        return CHECKOUT
    try:
        direct = importlib.metadata.distribution("rex-stream").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not direct:
        return None
    url = json.loads(direct).get("url", "")
    if not url.startswith("file://"):
        return None
    path = Path(unquote(urlparse(url).path))
    return path.resolve() if (path / "pyproject.toml").is_file() else None
