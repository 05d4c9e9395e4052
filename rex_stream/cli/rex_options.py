"""ReX 0.4.1's own command-line options that rex-stream takes as they are: ``--multi [N]``,
``-db/--database`` and the options that go with the causal wing's further outputs.

``add_arguments`` adds them to the parser; ``apply_arguments`` folds them into the config
after the config file (and checks outputs before the run); ``after_run`` writes the outputs
they ask for.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rex_stream.cli.method_options import check_output
from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError, InputError

if TYPE_CHECKING:
    from rex_stream.result import Explanation

#: ``--multi`` without a number: ReX's default spotlight count.
DEFAULT_SPOTLIGHTS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ReX's multi-explanation options."""
    group = parser.add_argument_group("ReX multi-explanation")
    group.add_argument(
        "--multi",
        nargs="?",
        const=str(DEFAULT_SPOTLIGHTS),
        metavar="N",
        help=f"multiple explanations from N spotlights (default {DEFAULT_SPOTLIGHTS}); "
        "= --strategy multi",
    )
    group.add_argument(
        "--permitted-overlap",
        type=str,
        help="largest Dice overlap between two kept explanations, 0..1 (default 0: disjoint)",
    )
    group.add_argument(
        "-db",
        "--database",
        metavar="FILE",
        help="append one row per explanation to ReX's sqlite database FILE (created if missing)",
    )
    group.add_argument(
        "--labels",
        metavar="FILE",
        help="class names, one per line (line i names class i), or `imagenet`; the bundled "
        "ImageNet model gets ImageNet's names without it",
    )
    group.add_argument(
        "--surface",
        nargs="?",
        const="show",
        metavar="FILE",
        help="3-D surface plot of the responsibility map, saved to FILE (PNG); without FILE "
        "it is shown in a window when a display exists",
    )
    group.add_argument(
        "--complete",
        action="store_true",
        help="a complete explanation: sufficient, necessary and at about the original "
        "confidence (implies --contrastive)",
    )
    group.add_argument(
        "--context",
        metavar="FILE",
        help="masked elements take the values of this input (loaded as the explained one)",
    )
    group.add_argument(
        "--noise",
        metavar="SIGMA",
        help="blur the --context input with a Gaussian of SIGMA elements (default 0)",
    )
    group.add_argument(
        "--script",
        metavar="FILE.py",
        help="a ReX script as the model: model_shape, preprocess(path, shape, device, mode), "
        "prediction_function(mutants, target=None, raw=False, binary_threshold=None)",
    )
    group.add_argument(
        "--processed",
        action="store_true",
        help="the input is already preprocessed: a .npy in the model's layout (with --script), "
        "or an image used without normalisation",
    )
    group.add_argument(
        "--multi-style",
        choices=["composite", "separate"],
        help="--output for multi: one picture with every explanation, or one file each",
    )


def prepare(args: argparse.Namespace) -> None:
    """Before the model is opened: ``--script`` becomes the backend and preprocesses the
    input; ``--processed`` takes the input as it is."""
    script = getattr(args, "script", None)
    if script is None:
        return
    if args.model or args.backend:
        raise ConfigError("give --script or --model/--backend, not both", key="--script")
    if Path(args.filename).is_dir():
        raise ConfigError(
            "--script explains one input at a time: give a file, not a directory", key="--script"
        )
    if not Path(args.filename).is_file():
        raise InputError(f"{args.filename}: no such file")
    from rex_stream.adapters.script import preprocess_input

    tensor = preprocess_input(script, args.filename, args.mode, processed=args.processed)
    args.rex_source = tensor
    args.backend = f"script://{script}"
    args.input_shape = ",".join(str(d) for d in tensor.shape)
    if args.scores is None:
        args.scores = "probabilities"


def source(args: argparse.Namespace) -> str | np.ndarray:
    """What to explain: the script's preprocessed input, or the file named."""
    prepared = getattr(args, "rex_source", None)
    if prepared is not None:
        return prepared
    if getattr(args, "processed", False) and str(args.filename).lower().endswith(".npy"):
        try:
            return np.load(args.filename, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"--processed {args.filename}: cannot read ({exc})") from exc
    return str(args.filename)


