"""What a command's INPUT arguments name: files as they are, directories as every input
under them (recursively, in a stable order), the same for every sub-command."""

from __future__ import annotations

from pathlib import Path

from rex_stream.errors import InputError


def expand_inputs(items: list[str]) -> list[str]:
    """Each file as it is and each directory as the inputs under it (whose suffix some mode
    reads); a path that does not exist is one error line naming it."""
    from rex_stream.cli.directory import directory_inputs

    found: list[str] = []
    for item in items:
        path = Path(item)
        if not item or not path.exists():
            raise InputError(f"{item or repr(item)}: no such file or directory")
        if path.is_dir():
            found.extend(str(p) for p in directory_inputs(path))
        else:
            found.append(item)
    return found
