"""Options every method sub-command shares (model, input reading, scheduling), and their
translation into an :class:`ExplainConfig` and :class:`BackendSettings`."""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from rex_stream.cli import faults
from rex_stream.config import ExplainConfig, ScoreKind
from rex_stream.engine.backend import BackendSettings, default_inflight
from rex_stream.errors import ConfigError, OutputError


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--model``/``--backend`` and how the model's inputs are read and batched."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="local ONNX model file")
    model.add_argument("--backend", help="backend spec: model.onnx, triton://…, http(s)://…")
    model.add_argument(
        "--backend-option", action="append", default=[], metavar="KEY=VALUE", help="adapter option"
    )
    model.add_argument("--input-shape", help="model input shape without batch axis, e.g. 1,30")
    model.add_argument("--timeout-s", type=float, default=60.0, help="deadline per backend call")
    faults.add_arguments(model)
    model.add_argument(
        "--scores", choices=[k.value for k in ScoreKind], help="what the model outputs"
    )
    model.add_argument("--target", type=int, help="explain this class instead of the prediction")
    model.add_argument("-m", "--mode", help="RGB, L, tabular, spectral, voxel, audio")
    model.add_argument("--mask-value", help="what removed elements become: a number, min or mean")
    model.add_argument(
        "--means", help="per-channel means subtracted after /norm (ImageNet: 0.485,…)"
    )
    model.add_argument("--stds", help="per-channel standard deviations (ImageNet: 0.229,…)")
    model.add_argument("--norm", type=float, help="pixel values are divided by this first (255)")
    model.add_argument(
        "--mode-option", action="append", default=[], metavar="KEY=VALUE", help="mode option"
    )
    model.add_argument("--batch-size", type=int, help="largest batch per backend call")
    model.add_argument("--max-inflight", type=int, help="concurrent backend calls")
    model.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.set_defaults(model_required=required)


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
            raise ConfigError(
                f"--mask-value {args.mask_value!r}: a number, {', '.join(named[:-1])} or "
                f"{named[-1]}",
                key="--mask-value",
            ) from exc
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


def configure_logging(verbose: int) -> None:
    """Warnings by default, more with ``-v``."""
    logging.basicConfig(
        level=max(logging.WARNING - 10 * verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
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
