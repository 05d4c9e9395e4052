"""Options every method sub-command shares (model, input reading, scheduling), and their
translation into an :class:`ExplainConfig` and :class:`BackendSettings`."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from rex_stream.cli import faults
from rex_stream.config import ExplainConfig, ScoreKind
from rex_stream.engine.backend import BackendSettings, default_inflight
from rex_stream.errors import ConfigError, OutputError

#: A parser or one of its argument groups (both take ``add_argument``).
ArgumentGroup = argparse.ArgumentParser | argparse._ArgumentGroup


def add_model_arguments(
    parser: argparse.ArgumentParser, *, required: bool = True, sweeps: bool = False
) -> None:
    """The model, reading, scheduling and terminal flags every command shares (one
    definition for all: ``rex-stream``, ``cem``, ``l2x``, ``l2x-train``, ``evaluate``)."""
    add_backend_arguments(parser.add_argument_group("model"))
    add_reading_arguments(parser.add_argument_group("reading the input"), sweeps=sweeps)
    add_scheduling_arguments(parser.add_argument_group("scheduling"))
    add_terminal_arguments(parser.add_argument_group("terminal"))
    parser.set_defaults(model_required=required)


def add_backend_arguments(model: ArgumentGroup) -> None:
    """``--model``/``--backend`` and how the backend is called and read."""
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
        "--timeout-s", type=float, default=60.0, help="deadline per backend call (default 60)"
    )
    faults.add_arguments(model)
    model.add_argument(
        "--scores",
        choices=[k.value for k in ScoreKind],
        help="what the model outputs (default logits: softmax is applied)",
    )
    model.add_argument("--target", type=int, help="explain this class instead of the prediction")


def add_reading_arguments(group: ArgumentGroup, *, sweeps: bool = False) -> None:
    """How an input file becomes the model's input: mode, normalisation, mask value."""
    group.add_argument("-m", "--mode", help="RGB, L, tabular, spectral, voxel, audio, text")
    group.add_argument(
        "--spectral",
        action="store_const",
        const="spectral",
        dest="mode",
        help="= --mode spectral (ReX's shortcut)",
    )
    group.add_argument(
        "--mask-value",
        help="what masked elements become: a number, min, mean"
        + (
            ", or per iteration random (uniform in the input's [min, max]) or linear (min to "
            "max over the iterations)"
            if sweeps
            else ""
        ),
    )
    group.add_argument(
        "--means",
        help="per-channel means subtracted after /norm, e.g. 0.485,0.456,0.406 (ImageNet); "
        "ReX's [rex.onnx] means",
    )
    group.add_argument(
        "--stds",
        help="per-channel standard deviations divided by after the means, e.g. "
        "0.229,0.224,0.225 (ImageNet); ReX's [rex.onnx] stds",
    )
    group.add_argument(
        "--norm", type=float, help="pixel values are divided by this first (default 255)"
    )
    group.add_argument(
        "--mode-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="mode option (repeatable), e.g. drop=label, row=3",
    )
    group.add_argument(
        "--tokenizer",
        metavar="FILE",
        help="text mode: a tokenizer.json (Hugging Face tokenizers) for models over token ids",
    )


def add_scheduling_arguments(group: ArgumentGroup) -> None:
    """How mutants are batched and sent."""
    group.add_argument("--batch-size", type=int, help="largest batch per backend call")
    group.add_argument(
        "--max-inflight",
        type=int,
        help="concurrent backend calls (default 8 for network backends, 2 for local ones)",
    )
    group.add_argument("--linger-ms", type=float, help="wait this long for a batch to fill")
    group.add_argument(
        "--concurrent-inputs",
        type=int,
        default=4,
        help="several inputs (files, a list or a directory): inputs at once (default 4)",
    )


def add_store_arguments(
    group: ArgumentGroup,
    store_help: str,
    *,
    resume_help: str | None = "continue the run in --store",
    overwrite_help: str = "replace these inputs in --store",
) -> None:
    """``--store`` (a folder or an object-store URL), ``--storage-option``, ``--resume``
    (unless ``resume_help`` is None) and ``--overwrite``: one definition for every command
    that writes a store."""
    group.add_argument(
        "--store",
        help=f"{store_help}: a folder, or an object store URL (s3://bucket/runs.zarr, "
        "memory://…; see docs/object-stores.md)",
    )
    group.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="an option of the object store's filesystem (repeatable; s3fs: endpoint_url=…, "
        "client_kwargs.region_name=…); credentials come from the environment",
    )
    if resume_help is not None:
        group.add_argument("--resume", action="store_true", help=resume_help)
    group.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_terminal_arguments(group: ArgumentGroup) -> None:
    """``--json``, ``-v`` and ``-q``."""
    group.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display (warnings and errors still go to stderr)",
    )


