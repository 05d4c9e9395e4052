"""Importing a user's module named on the command line (``python:module:function``)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from types import ModuleType


def import_from_cwd_first(module_name: str) -> ModuleType:
    """Import a module, looking in the current directory first (as ``python -m`` does)."""
    cwd = os.getcwd()
    if cwd in sys.path:
        return importlib.import_module(module_name)
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)
