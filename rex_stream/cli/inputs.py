"""What a command's INPUT arguments name: files as they are, directories as every input
under them (recursively, in a stable order), the same for every sub-command.

The main command, ``evaluate``, ``cem`` and ``l2x`` take their inputs through
:func:`add_inputs_argument` (one definition), so ``a.jpg``, ``a.jpg b.jpg``, ``photos/`` and
``photos/ extra.jpg`` mean the same everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rex_stream.errors import ConfigError, InputError

#: The positional inputs' help, shared by every command that takes them.
INPUTS_HELP = "an input file, several, or directories (every input under them, recursively)"


def add_inputs_argument(
    parser: argparse.ArgumentParser, *, optional: bool = False, extra_help: str = ""
) -> None:
    """The positional ``INPUT …`` (``args.inputs``, a list): one or more files or directories
    (``optional``: none at all is accepted here, e.g. for ``--list-metrics``)."""
    parser.add_argument(
        "inputs",
        nargs="*" if optional else "+",
        metavar="INPUT",
        help=INPUTS_HELP + extra_help,
    )


def expand_inputs(items: list[str]) -> list[str]:
    """Each file as it is and each directory as the inputs under it (whose suffix some mode
    reads); a path that does not exist is one error line naming it."""
    return [source for source, _ in named_inputs(items, distinct=False)]


def directory_inputs(directory: Path) -> list[Path]:
    """Every file under ``directory`` whose suffix some mode reads, in a stable order."""
    from rex_stream.modes import known_suffixes  # modes are many imports: only when needed

    suffixes = known_suffixes()
    found = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise ConfigError(
            f"{directory}: no input files (known suffixes: {', '.join(sorted(suffixes))})"
        )
    return found


def check_inputs_exist(items: list[str]) -> None:
    """One error line for the first item that is empty or does not exist."""
    for item in items:
        if not item.strip():
            raise InputError(f"{item!r}: an empty input name; give a file or a directory")
        if not Path(item).exists():
            raise InputError(f"{item}: no such file or directory")


def named_inputs(items: list[str], *, distinct: bool = True) -> list[tuple[str, str]]:
    """(input file, store and output name) for every input the items name: a directory's
    files named by their path inside it (as a directory run names them), a file by its file
    name. The same file given twice counts once; with ``distinct``, two inputs that would get
    one name (``a/x.png b/x.png``) are refused in one line, since they would share a store
    group and a picture."""
    from rex_stream.naming import input_name

    check_inputs_exist(items)
    found: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for item in items:
        root = Path(item)
        listed = directory_inputs(root) if root.is_dir() else [root]
        for path in listed:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            name = input_name(path.relative_to(root) if root.is_dir() else Path(path.name))
            found.append((str(path) if root.is_dir() else item, name))
    if distinct:
        owner: dict[str, str] = {}
        for source, name in found:
            if name in owner:
                raise ConfigError(
                    f"{owner[name]} and {source} would both be named {name!r} (their store "
                    "group and pictures): give their common directory instead, or rename one"
                )
            owner[name] = source
    return found