def pairs(values: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict."""
    found = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE", key=flag)
        found[key.strip()] = value.strip()
    return found


def model_spec(args: argparse.Namespace) -> str | None:
    """The backend spec the arguments name (None when none was given and none is needed)."""
    if args.model and args.backend:
        raise ConfigError("give --model or --backend, not both", key="--backend")
    if args.model and not args.model.lower().endswith(".onnx"):
        raise ConfigError(f"--model {args.model}: expected an ONNX file (.onnx)", key="--model")
    spec = args.backend or args.model
    if not spec and getattr(args, "model_required", True):
        raise ConfigError("no model: pass --model model.onnx or --backend SPEC", key="--model")
    return spec


def shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 3,224,224`` as a tuple of positive integers."""
    if text is None:
        return None
    try:
        found = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--input-shape {text!r}: expected integers like 3,224,224", key="--input-shape"
        ) from exc
    if not found or any(d <= 0 for d in found):
        raise ConfigError(
            f"--input-shape {text!r}: expected positive integers", key="--input-shape"
        )
    return found


def floats(text: str, flag: str) -> tuple[float, ...]:
    """``0.485,0.456,0.406`` as numbers."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(
            f"{flag} {text!r}: expected numbers like 0.485,0.456,0.406", key=flag
        ) from exc
    if not values:
        raise ConfigError(f"{flag} {text!r}: expected numbers like 0.485,0.456,0.406", key=flag)
    return values


def explain_config(
    args: argparse.Namespace, base: ExplainConfig | None = None, *, sweeps: bool = False
) -> ExplainConfig:
    """The reading, scoring and scheduling settings the arguments give, over ``base`` (mode
    options are merged into the base's). Shared by every command; a flag a command does not
    define is simply absent. ``sweeps``: ``--mask-value random|linear`` (per iteration of the
    causal search) is allowed."""
    config = base or ExplainConfig()
    scoring, image, scheduler = config.scoring, config.image, config.scheduler
    flag = lambda name: getattr(args, name, None)  # noqa: E731
    if flag("scores"):
        scoring = replace(scoring, scores=ScoreKind(args.scores))
    if flag("target") is not None:
        scoring = replace(scoring, target=args.target)
    if flag("mode"):
        image = replace(image, mode=args.mode)
    if flag("mask_value") is not None:
        text = args.mask_value.strip().lower()
        named = ("min", "mean", "random", "linear") if sweeps else ("min", "mean")
        try:
            value: float | str = text if text in named else float(text)
        except ValueError as exc:
            if image.mode == "text":  # delete, attention, mask-token or a literal ([MASK])
                value = args.mask_value
            else:
                raise ConfigError(
                    f"--mask-value {args.mask_value!r}: a number, {', '.join(named[:-1])} or "
                    f"{named[-1]}",
                    key="--mask-value",
                ) from exc
        if isinstance(value, float) and value != value:  # NaN masks make most models answer NaN
            raise ConfigError(
                f"--mask-value {args.mask_value!r}: masked elements would be NaN, which most "
                "models answer with NaN scores; give a number, min or mean",
                key="--mask-value",
            )
        image = replace(image, mask_value=value)
    if flag("means") is not None:
        image = replace(image, means=floats(args.means, "--means"))
    if flag("stds") is not None:
        image = replace(image, stds=floats(args.stds, "--stds"))
    if flag("norm") is not None:
        if not 0 < args.norm < float("inf"):
            raise ConfigError(f"--norm {args.norm:g}: must be a number > 0", key="--norm")
        image = replace(image, norm=args.norm)
    if flag("mode_option"):
        options = {**image.mode_options, **pairs(args.mode_option, "--mode-option")}
        image = replace(image, mode_options=options)
    if flag("tokenizer"):  # = --mode-option tokenizer=FILE
        image = replace(image, mode_options={**image.mode_options, "tokenizer": args.tokenizer})
    if flag("batch_size") is not None:
        scheduler = replace(scheduler, max_batch=args.batch_size)
    if flag("max_inflight") is not None:
        scheduler = replace(scheduler, max_inflight=args.max_inflight)
    if flag("linger_ms") is not None:
        scheduler = replace(scheduler, linger_ms=args.linger_ms)
    return faults.apply(args, replace(config, scoring=scoring, image=image, scheduler=scheduler))


def backend_settings(args: argparse.Namespace, spec: str, config: ExplainConfig) -> BackendSettings:
    """Adapter settings from the arguments."""
    return BackendSettings(
        timeout_s=args.timeout_s,
        max_inflight=config.scheduler.max_inflight or default_inflight(spec),
        input_shape=shape(args.input_shape),
        options=pairs(args.backend_option, "--backend-option"),
    )


def check_output(
    path: str | None, flag: str, suffixes: tuple[str, ...] = (".png",), hint: str | None = None
) -> Path | None:
    """Fail before the run when an output cannot be written: a suffix in ``suffixes`` (else
    "use ``hint``", by default the suffixes), an existing folder, write permission."""
    if path is None:
        return None
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        raise OutputError(f"{flag} {path}: use {hint or 'the suffix ' + ' or '.join(suffixes)}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputError(f"{flag} {path}: not writable")
    return target


def print_json(value: Any) -> None:
    """One JSON document on stdout (NaN as null)."""
    print(json.dumps(_finite(value), indent=2))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
