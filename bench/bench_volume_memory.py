"""Peak RSS of explaining a large float32 volume (issues 5 and 16): 512³ by default.

    python bench/bench_volume_memory.py [--size 512] [--iters 4] [--tree-depth 6] [--inflight 1]
        [--backend python|onnx] [--input array|npy]

The model reads the mean of a planted cube → two logits: a cheap Python callable
(``--backend python``), or the same decision as an ONNX model run by onnxruntime through
rex-stream's ONNX adapter (``--backend onnx``: 8³ average pooling of the whole volume, then
the cube's mean), the way users run it. ``--input npy`` saves the volume to a ``.npy`` file
and explains the file (memory-mapped), as the CLI does. The numbers measure rex-stream and
the backend's own copies: the subject tensor, the batch buffers, onnxruntime's allocations,
the responsibility map and the extraction. Prints peak RSS next to the reference the issue
sets: one dense float32 map per class × iterations.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.engine.backend import Backend


def rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_cube_model(path: Path, n: int, cube: tuple[slice, ...]) -> Path:
    """An ONNX model: class 1's logit is twice the cube's mean (seen through 8³ pooling),
    class 0's is 1; the doubling makes one input-sized intermediate, as real models do."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    pool = 8
    starts = [c.start // pool for c in cube]
    ends = [-(-c.stop // pool) for c in cube]
    nodes = [
        # a full-size intermediate, as most models make one (a rescaling, a first layer)
        helper.make_node("Mul", ["input", "two"], ["scaled"]),
        helper.make_node("Unsqueeze", ["scaled", "axis1"], ["x"]),
        helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[pool] * 3, strides=[pool] * 3),
        helper.make_node("Slice", ["p", "starts", "ends", "axes"], ["c"]),
        helper.make_node("ReduceMean", ["c", "reduce_axes"], ["level"], keepdims=0),
        helper.make_node("Unsqueeze", ["level", "axis1"], ["column"]),
        helper.make_node("Mul", ["column", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "half"], ["halves"]),
        helper.make_node("Concat", ["halves", "column"], ["logits"], axis=1),
    ]
    constants = {
        "axis1": np.array([1], np.int64),
        "starts": np.array(starts, np.int64),
        "ends": np.array(ends, np.int64),
        "axes": np.array([2, 3, 4], np.int64),
        "reduce_axes": np.array([1, 2, 3, 4], np.int64),
        "two": np.array(2.0, np.float32),
        "zero": np.array(0.0, np.float32),
        "half": np.array(1.0, np.float32),  # class 1 when the (doubled) cube mean passes 1
    }
    graph = helper.make_graph(
        nodes,
        "planted_cube",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n, n, n])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--tree-depth", type=int, default=6)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--backend", choices=("python", "onnx"), default="python")
    parser.add_argument("--input", choices=("array", "npy"), default="array")
    parser.add_argument("--arena", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="volume-bench"))
    n = args.size
    start_rss = rss_mib()
    volume = np.zeros((n, n, n), np.float32)
    cube = tuple(slice(n // 3, n // 3 + max(2, n // 16)) for _ in range(3))
    volume[cube] = 1.0

    def model(batch: np.ndarray) -> np.ndarray:
        """Class 1 when the cube is bright (a planted blob), else class 0."""
        level = batch[(slice(None), *cube)].mean(axis=(1, 2, 3))
        return np.stack([np.full_like(level, 0.5), level], axis=1)

    backend: Backend = PythonBackend(model, (n, n, n), name="cube", max_inflight=args.inflight)
    if args.backend == "onnx":
        from rex_stream.adapters.onnx import OnnxBackend
        from rex_stream.engine.backend import BackendSettings

        backend = OnnxBackend(
            save_cube_model(workdir / "cube.onnx", n, cube),
            BackendSettings(max_inflight=args.inflight, options={"arena": args.arena}),
        )
    source: np.ndarray | str = volume
    if args.input == "npy":
        np.save(workdir / "volume.npy", volume)
        del volume
        source = str(workdir / "volume.npy")
    began = time.perf_counter()
    explanation = explain_sync(
        source,
        backend,
        mode="voxel",
        seed=0,
        iters=args.iters,
        tree_depth=args.tree_depth,
        max_inflight=args.inflight,
    )
    wall_s = time.perf_counter() - began
    peak = rss_mib()
    volume_mib = n**3 * 4 / 2**20
    classes = 2
    reference = classes * args.iters * volume_mib
    mask = explanation.mask
    inside = bool(mask is not None and mask[cube].mean() > 0.5)
    result = {
        "size": n,
        "iters": args.iters,
        "tree_depth": args.tree_depth,
        "max_inflight": args.inflight,
        "backend": args.backend,
        "input": args.input,
        "arena": args.arena,
        "queries": explanation.stats.queries,
        "mean_batch": explanation.stats.mean_batch,
        "wall_s": round(wall_s, 1),
        "volume_mib": round(volume_mib),
        "start_rss_mib": round(start_rss),
        "peak_rss_mib": round(peak),
        "dense_maps_reference_mib": round(reference),
        "peak_over_reference": round(peak / reference, 3),
        "explanation_area": None if mask is None else float(mask.mean()),
        "explanation_covers_cube": inside,
        # digests: runs that must give the same result can be compared
        "map_digest": hashlib.sha256(explanation.responsibility.tobytes()).hexdigest()[:16],
        "mask_digest": None if mask is None else hashlib.sha256(mask.tobytes()).hexdigest()[:16],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
