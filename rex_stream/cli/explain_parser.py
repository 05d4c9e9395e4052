"""The argument parser of the main command (``rex-stream INPUT …``): ReX's option names."""

from __future__ import annotations

import argparse

from rex_stream import __version__
from rex_stream.cli import (
    bounding_box,
    dask_options,
    faults,
    resource_options,
    rex_options,
)
from rex_stream.cli.parser import OneLineParser
from rex_stream.config import ScoreKind

#: ``--method NAME`` on the main command → (sub-command, extra arguments)
METHODS = {
    "rex": None,
    "cem-pp": ("cem", ["--kind", "pp"]),
    "cem-pn": ("cem", ["--kind", "pn"]),
    "l2x": ("l2x", []),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (ReX's option names where they exist)."""
    parser = OneLineParser(
        prog="rex-stream",
        description="Explain a classifier's decision with causal responsibility (ReX), "
        "streaming mutants to a local or remote model. `rex-stream demo` runs the bundled "
        "example.",
    )
    parser.add_argument(
        "filename",
        help="input file, a directory (every input in it, recursively, through one backend), "
        "or `demo`",
    )
    parser.add_argument(
        "--method",
        choices=list(METHODS),
        default="rex",
        help="rex (causal responsibility, default); cem-pp / cem-pn (= rex-stream cem --kind "
        "pp|pn); l2x (= rex-stream l2x, with --explainer)",
    )
    parser.add_argument(
        "--concurrent-inputs",
        type=int,
        default=4,
        help="directory mode: inputs explained at once (default 4)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="local ONNX model file")
    model.add_argument(
        "--backend",
        help="backend spec: model.onnx, triton://host:8001/model, triton+http://host:8000/model, "
        "http(s)://…, python:module:function",
    )
    model.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adapter option (repeatable), e.g. threads=2, token_env=TOKEN",
    )
    model.add_argument("--input-shape", help="model input shape without batch axis, e.g. 3,224,224")
    model.add_argument(
        "--means",
        help="per-channel means subtracted after /norm, e.g. 0.485,0.456,0.406 (ImageNet); "
        "ReX's [rex.onnx] means",
    )
    model.add_argument(
        "--stds",
        help="per-channel standard deviations divided by after the means, e.g. "
        "0.229,0.224,0.225 (ImageNet); ReX's [rex.onnx] stds",
    )
    model.add_argument(
        "--norm", type=float, help="pixel values are divided by this first (default 255)"
    )
    model.add_argument("--timeout-s", type=float, default=60.0, help="deadline per backend call")
    faults.add_arguments(model)
    model.add_argument(
        "--scores",
        choices=[k.value for k in ScoreKind],
        help="what the model outputs (default logits: softmax is applied)",
    )
    model.add_argument("--target", type=int, help="explain this class instead of the prediction")
    run = parser.add_argument_group("search")
    run.add_argument("-c", "--config", help="rex.toml (default ./rex.toml, ~/.config/rex.toml)")
    run.add_argument("--iters", type=int, help="iterations (default 20)")
    run.add_argument("--seed", type=int, help="random seed (default: random, kept in the store)")
    run.add_argument("-m", "--mode", help="RGB, L, tabular, spectral, voxel, audio")
    run.add_argument(
        "--mask-value",
        help="what masked elements become: a number, min, mean, or per iteration random "
        "(uniform in the input's [min, max]) or linear (min to max over the iterations)",
    )
    run.add_argument(
        "--mode-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="mode option (repeatable)",
    )
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
        action="store_const",
        const="contrastive",
        dest="strategy",
        help="a sufficient and necessary explanation (= --strategy contrastive)",
    )
    run.add_argument("--chunk-size", type=int, help="elements revealed per extraction step")
    run.add_argument(
        "--extraction-search",
        choices=["bracket", "linear"],
        help="probe extraction candidates coarse to fine (default) or all in order",
    )
    run.add_argument("--batch-size", type=int, help="largest batch per backend call")
    run.add_argument(
        "--max-inflight",
        type=int,
        help="concurrent backend calls (default 8 for network backends, 2 for local ones)",
    )
    run.add_argument("--linger-ms", type=float, help="wait this long for a batch to fill")
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
    out.add_argument("--output", help="explanation picture (PNG)")
    out.add_argument("--heatmap", help="responsibility heatmap over the image (PNG)")
    out.add_argument("--store", help="Zarr store for maps, masks and resumable progress")
    out.add_argument("--resume", action="store_true", help="continue the run in --store")
    out.add_argument("--overwrite", action="store_true", help="replace this input in --store")
    out.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    out.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--version", action="version", version=f"rex-stream {__version__}")
    rex_options.add_arguments(parser)
    bounding_box.add_arguments(run)
    dask_options.add_arguments(parser)
    resource_options.add_arguments(parser)
    return parser
