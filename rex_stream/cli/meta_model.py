"""``rex-stream evaluate --meta model``: MetaQuantus' model-perturbation test of the metrics."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Protocol

import anyio

from rex_stream.cli.meta_display import MetaDisplay, wanted
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError
from rex_stream.evaluation.metric import MetricChoice

#: ``--noise-adversary`` when not given, per test (MetaQuantus' ImageNet settings).
ADVERSARY_NOISE = {"input": 5.0, "model": 0.5}


class ArgumentGroup(Protocol):
    """What :func:`add_arguments` needs of an argparse parser or argument group."""

    def add_argument(self, *names: str, **options: Any) -> Any:
        """Declare one option."""


def add_arguments(group: ArgumentGroup) -> None:
    """The model-perturbation test's own option."""
    group.add_argument(
        "--weight-noise",
        choices=("multiplicative", "additive"),
        default="multiplicative",
        help="--meta model: weights × N(1, σ) (default) or + N(0, σ)",
    )


def run_model_test(
    args: argparse.Namespace,
    spec: str,
    choices: list[MetricChoice],
    config: ExplainConfig,
    settings: BackendSettings,
) -> int:
    """The model-perturbation test of the chosen metrics; prints the table or JSON."""
    if args.resume and not args.store:
        raise ConfigError("--resume needs --store (the store of the run to continue)")
    explainer = getattr(args, "explainer", None)
    if not explainer:
        raise ConfigError(
            "--meta model re-explains under each noisy model: pass --explainer rex[:iters=N] "
            "or --explainer python:module:function"
        )
    from rex_stream.evaluation.meta.model_test import ModelMetaEvaluation, meta_evaluate_model

    noise = args.noise_adversary
    adversary = ADVERSARY_NOISE["model"] if noise is None else noise

    async def main() -> ModelMetaEvaluation:
        return await meta_evaluate_model(
            args.input,
            spec,
            explainer,
            choices,
            mask=args.mask,
            config=config,
            seed=args.seed,
            iterations=args.meta_iterations,
            perturbations=args.meta_perturbations,
            noise_resilience=args.noise_resilience,
            noise_adversary=adversary,
            noise_type=args.weight_noise,
            quantus_compatible=args.quantus_compatible,
            store=args.store,
            resume=args.resume,
            overwrite=args.overwrite,
            backend_settings=settings,
            on_progress=display.update,
        )

    with MetaDisplay(wanted(args), "units (noisy models)") as display:
        result = anyio.run(main)
    if result.resumed and not args.quiet:
        print(f"resumed {result.resumed} finished units from {args.store}", file=sys.stderr)
    print(json.dumps(result.summary(), indent=2) if args.json else result.table())
    return 0