def apply_arguments(args: argparse.Namespace, config: ExplainConfig) -> ExplainConfig:
    """The config with ReX's options from the command line applied."""
    multi = config.multi
    extraction = config.extraction
    _refuse_two_strategies(args)
    if getattr(args, "multi", None) is not None:
        text = str(args.multi).strip()
        try:
            spotlights = int(text)
        except ValueError:
            raise ConfigError(
                f"--multi {text!r}: expected a whole number of spotlights", key="--multi"
            ) from None
        if spotlights < 1:
            raise ConfigError(f"--multi {text!r}: expected at least 1 spotlight", key="--multi")
        multi = replace(multi, spotlights=spotlights)
        extraction = replace(extraction, strategy="multi")
    if getattr(args, "permitted_overlap", None) is not None:
        try:
            overlap = float(args.permitted_overlap)
        except ValueError:
            raise ConfigError(
                f"--permitted-overlap {args.permitted_overlap!r}: expected a number in [0, 1]",
                key="--permitted-overlap",
            ) from None
        if not 0.0 <= overlap <= 1.0:
            raise ConfigError(
                f"--permitted-overlap {overlap:g}: expected a number in [0, 1]",
                key="--permitted-overlap",
            )
        multi = replace(multi, permitted_overlap=overlap)
    if getattr(args, "labels", None):
        from rex_stream.labels import load_labels

        args.rex_labels = load_labels(args.labels)
    if getattr(args, "surface", None):
        several = isinstance(args.filename, list)  # several inputs, named as a directory
        args.surface = _surface_target(args.surface, "inputs" if several else args.filename)
    if getattr(args, "complete", False):
        extraction = replace(extraction, strategy="contrastive", complete=True)
    if getattr(args, "database", None):
        from rex_stream.rex_compat.database import check_database

        check_database(args.database)
    image = config.image
    if getattr(args, "processed", False) and not getattr(args, "script", None):
        image = replace(image, norm=None, means=None, stds=None)
    if getattr(args, "context", None):
        if not Path(args.context).is_file():
            raise InputError(f"--context {args.context}: no such file")
        image = replace(image, context=str(args.context))
    if getattr(args, "noise", None) is not None:
        try:
            noise = float(args.noise)
        except ValueError:
            raise ConfigError(
                f"--noise {args.noise!r}: expected a number ≥ 0", key="--noise"
            ) from None
        if not 0 <= noise < float("inf"):
            raise ConfigError(f"--noise {args.noise!r}: expected a number ≥ 0", key="--noise")
        if not image.context:
            raise ConfigError(
                f"--noise {args.noise}: it blurs the --context input; give --context", key="--noise"
            )
        image = replace(image, context_noise=noise)
    visual = config.visual
    if getattr(args, "multi_style", None):
        visual = replace(visual, multi_style=args.multi_style)
    return replace(config, multi=multi, extraction=extraction, visual=visual, image=image)


def _refuse_two_strategies(args: argparse.Namespace) -> None:
    """``--multi``, ``--complete`` and ``-s/--contrastive`` each pick the extraction: two
    different picks would silently drop one."""
    strategy = getattr(args, "strategy", None)
    multi = getattr(args, "multi", None) is not None
    complete = getattr(args, "complete", False)
    if multi and (complete or strategy not in (None, "multi", "spotlight")):
        other = "--complete" if complete else f"--strategy {strategy}"
        raise ConfigError(
            f"--multi and {other} ask for different extractions: give one", key="--multi"
        )
    if complete and strategy not in (None, "contrastive"):
        raise ConfigError(
            f"--complete is contrastive and --strategy {strategy} is not: give one of them",
            key="--complete",
        )


def after_run(
    args: argparse.Namespace,
    result: Explanation,
    output: Path | None,
    input_name: str | None = None,
) -> dict[str, str]:
    """Write the outputs ReX's options ask for (labels, surface, multi pictures, database
    rows); returns what was written, by name. In directory mode (``input_name``) the surface
    file gets the input's name: ``surface_<name>.png``."""
    written: dict[str, str] = {}
    name_target(args, result)
    if getattr(args, "surface", None):
        from rex_stream.pictures.surface import SHOW, render_surface

        target = args.surface
        if input_name is not None and target != SHOW:
            path = Path(target)
            target = str(path.with_name(f"{path.stem}_{input_name}{path.suffix}"))
        shown = render_surface(result, target)
        if shown is not None:
            written["surface"] = shown
    if output is not None and result.multi is not None:
        from rex_stream.modes import render_explanation
        from rex_stream.pictures.multi import render_multi

        paths = render_multi(result, output, render_explanation)
        if len(paths) > 1:
            written.update({f"explanation {i}": str(p) for i, p in enumerate(paths)})
    if getattr(args, "database", None):
        from rex_stream.rex_compat.database import append_explanation

        rows = append_explanation(args.database, result)
        written["database"] = f"{args.database} ({rows} row{'s' if rows != 1 else ''})"
    return written


