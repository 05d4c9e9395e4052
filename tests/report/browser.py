"""Debian's system Chromium, headless: the page's DOM after its script ran, its console and a
screenshot (never a downloaded browser)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]


def chromium() -> str:
    """The Chromium binary, or skip (CI installs Debian's ``chromium`` in .ci/run)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does it when it can)")


def open_page(page: Path, hash_: str = "") -> tuple[str, str]:
    """(DOM after the page's script ran, Chromium's console log) of ``page#hash_``."""
    url = page.resolve().as_uri() + (f"#{hash_}" if hash_ else "")
    done = subprocess.run(
        [chromium(), *FLAGS, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def screenshot(page: Path, picture: Path, width: int = 1200, height: int = 1600) -> None:
    """A PNG of the page's first ``height`` pixels."""
    done = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--window-size={width},{height}",
            f"--screenshot={picture}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and picture.is_file(), done.stderr[-2000:]
