"""The ``rex-stream`` entry point: one-line errors and exit codes around every command.

``rex-stream INPUT …`` explains (:mod:`rex_stream.cli.explain`); ``cem``, ``l2x-train``,
``l2x`` and ``evaluate`` are sub-commands with modules of their own.
"""

from __future__ import annotations

import logging
import os
import sys

from rex_stream.cli import faults
from rex_stream.cli.explain import run
from rex_stream.cli.explain_parser import METHODS, build_parser
from rex_stream.errors import ConfigError, RexStreamError


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors and exit codes, never a traceback for a mistake."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    try:
        method, argv = _method(argv)
    except ConfigError as exc:
        print(f"rex-stream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if method is not None:
        return run_subcommand(*method)
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose if not args.quiet else logging.ERROR
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    with faults.sigterm_interrupts() as signals:
        try:
            return run(args)
        except RexStreamError as exc:
            print(f"rex-stream: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except MemoryError as exc:
            return _out_of_memory(exc)
        except BrokenPipeError:  # `rex-stream … | head`: the reader left; not an error of ours
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            how = "terminated" if signals.received else "interrupted"
            print(f"rex-stream: {how} (with --store, continue with --resume)", file=sys.stderr)
            return faults.TERMINATED_EXIT if signals.received else 130


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
SUBCOMMANDS = {"cem": "cem", "l2x-train": "l2x", "l2x": "l2x", "evaluate": "evaluate"}


def run_subcommand(name: str, argv: list[str]) -> int:
    """Run a sub-command module's ``run(argv)`` (``l2x`` modules take the name too)."""
    import importlib

    module = importlib.import_module(f"rex_stream.cli.{SUBCOMMANDS[name]}")
    with faults.sigterm_interrupts() as signals:
        try:
            return int(module.run(argv) if name in ("cem", "evaluate") else module.run(name, argv))
        except RexStreamError as exc:
            print(f"rex-stream: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except MemoryError as exc:
            return _out_of_memory(exc)
        except KeyboardInterrupt:
            how = "terminated" if signals.received else "interrupted"
            print(f"rex-stream: {how} (with --store, continue with --resume)", file=sys.stderr)
            return faults.TERMINATED_EXIT if signals.received else 130


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
