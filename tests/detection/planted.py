"""Small real ONNX detectors with planted objects, one per output layout, and their photos.

Every detector looks at a 64 × 64 RGB input as an 8 × 8 grid of 8-pixel cells: a cell fires
for class c when its mean colour is channel c with the others dark (score = sigmoid(12 ·
(mean_c − (mean of the others)/2 − 0.5)): a fully shown pure-colour cell scores 0.9975, one
half shown 0.5). Its box is the cell. The layouts then differ only in how they report that:
raw YOLOv5/YOLOv8 proposals, NMS-free (N, K, 6) rows, EfficientNMS's four outputs, or
torchvision's variable-length boxes/labels/scores with a batch fixed at 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

SIZE = 64
CELL = 8
GRID = SIZE // CELL
ANCHORS = GRID * GRID
CLASSES = 3
TOP_K = 10
KEEP_SCORE = 0.25  # rows below this score are padding in the post-NMS layouts
LAYOUT_NAMES = ("yolov5", "yolov8", "end2end", "efficient-nms", "torchvision")


def cell_box(row: int, col: int) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) of grid cell (row, col) in model pixels."""
    return (col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL)


def _centred_boxes() -> np.ndarray:
    """(1, 4, A): cx, cy, w, h of every cell, row-major."""
    rows, cols = np.divmod(np.arange(ANCHORS), GRID)
    centre = CELL / 2
    return np.stack(
        [cols * CELL + centre, rows * CELL + centre, np.full(ANCHORS, CELL), np.full(ANCHORS, CELL)]
    )[None].astype(np.float32)


def _corner_boxes() -> np.ndarray:
    """(A, 4): x0, y0, x1, y1 of every cell, row-major."""
    rows, cols = np.divmod(np.arange(ANCHORS), GRID)
    return np.stack(
        [cols * CELL, rows * CELL, (cols + 1) * CELL, (rows + 1) * CELL], axis=1
    ).astype(np.float32)


