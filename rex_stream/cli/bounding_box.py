"""``--bounding-box X0,Y0,X1,Y1``: ReX 0.4.1's ``use_bounding_box``, the search restricted to
one box of the picture (everything outside it stays masked).

ReX takes the box from the model's prediction of the input (a detector's
``Prediction.bounding_box``). With ``--script`` rex-stream does the same; other backends return
class scores only, so the box is given here or as ``[causal] bounding_box`` in rex.toml.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--bounding-box`` to the explain command."""
    parser.add_argument(
        "--bounding-box",
        metavar="X0,Y0,X1,Y1",
        help="search only inside this box of the model-sized picture (ReX's use_bounding_box; "
        "with --script and use_bounding_box the script's prediction gives it)",
    )


def apply_arguments(args: argparse.Namespace, config: ExplainConfig) -> ExplainConfig:
    """The config with the box from the command line, or from a script's prediction."""
    search = config.search
    text = getattr(args, "bounding_box", None)
    if text is not None:
        try:
            values = tuple(int(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) != 4:
            raise ConfigError(
                f"--bounding-box {text!r}: expected four whole numbers X0,Y0,X1,Y1",
                key="--bounding-box",
            )
        box = (values[0], values[1], values[2], values[3])
        try:
            search = replace(search, bounding_box=box, use_bounding_box=True)
        except ConfigError:
            raise ConfigError(
                f"--bounding-box {text!r}: expected X0,Y0,X1,Y1 >= 0 with X0 < X1 and Y0 < Y1",
                key="--bounding-box",
            ) from None
    elif search.use_bounding_box and search.bounding_box is None:
        script = getattr(args, "script", None)
        prepared = getattr(args, "rex_source", None)
        if script is not None and prepared is not None:
            from rex_stream.adapters.script import target_box

            search = replace(search, bounding_box=target_box(script, prepared))
    return replace(config, search=search)
