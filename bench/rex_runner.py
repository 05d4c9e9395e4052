"""Run ReX (``rex-xai`` 0.4.1) on one image through its Python API, timed and counted.

This script runs INSIDE the ReX virtual environment (``/work/rexvenv``), never in rex-stream's:
``bench/compare_rex.py`` starts it as a subprocess. It follows ReX's own ``_explanation``
(load and preprocess, mask value, shape check, target prediction), then times
``calculate_responsibility`` and the global extraction separately, with the prediction
function wrapped to count calls and mutants (and, with ``--latency-ms``, to sleep before each
call like a remote server would). No analysis is run. It writes the target-class responsibility
map (``.npy``, H×W float32) and a JSON of timings, counts and run statistics.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as tt
from rex_xai.explanation.explanation import Explanation
from rex_xai.explanation.rex import (
    calculate_responsibility,
    get_prediction_func_from_args,
    load_and_preprocess_data,
    predict_target,
    validate_shape,
)
from rex_xai.input.config import load_config
from rex_xai.utils._utils import get_device
from rex_xai.utils.logger import logger, set_log_level


class CountingPredictor:
    """Wraps ReX's prediction function: counts calls and mutants, optionally adds latency."""

    def __init__(self, function: Callable[..., Any], latency_s: float = 0.0) -> None:
        self._function = function
        self._latency_s = latency_s
        self.calls = 0
        self.mutants = 0

    def __call__(self, tensor: tt.Tensor | list[tt.Tensor], *args: Any, **kwargs: Any) -> Any:
        """Count, sleep ``latency_s`` (a server round trip), then call the real function."""
        self.calls += 1
        self.mutants += len(tensor) if isinstance(tensor, list) else int(tensor.shape[0])
        if self._latency_s > 0:
            time.sleep(self._latency_s)
        return self._function(tensor, *args, **kwargs)

    def snapshot(self) -> tuple[int, int]:
        """``(calls, mutants)`` so far."""
        return self.calls, self.mutants


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Explain ``options.image`` with ReX; save the map and return the record."""
    args = load_config(options.config)
    args.path = options.image
    args.model = options.model
    args.iters = options.iters
    args.seed = options.seed
    args.gpu = False
    args.progress_bar = False
    args.batch_size = options.batch_size
    args.verbosity = 0
    set_log_level(0, logger)
    device = get_device(False)

    prediction_func, model_shape = get_prediction_func_from_args(args)
    counter = CountingPredictor(prediction_func, options.latency_ms / 1000.0)

    data = load_and_preprocess_data(model_shape, device, args)
    data.set_mask_value(args.mask_value)
    data = validate_shape(data, model_shape)
    data.target = predict_target(data, args, counter)
    target_calls, target_mutants = counter.snapshot()

    start = time.perf_counter()
    maps, run_stats = calculate_responsibility(data, args, counter)
    mid = time.perf_counter()
    resp_calls, resp_mutants = counter.snapshot()
    explanation = Explanation(maps, counter, data, args, run_stats)
    explanation.extract()
    end = time.perf_counter()
    all_calls, all_mutants = counter.snapshot()

    assert explanation.target_map is not None
    responsibility = explanation.target_map.detach().cpu().numpy().astype(np.float32)
    np.save(options.out_map, responsibility)
    mask = explanation.sufficiency_mask
    area = None
    if mask is not None:
        # the mask has the input's shape (1, C, H, W): count spatial elements once
        area = float(mask.detach().cpu().numpy().reshape(-1, *responsibility.shape).any(0).mean())
    record: dict[str, Any] = {
        "image": options.image,
        "iters": options.iters,
        "seed": options.seed,
        "batch_size": args.batch_size,
        "latency_ms": options.latency_ms,
        "target": int(data.target.classification),
        "target_confidence": float(data.target.confidence),
        "responsibility_s": mid - start,
        "extraction_s": end - mid,
        "wall_s": end - start,
        "responsibility_calls": resp_calls - target_calls,
        "responsibility_queries": resp_mutants - target_mutants,
        "extraction_calls": all_calls - resp_calls,
        "extraction_queries": all_mutants - resp_mutants,
        "calls": all_calls - target_calls,
        "queries": all_mutants - target_mutants,
        "sufficiency_area": area,
        "sufficiency_confidence": (
            None
            if explanation.sufficiency_confidence is None
            else float(explanation.sufficiency_confidence)
        ),
        "run_stats": {k: float(v) for k, v in run_stats.items()},
    }
    Path(options.out_json).write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    """Command line: see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", required=True, help="a rex.toml (means/stds, gpu=false)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=1, help="ReX's batch_size (default 1)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sleep before each call")
    parser.add_argument("--out-map", required=True)
    parser.add_argument("--out-json", required=True)
    record = run(parser.parse_args())
    print(json.dumps({k: v for k, v in record.items() if k != "run_stats"}))


if __name__ == "__main__":
    main()