def _constant(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _grid_scores(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    """images → S (N, C, A): each cell's class scores."""
    mix = np.full((CLASSES, CLASSES), -0.5, np.float32)
    np.fill_diagonal(mix, 1.0)
    inits += [
        _constant("mix", mix.reshape(CLASSES, CLASSES, 1, 1)),
        _constant("mix_bias", np.full(CLASSES, -0.5, np.float32)),
        _constant("gain", np.array(12.0, np.float32)),
        _constant("flat", np.array([0, CLASSES, ANCHORS], np.int64)),
    ]
    nodes += [
        helper.make_node(
            "AveragePool", ["images"], ["means"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]
        ),
        helper.make_node("Conv", ["means", "mix", "mix_bias"], ["contrast"]),
        helper.make_node("Mul", ["contrast", "gain"], ["sharp"]),
        helper.make_node("Sigmoid", ["sharp"], ["grid"]),
        helper.make_node("Reshape", ["grid", "flat"], ["S"]),
    ]


def _batched_boxes(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    """S → B (N, 4, A): the cells' centred boxes, repeated for every image."""
    inits += [
        _constant("centred", _centred_boxes()),
        _constant("zero", np.array(0.0, np.float32)),
        _constant("s0", np.array([0], np.int64)),
        _constant("s1", np.array([1], np.int64)),
    ]
    nodes += [
        helper.make_node("Slice", ["S", "s0", "s1", "s1"], ["first"]),
        helper.make_node("Mul", ["first", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "centred"], ["B"]),
    ]


def _top_rows(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    """S → best (N, K) scores, classes (N, K), corner boxes (N, K, 4), keep (N, K) 0/1."""
    inits += [
        _constant("k", np.array([TOP_K], np.int64)),
        _constant("corners", _corner_boxes()),
        _constant("keep_score", np.array(KEEP_SCORE, np.float32)),
    ]
    nodes += [
        helper.make_node("ReduceMax", ["S"], ["score"], axes=[1], keepdims=0),
        helper.make_node("ArgMax", ["S"], ["label"], axis=1, keepdims=0),
        helper.make_node("TopK", ["score", "k"], ["top", "where"], axis=1),
        helper.make_node("Gather", ["corners", "where"], ["top_boxes_raw"], axis=0),
        helper.make_node("GatherElements", ["label", "where"], ["top_label"], axis=1),
        helper.make_node("Cast", ["top_label"], ["top_label_f"], to=TensorProto.FLOAT),
        helper.make_node("GreaterOrEqual", ["top", "keep_score"], ["keep_b"]),
        helper.make_node("Cast", ["keep_b"], ["keep"], to=TensorProto.FLOAT),
    ]


def _save(nodes, inits, outputs, path: Path, batch: int | str | None = "N") -> Path:  # type: ignore[no-untyped-def]
    """The graph saved; ``batch=None``: an input of one picture (3, H, W), no batch axis."""
    if batch is None:
        inits = [*inits, _constant("first_axis", np.array([0], np.int64))]
        nodes = [helper.make_node("Unsqueeze", ["image", "first_axis"], ["images"]), *nodes]
        given = helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, SIZE, SIZE])
    else:
        given = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])
    graph = helper.make_graph(nodes, path.stem, [given], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_detector(
    path: Path, layout: str, *, float_outputs: bool = False, batch_axis: bool = True
) -> Path:
    """An ONNX detector of planted squares answering in ``layout`` (see the module doc).

    ``float_outputs``: EfficientNMS's count and classes as float32 (a server declaring every
    output FP32) instead of int32. ``batch_axis=False`` (torchvision): the input is one
    picture (3, H, W), as torchvision's exports take it.
    """
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    _grid_scores(nodes, inits)
    out = helper.make_tensor_value_info
    if layout == "yolov8":
        _batched_boxes(nodes, inits)
        nodes.append(helper.make_node("Concat", ["B", "S"], ["output0"], axis=1))
        outputs = [out("output0", TensorProto.FLOAT, ["N", 4 + CLASSES, ANCHORS])]
        return _save(nodes, inits, outputs, path)
    if layout == "yolov5":
        _batched_boxes(nodes, inits)
        nodes += [
            helper.make_node("ReduceMax", ["S"], ["objectness"], axes=[1], keepdims=1),
            helper.make_node("Div", ["S", "objectness"], ["conditional"]),
            helper.make_node("Concat", ["B", "objectness", "conditional"], ["raw"], axis=1),
            helper.make_node("Transpose", ["raw"], ["output0"], perm=[0, 2, 1]),
        ]
        outputs = [out("output0", TensorProto.FLOAT, ["N", ANCHORS, 5 + CLASSES])]
        return _save(nodes, inits, outputs, path)
    if layout == "torchvision":
        inits += [
            _constant("keep_tv", np.array(0.5, np.float32)),
            _constant("corners", _corner_boxes()),
            _constant("line", np.array([-1], np.int64)),
        ]
        nodes += [
            helper.make_node("ReduceMax", ["S"], ["score2"], axes=[1], keepdims=0),
            helper.make_node("ArgMax", ["S"], ["label2"], axis=1, keepdims=0),
            helper.make_node("Reshape", ["score2", "line"], ["score1"]),
            helper.make_node("Reshape", ["label2", "line"], ["label1"]),
            helper.make_node("GreaterOrEqual", ["score1", "keep_tv"], ["found"]),
            helper.make_node("NonZero", ["found"], ["found_at"]),
            helper.make_node("Reshape", ["found_at", "line"], ["index"]),
            helper.make_node("Gather", ["corners", "index"], ["boxes"], axis=0),
            helper.make_node("Gather", ["label1", "index"], ["labels"], axis=0),
            helper.make_node("Gather", ["score1", "index"], ["scores"], axis=0),
        ]
        outputs = [
            out("boxes", TensorProto.FLOAT, ["D", 4]),
            out("labels", TensorProto.INT64, ["D"]),
            out("scores", TensorProto.FLOAT, ["D"]),
        ]
        return _save(nodes, inits, outputs, path, batch=1 if batch_axis else None)
    _top_rows(nodes, inits)
    inits.append(_constant("last", np.array([2], np.int64)))
    nodes += [
        helper.make_node("Unsqueeze", ["keep", "last"], ["keep3"]),
        helper.make_node("Mul", ["top_boxes_raw", "keep3"], ["top_boxes"]),
        helper.make_node("Mul", ["top", "keep"], ["top_scores"]),
        helper.make_node("Mul", ["top_label_f", "keep"], ["top_labels"]),
    ]
    if layout == "end2end":
        nodes += [
            helper.make_node("Unsqueeze", ["top_scores", "last"], ["score3"]),
            helper.make_node("Unsqueeze", ["top_labels", "last"], ["label3"]),
            helper.make_node("Concat", ["top_boxes", "score3", "label3"], ["output0"], axis=2),
        ]
        outputs = [out("output0", TensorProto.FLOAT, ["N", TOP_K, 6])]
        return _save(nodes, inits, outputs, path)
    if layout == "efficient-nms":
        integer = TensorProto.FLOAT if float_outputs else TensorProto.INT32
        nodes += [
            helper.make_node("ReduceSum", ["keep", "s_axis"], ["count_f"], keepdims=1),
            helper.make_node("Cast", ["count_f"], ["num_detections"], to=integer),
            helper.make_node("Identity", ["top_boxes"], ["detection_boxes"]),
            helper.make_node("Identity", ["top_scores"], ["detection_scores"]),
            helper.make_node("Cast", ["top_labels"], ["detection_classes"], to=integer),
        ]
        inits.append(_constant("s_axis", np.array([1], np.int64)))
        outputs = [
            out("num_detections", integer, ["N", 1]),
            out("detection_boxes", TensorProto.FLOAT, ["N", TOP_K, 4]),
            out("detection_scores", TensorProto.FLOAT, ["N", TOP_K]),
            out("detection_classes", integer, ["N", TOP_K]),
        ]
        return _save(nodes, inits, outputs, path)
    raise ValueError(f"no planted detector for layout {layout!r}")


def save_classifier(path: Path) -> Path:
    """A classifier of the same input (one (N, 3) output): the wrong model for --detections."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    _grid_scores(nodes, inits)
    nodes.append(helper.make_node("ReduceMax", ["S"], ["logits"], axes=[2], keepdims=0))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])]
    return _save(nodes, inits, outputs, path)


COLOURS = {0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)}


def planted_photo(
    path: Path, objects: list[tuple[int, int, int]], scale: tuple[int, int] = (2, 2), seed: int = 0
) -> Path:
    """A photo ``SIZE × scale`` pixels of dim noise with a pure-colour square filling each of
    ``objects`` (grid row, grid column, class); returns ``path``."""
    sx, sy = scale
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (SIZE * sy, SIZE * sx, 3)).astype(np.uint8)
    for row, col, label in objects:
        x0, y0, x1, y1 = cell_box(row, col)
        pixels[y0 * sy : y1 * sy, x0 * sx : x1 * sx] = COLOURS[label]
    Image.fromarray(pixels).save(path)
    return path


def planted_tensor(objects: list[tuple[int, int, int]], seed: int = 0) -> np.ndarray:
    """The model-sized input (3, 64, 64) in [0, 1] of a photo with ``objects`` (scale 1)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (SIZE, SIZE, 3)).astype(np.float32)
    for row, col, label in objects:
        x0, y0, x1, y1 = cell_box(row, col)
        pixels[y0:y1, x0:x1] = COLOURS[label]
    return np.ascontiguousarray(np.transpose(pixels / 255.0, (2, 0, 1)), dtype=np.float32)