def chosen_labels(args: argparse.Namespace, classification: int) -> tuple[str, ...] | None:
    """The class names in use: ``--labels`` (checked to cover ``classification``), else the
    bundled model's ImageNet names, else None."""
    from rex_stream.labels import check_labels_cover, labels_for_model

    labels = getattr(args, "rex_labels", None)
    if labels is not None:
        check_labels_cover(labels, classification + 1, args.labels)
        return labels
    return labels_for_model(getattr(args, "model", None) or getattr(args, "backend", None))


def name_target(args: argparse.Namespace, result: Explanation) -> None:
    """Name the target class (``--labels``, or the bundled model's ImageNet names)."""
    cls = result.target.classification
    labels = chosen_labels(args, cls)
    if labels is not None and 0 <= cls < len(labels):
        result.label = labels[cls]


def name_summary(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """Name the target class in a finished input's summary (a Dask worker's), as
    :func:`name_target` names an explanation's."""
    target = summary.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("class"), int):
        return
    labels = chosen_labels(args, target["class"])
    if labels is not None and 0 <= target["class"] < len(labels) and not target.get("label"):
        target["label"] = labels[target["class"]]


def class_text(result: Explanation) -> str:
    """``"ladybug (301)"`` when the class has a name, else ``"class 301"``."""
    label = result.label
    cls = result.target.classification
    return f"{label} ({cls})" if label else f"class {cls}"


def human_lines(result: Explanation) -> list[str]:
    """Extra summary lines for the analysis, multi and complete explanations."""
    return _analysis_lines(result) + _explanation_lines(result)


def _number(value: float | None, form: str = ".4f") -> str:
    return "n/a" if value is None else format(value, form)


def _analysis_lines(result: Explanation) -> list[str]:
    analysis = result.analysis
    if not analysis:
        return []
    lines = [
        f"analysis: area {_number(analysis['area'], '.4f')} ({_first_explanation(result)}), "
        "entropy "
        f"{_number(analysis['entropy'])} bits, KL(U‖P) {_number(analysis['kl_divergence'])} "
        f"(ReX's figure), KL(P‖U) {_number(analysis['kl_from_uniform'])}, insertion AUC "
        f"{_number(analysis['insertion_auc'])}, deletion AUC {_number(analysis['deletion_auc'])}"
    ]
    aucs = [analysis.get("insertion_auc"), analysis.get("deletion_auc")]
    if any(v is not None and v > 1 for v in aucs):
        lines.append(
            "  (an AUC above 1: the curves are the target's confidence divided by its "
            "confidence on the whole input, and the model was more confident on part of it)"
        )
    for entry in analysis.get("explanations", []):
        lines.append(
            f"  spotlight {entry['spotlight']}: area {entry['area']:.4f}, confidence "
            f"{entry['confidence']:.3f}, responsibility share "
            f"{_number(entry['responsibility_share'], '.3f')}"
        )
    return lines


def _first_explanation(result: Explanation) -> str:
    """Which explanation an analysis's ``area`` is of: the global one, or a spotlight's."""
    explanations = (result.analysis or {}).get("explanations") or []
    if result.multi is not None and explanations:
        return f"spotlight {explanations[0]['spotlight']}"
    return "the global explanation"


def _explanation_lines(result: Explanation) -> list[str]:
    complete = result.complete
    if complete is not None:
        facts = complete.facts()
        reached = "" if complete.reached else " (the original confidence was not reached)"
        return [
            f"complete: {facts['area']:.1%} of the input at confidence "
            f"{facts['confidence']:.3f}{reached}; necessary part {facts['necessary_area']:.1%} "
            f"(without it: class {facts['inverse_classification']} at "
            f"{facts['inverse_confidence']:.3f})"
        ]
    if result.multi is None:
        return []
    multi = result.multi
    lines = [
        f"multi: {len(multi.kept)} explanations kept of {len(multi.found)} found by "
        f"{multi.spotlights} spotlights (overlap ≤ {result.config.multi.permitted_overlap:g})"
    ]
    for number, found in enumerate(multi.kept):
        centre = ", ".join(str(c) for c in found.centre)
        lines.append(
            f"  explanation {number} (spotlight {found.index}, centre ({centre})): "
            f"{found.area:.1%} of the input, confidence {found.confidence:.3f}"
        )
    return lines


def _surface_target(target: str, filename: str) -> str:
    """Where the surface goes: FILE, a window when there is a display, else (as with a
    bare ``--output``) ``<input>-surface.png``, announced on stderr. Fails before the run
    when FILE cannot be written."""
    from rex_stream.pictures.surface import SHOW, SUFFIXES, has_display

    if target == SHOW:
        if has_display():
            return target
        target = f"{Path(filename).stem}-surface.png"
        print(f"--surface: no display to show it; writing {target}", file=sys.stderr)
    check_output(target, "--surface", SUFFIXES, "a picture suffix such as .png")
    return target
