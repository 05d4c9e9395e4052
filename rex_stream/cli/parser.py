"""The argument parser every command uses: a mistake on the command line is one line."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` with the project's error format: ``rex-stream: error: …`` on one line
    (naming the sub-command and pointing at ``--help``) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit with status 2, as argparse does."""
        command = self.prog.removeprefix("rex-stream").strip()
        where = f"{command}: " if command else ""
        first = message.splitlines()[0] if message else "invalid arguments"
        if first.endswith("expected one argument"):  # e.g. --stds -1,1,1
            first += "; a value that starts with '-' goes as --flag=VALUE"
        print(f"rex-stream: error: {where}{first} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
