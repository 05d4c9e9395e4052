"""Score a map with Quantus 0.6.0 itself (run with the Quantus venv's python, not ours).

    python quantus_reference.py MODEL.onnx CASE.npz METRICS.json

``CASE.npz`` holds ``x`` (C×H×W float32), ``a`` (H×W), ``s`` (H×W bool), ``y`` (class);
``METRICS.json`` maps rex-stream metric names to ``[QuantusClass, params, softmax]``. Prints
one JSON object: per metric its score (trapz for curve metrics, as rex-stream reports), the
curve if any, the number of model calls and the wall time. ``np.random.seed(seed)`` precedes
every metric, so each metric starts from the same random state as in rex-stream's
compatible mode. The model is onnxruntime inside a ``torch.nn.Module`` (Quantus accepts only
torch or Keras models).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import onnxruntime
import quantus
import torch
from reference_explainer import quantus_explain  # this script's folder is on sys.path

CURVES = {"PixelFlipping", "RegionPerturbation", "Selectivity"}
#: Metrics that re-explain: they get ``reference_explainer.quantus_explain``.
EXPLAINED = {"MaxSensitivity", "AvgSensitivity", "RandomLogit"}


def mask_over_channels(arr: np.ndarray, mask: np.ndarray, **kwargs: object) -> np.ndarray:
    """Quantus' IROF on RGB passes a B×1×H×W mask that fails its own shape assert: broadcast
    it over the channels (the fix the metric's definition implies)."""
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kwargs)


class OnnxModule(torch.nn.Module):
    """An nn.Module whose forward pass runs an ONNX model (one call per forward)."""

    def __init__(self, path: str, delay_s: float = 0.0) -> None:
        super().__init__()
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # Quantus looks for parameters
        self.delay_s = delay_s
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        feed = {self.input_name: x.detach().cpu().numpy().astype(np.float32)}
        return torch.from_numpy(self.session.run(None, feed)[0])


def main() -> None:
    model_path, case_path, metrics_path = sys.argv[1:4]
    delay_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    warnings.filterwarnings("ignore")
    case = np.load(case_path)
    batched = case["x"].ndim == 4  # several inputs: x N×C×H×W, a and s N×H×W, y N
    x, a, s, y = case["x"], case["a"], case["s"], np.atleast_1d(case["y"]).astype(int)
    if not batched:
        x, a, s = x[None], a[None], s[None]
    a, s = a[:, None], s[:, None]
    seed = int(case["seed"]) if "seed" in case else 0
    model = OnnxModule(model_path, delay_s).eval()
    out = {}
    for name, (cls, params, softmax) in json.loads(open(metrics_path).read()).items():
        if cls == "IROF":
            params = {**params, "perturb_func": mask_over_channels}
        metric = getattr(quantus, cls)(disable_warnings=True, **params)
        np.random.seed(seed)
        before, started = model.calls, time.perf_counter()
        explained = {"explain_func": quantus_explain} if cls in EXPLAINED else {}
        value = metric(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=a,
            s_batch=s.astype(np.float32),
            device="cpu",
            softmax=softmax,
            **explained,
        )
        wall_s = time.perf_counter() - started
        result = np.asarray(value, dtype=np.float64)
        entry: dict[str, object] = {"calls": model.calls - before, "wall_s": wall_s}
        if cls in CURVES:
            curve = result.reshape(-1)
            entry["curve"] = curve.tolist()
            entry["score"] = float(np.trapz(curve, dx=1))
        else:
            entry["score"] = float(result.reshape(-1)[0])
        out[name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
