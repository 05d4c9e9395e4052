"""The command line: ``main`` (the ``rex-stream`` entry point), one module per sub-command.

The CLI sits above everything: it may import the glue at the top, the wings and the modes,
but nothing below imports the CLI.
"""

from rex_stream.cli.main import main

__all__ = ["main"]
