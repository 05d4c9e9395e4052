"""``rex-stream cem INPUT… --model …``: pertinent positives (``--kind pp``) or negatives."""

from __future__ import annotations

import argparse

from rex_stream.cem import CemConfig, CemResult
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


def build_parser() -> argparse.ArgumentParser:
    """The ``cem`` sub-command's arguments."""
    parser = OneLineParser(
        prog="rex-stream cem",
        description="Contrastive explanations (CEM), black-box: the pertinent positive (what "
        "must be present for the class) or pertinent negative (what, added, changes it).",
    )
    add_inputs_argument(parser)
    add_model_arguments(parser)
    cem = parser.add_argument_group("cem")
    cem.add_argument("--kind", choices=["pp", "pn"], default="pp", help="PP (default) or PN")
    cem.add_argument("--penalties", help="penalty constants c, comma-separated (default 1,10)")
    cem.add_argument("--restarts", type=int, help="chains per penalty (default 1)")
    cem.add_argument("--directions", type=int, help="q: a step costs 1 + 2q queries (default 20)")
    cem.add_argument("--steps", type=int, help="most steps per chain (default 300)")
    cem.add_argument("--patience", type=int, help="stop a chain after this many steps without gain")
    cem.add_argument("--learning-rate", type=float, help="step size (default 0.02)")
    cem.add_argument("--beta", type=float, help="L1 weight (default 0.5)")
    cem.add_argument("--kappa", type=float, help="margin in logits (default 2)")
    cem.add_argument("--region-size", type=int, help="region edge in elements (default: ~100)")
    cem.add_argument("--seed", type=int, default=0, help="seed of the directions (default 0)")
    cem.add_argument("--reference", help="PN: move regions toward this input (same mode)")
    cem.add_argument(
        "--autoencoder",
        "--cem-autoencoder",
        help="a model spec (e.g. AE.onnx) that rebuilds the model's inputs: adds "
        "gamma·‖x − AE(x)‖² to the loss (needs --gamma)",
    )
    cem.add_argument(
        "--gamma", "--cem-gamma", type=float, help="weight of the autoencoder term (default 0: off)"
    )
    out = parser.add_argument_group("outputs")
    add_store_arguments(out, "Zarr store: chain states (resumable) and solutions")
    out.add_argument("--output", help="picture of the solution (PNG; one input only)")
    return parser


def cem_config(args: argparse.Namespace) -> CemConfig:
    """The CEM settings the arguments give (defaults for the rest)."""
    values: dict[str, object] = {"kind": args.kind, "seed": args.seed}
    if args.penalties:
        try:
            values["penalties"] = tuple(float(p) for p in args.penalties.split(",") if p.strip())
        except ValueError as exc:
            raise ConfigError(
                f"--penalties {args.penalties!r}: numbers like 1,10", key="--penalties"
            ) from exc
    for name in (
        "restarts",
        "directions",
        "steps",
        "patience",
        "learning_rate",
        "beta",
        "kappa",
        "region_size",
        "gamma",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return CemConfig(**values)  # type: ignore[arg-type]


def run(argv: list[str]) -> int:
    """Run the sub-command; returns the exit code (errors propagate to ``main``)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    spec = model_spec(args)
    assert spec is not None
    config = explain_config(args)
    settings = backend_settings(args, spec, config)
    check_store_flags(args)
    check_at_least(args.seed, "--seed", 0)
    if args.reference and args.kind != "pn":
        raise ConfigError(
            "--reference is where a pertinent negative moves to: use it with --kind pn",
            key="--reference",
        )
    cem = cem_config(args)
    args.inputs = expand_inputs(args.inputs)
    output = check_output(args.output, "--output")
    if output is not None and len(args.inputs) > 1:
        raise ConfigError("--output draws one input's solution: give one input", key="--output")
    from rex_stream.api.synchronous import explain_cem_sync

    results = explain_cem_sync(
        args.inputs,
        spec,
        cem,
        config,
        reference=args.reference,
        store=args.store,
        resume=args.resume,
        overwrite=args.overwrite,
        backend_settings=settings,
        autoencoder=args.autoencoder,
    )
    if output is not None:
        from rex_stream.pictures.methods import save_solution

        save_solution(results[0], output)
    if args.json:
        summaries = [r.summary() for r in results]
        print_json(summaries[0] if len(summaries) == 1 else summaries)
    else:
        for result in results:
            print(human_summary(result))
        if output is not None:
            print(f"picture: {output}")
    return 0


def human_summary(result: CemResult) -> str:
    """Two lines per input: what was found, and what it cost."""
    summary = result.summary()
    head = (
        f"{summary['input']}: class {result.target.classification} "
        f"(confidence {result.target.confidence:.3f})"
    )
    if not result.found:
        found = f"no {result.name.replace('_', ' ')} found (try more --steps or --penalties)"
    else:
        part = summary[result.name]
        found = (
            f"{result.name.replace('_', ' ')}: class {part['class']} (margin {part['margin']:.3f} "
            f"logits), L1 {part['l1']:.2f} over {part['regions']} regions of edge "
            f"{part['region_edge']}, c {part['penalty']:g}"
        )
        found += f"; features: {', '.join(part['features'])}" if part.get("features") else ""
        if result.gamma > 0:
            found += f", reconstruction error {result.reconstruction:.4g} (gamma {result.gamma:g})"
    stats = summary["stats"]
    cost = (
        f"{stats['queries']} queries, {stats['steps']} steps in {stats['chains']} chains "
        f"({stats['resumed_chains']} resumed), {stats['wall_s']:.1f} s"
    )
    return "\n".join([head, found, cost])
