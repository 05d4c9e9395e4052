"""What the Triton backend learns of every output (detection reads them all), and which
outputs shared memory can carry: fixed-size ones each get a region; a variable one (a
torchvision detector's ``boxes (D, 4)``) is one line naming it."""

from __future__ import annotations

import numpy as np
import pytest

from rex_stream.adapters.triton.model import describe_model
from rex_stream.adapters.triton.shm import output_sizes
from rex_stream.adapters.triton.spec import parse_spec
from rex_stream.errors import ConfigError

TARGET, _ = parse_spec("triton://127.0.0.1:8001/detector")
INPUT = {"name": "images", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}


def _output(name: str, dims: list[int], kind: str = "TYPE_FP32") -> dict[str, object]:
    return {"name": name, "data_type": kind, "dims": dims}


def test_every_fixed_output_gets_a_region_of_its_size() -> None:
    config = {
        "max_batch_size": 8,
        "input": [INPUT],
        "output": [
            _output("num_detections", [1], "TYPE_INT32"),
            _output("detection_boxes", [10, 4]),
            _output("detection_scores", [10]),
            _output("detection_classes", [10], "TYPE_INT32"),
        ],
    }
    model = describe_model(TARGET, {}, config, None, None, all_outputs=True)
    assert [(o.name, o.dims, o.dtype) for o in model.outputs] == [
        ("num_detections", (1,), np.dtype(np.int32)),
        ("detection_boxes", (10, 4), np.dtype(np.float32)),
        ("detection_scores", (10,), np.dtype(np.float32)),
        ("detection_classes", (10,), np.dtype(np.int32)),
    ]
    assert output_sizes(model, 8, "here") == [
        ("num_detections", 8 * 4),
        ("detection_boxes", 8 * 40 * 4),
        ("detection_scores", 8 * 10 * 4),
        ("detection_classes", 8 * 10 * 4),
    ]


def test_a_variable_output_cannot_travel_in_shared_memory() -> None:
    config = {
        "max_batch_size": 0,
        "input": [INPUT],
        "output": [
            _output("boxes", [-1, 4]),
            _output("labels", [-1], "TYPE_INT64"),
            _output("scores", [-1]),
        ],
    }
    model = describe_model(TARGET, {}, config, None, None, all_outputs=True)
    assert not model.batch_axis  # a picture (3, 64, 64) without a batch axis
    with pytest.raises(ConfigError, match=r"variable: boxes \(-1, 4\), labels \(-1,\)"):
        output_sizes(model, 1, "here")


def test_the_scores_of_a_classifier_keep_one_region() -> None:
    config = {"max_batch_size": 4, "input": [INPUT], "output": [_output("logits", [10])]}
    model = describe_model(TARGET, {}, config, None, None)
    assert output_sizes(model, 4, "here") == [("logits", 4 * 10 * 4)]
