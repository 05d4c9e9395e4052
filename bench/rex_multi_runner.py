"""Run ReX 0.4.1's multiple explanations (``--multi``) on one image, timed and counted.

Runs INSIDE ReX's virtual environment (``.venv-rex``); ``bench/bench_multi.py`` starts it as a
subprocess. It follows ReX's own path (load, preprocess, target, ``calculate_responsibility``,
``MultiExplanation.extract``, ``separate_by(permitted_overlap)``) with the prediction function
wrapped to count calls and mutants, and saves every explanation's mask and the kept clause.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from rex_runner import CountingPredictor
from rex_xai.explanation.multi_explanation import MultiExplanation
from rex_xai.explanation.rex import (
    calculate_responsibility,
    get_prediction_func_from_args,
    load_and_preprocess_data,
    predict_target,
    validate_shape,
)
from rex_xai.input.config import Strategy, load_config
from rex_xai.utils._utils import get_device
from rex_xai.utils.logger import logger, set_log_level


def main() -> None:
    """Command line: image, model, config, iterations, seed, batch size, outputs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--spotlights", type=int, default=10)
    parser.add_argument("--out", required=True, help="an .npz for the masks; JSON on stdout")
    options = parser.parse_args()

    args = load_config(options.config)
    args.path = options.image
    args.model = options.model
    args.iters = options.iters
    args.seed = options.seed
    args.gpu = False
    args.progress_bar = False
    args.batch_size = options.batch_size
    args.strategy = Strategy.MultiSpotlight
    args.spotlights = options.spotlights
    args.verbosity = 0
    set_log_level(0, logger)
    device = get_device(False)
    prediction_func, model_shape = get_prediction_func_from_args(args)
    counter = CountingPredictor(prediction_func)
    data = load_and_preprocess_data(model_shape, device, args)
    data.set_mask_value(args.mask_value)
    data = validate_shape(data, model_shape)
    data.target = predict_target(data, args, counter)
    target_calls, target_mutants = counter.snapshot()

    start = time.perf_counter()
    maps, run_stats = calculate_responsibility(data, args, counter)
    mid = time.perf_counter()
    explanation = MultiExplanation(maps, counter, data, args, run_stats)
    explanation.extract()
    clauses = explanation.separate_by(args.permitted_overlap)
    end = time.perf_counter()
    calls, mutants = counter.snapshot()
    spatial = maps.get(data.target.classification).shape
    masks = [
        m.detach().cpu().numpy().reshape(-1, *spatial).any(0) for m in explanation.explanations
    ]
    kept = list(clauses[0]) if clauses else []
    np.savez(options.out, *masks)
    print(
        json.dumps(
            {
                "target": int(data.target.classification),
                "target_confidence": float(data.target.confidence),
                "explanations": len(masks),
                "kept": kept,
                "confidences": [float(c) for c in explanation.explanation_confidences],
                "responsibility_s": mid - start,
                "wall_s": end - start,
                "calls": calls - target_calls,
                "queries": mutants - target_mutants,
            }
        )
    )


if __name__ == "__main__":
    main()
