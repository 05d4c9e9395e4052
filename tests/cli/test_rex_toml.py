"""ReX 0.4.1's whole rex.toml: every key is accepted, means what it means in ReX or warns
once with what rex-stream does instead; ReX's string mask values; --context/--noise; the
baseline check; negative responsibility."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.causal.negative import negative_responsibility
from rex_stream.causal.responsibility import Ledger, build_map, normalise
from rex_stream.config import ResponsibilityStyle
from rex_stream.engine.geometry import Box
from rex_stream.rex_compat.config_file import INSTEAD, load_config
from tests.onnx_models import planted_image

#: Every key ReX 0.4.1's process_config_dict accepts, with a valid value.
REX_041_TOML = """
[rex]
mask_value = 0
seed = 7
gpu = true
batch_size = 32

[rex.onnx]
means = [0.485, 0.456, 0.406]
stds = [0.229, 0.224, 0.225]
binary_threshold = 0.5
norm = 255.0
intra_op_num_threads = 4
inter_op_num_threads = 2
ort_logger = 3

[rex.visual]
info = true
colour = 150
alpha = 0.3
raw = false
progress_bar = false
grid = false
mark_segments = false
heatmap_colours = "viridis"
multi_style = "separate"

[causal]
tree_depth = 8
search_limit = 500
iters = 12
min_box_size = 6
confidence_filter = 0.1
weighted = true
negative_responsibility = true
queue_style = "area"
queue_len = 2
concentrate = true
responsibility_style = "additive"
use_bounding_box = false

[causal.distribution]
distribution = "betabinom"
blend = 0.0
distribution_args = [1.1, 1.1]

[explanation]
chunk_size = 5
minimum_confidence_threshold = 0.1
multi_class = false

[explanation.spatial]
spatial_initial_radius = 20
spatial_radius_eta = 0.3
no_expansions = 3

[explanation.multi]
strategy = "spotlight"
spotlights = 6
spotlight_size = 24
spotlight_eta = 0.25
spotlight_step = 4
max_spotlight_budget = 30
spotlight_objective_function = "mean"
permitted_overlap = 0.2

[explanation.evaluation]
insertion_step = 50
normalise_curves = false
"""


def test_every_rex_041_key_is_accepted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(REX_041_TOML)
    with caplog.at_level(logging.WARNING, logger="rex_stream.rex_compat.config_file"):
        config = load_config(path)
    assert config.search.iters == 12 and config.search.negative_responsibility
    assert config.search.concentrate and config.search.tree_depth == 8
    assert config.search.responsibility_style is ResponsibilityStyle.ADDITIVE
    assert config.multi.spotlights == 6 and config.multi.permitted_overlap == 0.2
    assert config.multi.no_expansions == 3 and config.multi.spotlight_step == 4
    assert config.multi.spotlight_objective_function == "mean"
    assert config.visual.multi_style == "separate" and config.extraction.chunk_size == 5
    assert config.evaluation.insertion_step == 50
    warned = {r.getMessage().split("] ")[1].split(" is accepted")[0] for r in caplog.records}
    # every key rex-stream does not act on warned once, naming what happens instead
    expected = {key for (section, key) in INSTEAD if f"{key} =" in REX_041_TOML}
    assert warned == expected
    assert all(len(r.getMessage().splitlines()) == 1 for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "expected", "warns"),
    [("none", math.nan, False), ("random", "random", False), ("linear", "linear", False)],
)
def test_rex_string_mask_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str, expected: object, warns: bool
) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(f'[rex]\nmask_value = "{value}"\n')
    with caplog.at_level(logging.WARNING, logger="rex_stream.rex_compat.config_file"):
        mask_value = load_config(path).image.mask_value
    if isinstance(expected, float):
        assert isinstance(mask_value, float) and math.isnan(mask_value)
    else:
        assert mask_value == expected
    assert bool(caplog.records) is warns


def test_spectral_mask_value_is_reX_spectral_occlusion(tmp_path: Path) -> None:
    path = tmp_path / "rex.toml"
    path.write_text('[rex]\nmask_value = "spectral"\n')
    image = load_config(path).image
    assert image.mask_value == 0.0
    assert image.mode_options == {"interpolate": "true", "noise": "0.02"}


def _patch_backend(model: Path) -> PythonBackend:
    session = ort.InferenceSession(str(model))
    return PythonBackend(lambda b: session.run(None, {"input": b})[0], (1, 24, 24))


def test_baseline_classified_as_target_warns(patch_model: Path) -> None:
    """Masking with 1.0 (bright) makes every mutant show the patch: the check says so."""
    warned = explain_sync(
        planted_image(), _patch_backend(patch_model), iters=2, seed=1, mask_value=1.0
    )
    assert any("mask value alone" in w for w in warned.warnings)
    quiet = explain_sync(planted_image(), _patch_backend(patch_model), iters=2, seed=1)
    assert not any("mask value alone" in w for w in quiet.warnings)


def test_context_input_is_the_baseline(patch_model: Path, tmp_path: Path) -> None:
    """A bright context: masking reveals the patch model's patch, so the baseline check warns;
    a dark one does not."""
    from PIL import Image

    picture = tmp_path / "in.png"
    Image.fromarray((planted_image()[0] * 255).astype(np.uint8)).save(picture)
    bright = tmp_path / "bright.png"
    Image.fromarray(np.full((24, 24), 255, np.uint8)).save(bright)
    result = explain_sync(
        picture, _patch_backend(patch_model), iters=2, seed=1, context=str(bright)
    )
    assert any("mask value alone" in w for w in result.warnings)
    assert np.allclose(np.asarray(result.subject.baseline), 1.0)
    blurred = explain_sync(
        picture,
        _patch_backend(patch_model),
        iters=2,
        seed=1,
        context=str(picture),
        context_noise=2.0,
    )
    baseline = np.asarray(blurred.subject.baseline)
    assert baseline.shape == (1, 24, 24) and baseline.std() < blurred.subject.tensor.std()


def test_negative_responsibility_subtracts_the_other_classes() -> None:
    shape = (4, 4)
    left, right = Box((0, 0), (4, 2)), Box((0, 2), (4, 4))
    ledgers = [
        Ledger.from_entries({(left, 1): 1.0, (right, 1): 0.5, (right, 2): 2.0}, 2),
        Ledger.from_entries({(left, 1): 0.5, (left, 3): 1.0}, 2),
    ]
    style = ResponsibilityStyle.ADDITIVE
    target = normalise(build_map(ledgers, 1, shape, style), style)
    result = negative_responsibility(target, ledgers, 1, shape, style)
    expected = target - build_map(ledgers, 2, shape, style) - build_map(ledgers, 3, shape, style)
    assert np.allclose(result, expected)
    assert result[0, 0] == pytest.approx(0.5) and result[0, 3] == pytest.approx(-1.5)


def test_negative_responsibility_end_to_end(tiny_cnn: Path, tiny_image: Path) -> None:
    plain = explain_sync(tiny_image, str(tiny_cnn), iters=3, seed=2, min_box_size=4)
    negative = explain_sync(
        tiny_image, str(tiny_cnn), iters=3, seed=2, min_box_size=4, negative_responsibility=True
    )
    assert not np.array_equal(plain.responsibility, negative.responsibility)
    assert (negative.responsibility <= plain.responsibility + 1e-6).all()