def numpy_detections(batch: np.ndarray) -> np.ndarray:
    """The same detector in numpy, answering (N, K, 6) rows with zero padding (``boxes``)."""
    batch = np.asarray(batch, dtype=np.float64)
    n = len(batch)
    means = batch.reshape(n, 3, GRID, CELL, GRID, CELL).mean(axis=(3, 5)).reshape(n, 3, ANCHORS)
    mix = np.full((CLASSES, CLASSES), -0.5)
    np.fill_diagonal(mix, 1.0)
    scores = 1 / (1 + np.exp(-12 * (np.einsum("ij,nja->nia", mix, means) - 0.5)))
    best, label = scores.max(axis=1), scores.argmax(axis=1)
    answer = np.zeros((n, TOP_K, 6), np.float32)
    corners = _corner_boxes()
    for i in range(n):
        order = np.argsort(-best[i], kind="stable")[:TOP_K]
        order = order[best[i, order] >= KEEP_SCORE]
        rows = np.column_stack([corners[order], best[i, order], label[i, order]])
        answer[i, : len(rows)] = rows
    return answer


def write_bundled(folder: Path) -> None:
    """The detector and photo shipped in ``rex_stream/data/models`` for the documentation."""
    save_detector(folder / "squares-detector-yolov8.onnx", "yolov8")
    planted_photo(folder / "squares.png", [(1, 1, 0), (2, 5, 1), (5, 3, 2)], scale=(4, 3))


if __name__ == "__main__":  # python -m tests.detection.planted
    write_bundled(Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models")
