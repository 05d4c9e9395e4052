"""The argument parser of the main command (``rex-stream INPUT …``): ReX's option names."""

from __future__ import annotations

import argparse

from rex_stream import __version__
from rex_stream.cli import (
    bounding_box,
    dask_options,
    detect,
    inputs,
    method_options,
    resource_options,
    rex_options,
)
from rex_stream.cli.parser import OneLineParser

#: ``--method NAME`` on the main command → (sub-command, extra arguments)
METHODS = {
    "rex": None,
    "cem-pp": ("cem", ["--kind", "pp"]),
    "cem-pn": ("cem", ["--kind", "pn"]),
    "l2x": ("l2x", []),
}


#: The sub-commands, as ``rex-stream --help`` lists them.
SUBCOMMAND_HELP = """sub-commands (each has its own --help; the sub-command goes first):
  rex-stream INPUT…            explain with causal responsibility (ReX; this help)
  rex-stream evaluate INPUT…   score attribution maps with Quantus' metrics
  rex-stream cem INPUT…        contrastive explanations: pertinent positives / negatives
  rex-stream l2x-train DATA    train an L2X explainer from the model's scores
  rex-stream l2x INPUT…        select regions with a trained L2X explainer
  rex-stream report STORE…     one self-contained HTML page of the results in stores
  rex-stream demo              the bundled photo and model

INPUT… is one file, several files, directories (every input under them, recursively) or a
mix, alike in every sub-command. The model, reading, scheduling, store and terminal flags
(--model, --means, --norm, --retry-s, --batch-size, --concurrent-inputs, --store,
--storage-option, --json, -q, -v, …) are the same in all."""


#: ``--output`` / ``--heatmap`` without a file: a name made from the input's.
DEFAULT_PICTURE = "<default>"


class ContrastiveAction(argparse.Action):
    """``--contrastive [N]``: the contrastive strategy; N (ReX 0.3's floodlights) is kept in
    ``contrastive_floodlights`` so that the run can say it is not used."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        namespace.strategy = "contrastive"
        if values:
            try:
                namespace.contrastive_floodlights = int(str(values))
            except ValueError:
                parser.error(f"--contrastive {values}: expected a whole number of floodlights")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (ReX's option names where they exist)."""
    parser = OneLineParser(
        prog="rex-stream",
        description="Explain a classifier's decision with causal responsibility (ReX), "
        "streaming mutants to a local or remote model. `rex-stream demo` runs the bundled "
        "example.",
        epilog=SUBCOMMAND_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs.add_inputs_argument(
        parser,
        extra_help="; several inputs are run as a directory is, with one summary; `demo`"
        " runs the bundled example",
    )
    parser.add_argument(
        "--method",
        choices=list(METHODS),
        default="rex",
        help="rex (causal responsibility, default); cem-pp / cem-pn (= rex-stream cem --kind "
        "pp|pn); l2x (= rex-stream l2x, with --explainer)",
    )
    method_options.add_backend_arguments(parser.add_argument_group("model"))
    method_options.add_reading_arguments(
        parser.add_argument_group("reading the input"), sweeps=True
    )
    method_options.add_scheduling_arguments(parser.add_argument_group("scheduling"))
    run = parser.add_argument_group("search")
    run.add_argument("-c", "--config", help="rex.toml (default ./rex.toml, ~/.config/rex.toml)")
    run.add_argument("--iters", type=int, help="iterations (default 20)")
    run.add_argument("--seed", type=int, help="random seed (default: random, kept in the store)")
    run.add_argument("--min-box-size", type=int, help="smallest box that is split (default 10)")
    run.add_argument("--tree-depth", type=int, help="deepest level of the box tree (default 10)")
    run.add_argument("--search-limit", type=int, help="most mutants per iteration")
    run.add_argument(
        "-s",
        "--strategy",
        choices=["global", "spatial", "contrastive", "multi", "spotlight"],
        help="extraction strategy (default global)",
    )
    run.add_argument(
        "--contrastive",
        nargs="?",
        const="",
        metavar="N",
        action=ContrastiveAction,
        help="a sufficient and necessary explanation (= --strategy contrastive); ReX 0.3's "
        "floodlight count N is accepted and not needed",
    )
    run.add_argument("--chunk-size", type=int, help="elements revealed per extraction step")
    run.add_argument(
        "--extraction-search",
        choices=["bracket", "linear"],
        help="probe extraction candidates coarse to fine (default) or all in order",
    )
    run.add_argument(
        "--confidence",
        type=float,
        help="minimum confidence of the explanation, as a fraction of the target's",
    )
    run.add_argument("-n", "--no-extract", action="store_true", help="only compute the map")
    run.add_argument(
        "--analyse",
        "--analyze",
        action="store_true",
        help="insertion/deletion curves and their AUC",
    )
    out = parser.add_argument_group("outputs")
    out.add_argument(
        "--output",
        nargs="?",
        const=DEFAULT_PICTURE,
        metavar="FILE",
        help="explanation picture (.png, .jpg, .pdf, .svg, …); without FILE "
        "<input>-explanation.png (a directory input: <dir>-explanations/)",
    )
    out.add_argument(
        "--heatmap",
        nargs="?",
        const=DEFAULT_PICTURE,
        metavar="FILE",
        help="responsibility heatmap over the input; without FILE <input>-heatmap.png "
        "(a directory input: <dir>-heatmaps/)",
    )
    method_options.add_store_arguments(
        out,
        "Zarr store for maps, masks and resumable progress",
        overwrite_help="replace these inputs in --store",
    )
    method_options.add_terminal_arguments(parser.add_argument_group("terminal"))
    parser.add_argument("--version", action="version", version=f"rex-stream {__version__}")
    rex_options.add_arguments(parser)
    bounding_box.add_arguments(run)
    dask_options.add_arguments(parser)
    resource_options.add_arguments(parser)
    detect.add_arguments(parser)
    return parser
