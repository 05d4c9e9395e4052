"""The ``rex-stream`` entry point: one-line errors and exit codes around every command.

``rex-stream INPUT …`` explains (:mod:`rex_stream.cli.explain`); ``cem``, ``l2x-train``,
``l2x`` and ``evaluate`` are sub-commands with modules of their own.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from rex_stream.cli import faults
from rex_stream.cli.explain import run
from rex_stream.cli.explain_parser import METHODS, build_parser
from rex_stream.cli.log_setup import configure_logging
from rex_stream.errors import ConfigError, RexStreamError


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors and exit codes, never a traceback for a mistake."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    if (misplaced := _misplaced_subcommand(argv)) is not None:
        print(f"rex-stream: error: {misplaced}", file=sys.stderr)
        return 2
    try:
        method, argv = _method(argv)
    except ConfigError as exc:
        print(f"rex-stream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if method is not None:
        return run_subcommand(*method)
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    return _guarded(lambda: run(args))


def _guarded(command: Callable[[], int]) -> int:
    """Run a command with one line for every way it can end badly, never a traceback (also
    when stdout is a pipe that closed early or a full disk)."""
    with faults.sigterm_interrupts() as signals:
        try:
            code = command()
            sys.stdout.flush()  # here, not at exit, so that a failing write is ours to report
            return code
        except RexStreamError as exc:
            print(f"rex-stream: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except MemoryError as exc:
            return _out_of_memory(exc)
        except BrokenPipeError:  # `rex-stream … | head`: the reader left; not an error of ours
            _stdout_to_devnull()
            return 0
        except OSError as exc:  # `rex-stream … > /dev/full`, or a full disk elsewhere
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if _stdout_failed():
                _stdout_to_devnull()
            print(f"rex-stream: error: cannot write: {exc.strerror}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            how = "terminated" if signals.received else "interrupted"
            print(f"rex-stream: {how} (with --store, continue with --resume)", file=sys.stderr)
            return faults.TERMINATED_EXIT if signals.received else 130


def _stdout_failed() -> bool:
    """Whether stdout still cannot take what its buffer holds."""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so the flush at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _misplaced_subcommand(argv: list[str]) -> str | None:
    """``rex-stream --model M evaluate …``: a sub-command's name after options (and no file
    of that name) is a sub-command given in the wrong place; say where it goes."""
    for position, item in enumerate(argv[1:], start=1):
        if item in SUBCOMMANDS and not os.path.exists(item):
            rest = [a for i, a in enumerate(argv) if i != position]
            words = ["rex-stream", item, *rest]
            example = " ".join(words[:6]) + (" …" if len(words) > 6 else "")
            return (
                f"the sub-command {item!r} goes first, before its options: {example}"
                f" (see rex-stream {item} --help)"
            )
    return None


def _method(argv: list[str]) -> tuple[tuple[str, list[str]] | None, list[str]]:
    """``rex-stream INPUT --method cem-pn …`` as ``rex-stream cem INPUT --kind pn …`` (the
    method sub-commands), or the arguments unchanged for ReX's method (the default)."""
    rest, name = [], None
    items = iter(argv)
    for item in items:
        if item == "--method":
            name = next(items, None)
            if name is None:
                raise ConfigError(f"--method needs a name: {', '.join(METHODS)}", key="--method")
        elif item.startswith("--method="):
            name = item.split("=", 1)[1]
        else:
            rest.append(item)
    if name is None:
        return None, argv
    if name not in METHODS:
        known = ", ".join(METHODS)
        print(
            f"rex-stream: error: --method {name}: unknown method (known: {known})", file=sys.stderr
        )
        raise SystemExit(2)
    chosen = METHODS[name]
    if chosen is None:
        return None, rest
    command, extra = chosen
    return (command, [*rest, *extra]), rest


#: Sub-commands with modules of their own: name → module in ``rex_stream.cli``.
SUBCOMMANDS = {
    "cem": "cem",
    "l2x-train": "l2x",
    "l2x": "l2x",
    "evaluate": "evaluate",
    "report": "report",
}


def run_subcommand(name: str, argv: list[str]) -> int:
    """Run a sub-command module's ``run(argv)`` (``l2x`` modules take the name too)."""
    import importlib

    module = importlib.import_module(f"rex_stream.cli.{SUBCOMMANDS[name]}")
    own_name = name in ("cem", "evaluate", "report")
    return _guarded(lambda: int(module.run(argv) if own_name else module.run(name, argv)))


def _out_of_memory(exc: MemoryError) -> int:
    """A run that asked for more memory than there is (e.g. --meta-iterations 1000000000):
    one line saying so, exit 1."""
    what = str(exc).splitlines()[0] if str(exc) else "out of memory"
    print(
        f"rex-stream: error: not enough memory ({what}); ask for less: fewer iterations, "
        "samples, steps or inputs at once, or a smaller --batch-size",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
