"""The L2X sub-commands: ``l2x-train DATA … --out E.npz`` and ``l2x INPUT --explainer E.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from rex_stream.cli.checks import check_at_least, check_store_flags
from rex_stream.cli.inputs import add_inputs_argument, expand_inputs
from rex_stream.cli.log_setup import configure_logging
from rex_stream.cli.method_options import (
    add_model_arguments,
    add_store_arguments,
    backend_settings,
    check_output,
    explain_config,
    model_spec,
    print_json,
)
from rex_stream.cli.parser import OneLineParser
from rex_stream.errors import ConfigError


def train_parser() -> argparse.ArgumentParser:
    """The ``l2x-train`` sub-command's arguments."""
    parser = OneLineParser(
        prog="rex-stream l2x-train",
        description="Train an L2X explainer from the model's scores of randomly masked inputs.",
    )
    parser.add_argument("data", help="a directory of inputs, a .npy of rows, or a table file")
    add_model_arguments(parser)
    l2x = parser.add_argument_group("l2x")
    l2x.add_argument("--k", type=int, default=4, help="regions selected per input (default 4)")
    l2x.add_argument("--region-size", type=int, help="region edge in elements (default: ~100)")
    l2x.add_argument("--masks-per-input", type=int, help="random masks scored per input (8)")
    l2x.add_argument("--epochs", type=int, help="epochs of each phase (default 30)")
    l2x.add_argument("--max-gap", type=float, help="refuse a selector–model gap above this (0.1)")
    l2x.add_argument(
        "--shared-regions",
        action="store_true",
        help="one network for every region (volumes, images: the evidence may lie anywhere)",
    )
    l2x.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", required=True, help="the explainer file (.npz)")
    add_store_arguments(
        out,
        "Zarr store: scores and epochs, for --resume",
        resume_help="continue the training in --store",
        overwrite_help="start the --store training again",
    )
    return parser


def explain_parser() -> argparse.ArgumentParser:
    """The ``l2x`` sub-command's arguments."""
    parser = OneLineParser(
        prog="rex-stream l2x",
        description="Select an input's most informative regions with a trained L2X explainer "
        "(no model query; with --model, 2 queries check the selection).",
    )
    add_inputs_argument(parser)
    parser.add_argument("--explainer", required=True, help="explainer from l2x-train (.npz)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="accepted as every command does; the selection itself uses no randomness",
    )
    add_model_arguments(parser, required=False)
    out = parser.add_argument_group("outputs")
    out.add_argument(
        "--save-mask", help="the selection over the spatial axes (.npy; one input only)"
    )
    out.add_argument("--output", help="picture of the selection (PNG; one input only)")
    add_store_arguments(
        out,
        "Zarr store: the selection as l2x_selection",
        resume_help=None,
        overwrite_help="replace these inputs in --store",
    )
    return parser


def run(name: str, argv: list[str]) -> int:
    """Run ``l2x-train`` or ``l2x``; returns the exit code."""
    return train(argv) if name == "l2x-train" else explain(argv)


def train(argv: list[str]) -> int:
    """``l2x-train``: train, report, save."""
    args = train_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    spec = model_spec(args)
    assert spec is not None
    config = explain_config(args)
    settings = backend_settings(args, spec, config)
    out = check_output(args.out, "--out", (".npz",))
    check_store_flags(args)
    check_at_least(args.seed, "--seed", 0)
    assert out is not None
    from rex_stream.l2x import Explainer, L2xConfig
    from rex_stream.runs.l2x import train_l2x

    values: dict[str, object] = {
        "k": args.k,
        "seed": args.seed,
        "shared_regions": args.shared_regions,
    }
    if args.epochs is not None:
        values.update(approximator_epochs=args.epochs, selector_epochs=args.epochs)
    for flag in ("region_size", "masks_per_input", "max_gap"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    l2x = L2xConfig(**values)  # type: ignore[arg-type]

    async def main() -> Explainer:
        return await train_l2x(
            args.data,
            spec,
            l2x,
            config,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            backend_settings=settings,
        )

    explainer = anyio.run(main)
    explainer.save(out)
    metrics = dict(explainer.metrics)
    if args.json:
        print_json({"explainer": str(out), **metrics})
    else:
        print(
            f"explainer: {out} (k {metrics['k']} of {metrics['regions']} regions)\n"
            f"held-out post-hoc accuracy {metrics['posthoc_accuracy']:.3f} "
            f"(random {metrics['k']} regions: {metrics['random_accuracy']:.3f}), "
            f"approximator {metrics['approximator_accuracy']:.3f}, gap {metrics['gap']:.3f}\n"
            f"{metrics['training_queries']} queries for {metrics['training_inputs']} training "
            f"and {metrics['held_out']} held-out inputs"
        )
    return 0


def explain(argv: list[str]) -> int:
    """``l2x``: select regions of each input."""
    args = explain_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    spec = model_spec(args)
    check_at_least(args.seed, "--seed", 0)
    inputs = expand_inputs(args.inputs)
    save_mask = check_output(args.save_mask, "--save-mask", (".npy",))
    check_store_flags(args)
    output = check_output(args.output, "--output")
    if len(inputs) > 1 and (output is not None or save_mask is not None):
        flag = "--output" if output is not None else "--save-mask"
        raise ConfigError(f"{flag} is for one input: give one input", key=flag)
    from rex_stream.l2x import Explainer
    from rex_stream.runs.l2x import L2xResult, explain_l2x, reading_config

    explainer = Explainer.load(args.explainer)
    config = explain_config(args, reading_config(explainer))
    settings = backend_settings(args, spec, config) if spec else None

    async def main(item: str) -> L2xResult:
        return await explain_l2x(item, explainer, spec, config, backend_settings=settings)

    summaries = []
    for item in inputs:
        result = anyio.run(main, item)
        summaries.append(_report_selection(args, explainer, result, save_mask, output))
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
    return 0


def _report_selection(
    args: argparse.Namespace,
    explainer: Any,
    result: Any,
    save_mask: Path | None,
    output: Path | None,
) -> dict[str, Any]:
    """Write one input's selection where asked; print its line unless ``--json``."""
    if save_mask is not None:
        import numpy as np

        np.save(save_mask, result.selection.astype(np.uint8))
    summary: dict[str, Any] = result.summary()
    if output is not None:
        from rex_stream.pictures.methods import save_selection

        title = f"L2X: {explainer.k} regions"
        save_selection(result.subject, result.selection, title, output)
    if args.store:
        from rex_stream.runs.l2x import store_selection

        summary["store"] = store_selection(result, args.store, overwrite=args.overwrite)
    if not args.json:
        named = summary.get("selected_features")  # a table's columns by name
        verdict = f"; features {', '.join(named)}" if named else ""
        if summary["posthoc_kept"] is not None:
            kept = "keeps" if summary["posthoc_kept"] else "does NOT keep"
            verdict += f"; the model on them alone {kept} class {summary['target']}"
        print(
            f"{summary['input']}: regions {summary['selected_regions']} "
            f"(edge {summary['region_edge']}){verdict} — {summary['queries']} queries"
        )
    return summary
