"""rex.toml: ReX's sections and keys map onto the typed configuration; mistakes are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rex_stream.config import Distribution, QueueStyle, ResponsibilityStyle
from rex_stream.errors import ConfigError
from rex_stream.rex_compat.config_file import load_config


def test_rex_sections_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(
        """
[rex]
mask_value = "mean"
seed = 7
batch_size = 32
gpu = false
[rex.onnx]
means = [0.485, 0.456, 0.406]
stds = [0.229, 0.224, 0.225]
norm = 255.0
[rex.visual]
colour = 100
[causal]
tree_depth = 5
search_limit = 500
iters = 7
min_box_size = 20
weighted = true
queue_style = "intersection"
queue_len = "all"
responsibility_style = "additive"
[causal.distribution]
distribution = "betabinom"
dist_args = [1.1, 2.0]
[explanation]
chunk_size = 25
minimum_confidence_threshold = 0.5
[explanation.multi]
spotlights = 5
[explanation.evaluation]
insertion_step = 50
normalise_curves = false
"""
    )
    config = load_config(path)
    assert config.image.mask_value == "mean" and config.image.means == (0.485, 0.456, 0.406)
    assert config.search.seed == 7 and config.search.iters == 7 and config.search.weighted
    assert config.search.queue_style is QueueStyle.INTERSECTION and config.search.queue_len is None
    assert config.search.responsibility_style is ResponsibilityStyle.ADDITIVE
    assert config.search.distribution is Distribution.BETABINOM
    assert config.search.distribution_args == (1.1, 2.0)
    assert config.scheduler.max_batch == 32 and config.visual.colour == 100
    assert config.extraction.chunk_size == 25 and config.evaluation.insertion_step == 50


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[causal]\nwhat = 1\n", "unknown key 'what'"),
        ("[nonsense]\nx = 1\n", "unknown section"),
        ("[causal]\nqueue_style = 'sideways'\n", "queue_style"),
        ("[causal]\nmin_box_size = -3\n", "min_box_size"),
        ("[causal.distribution]\ndistribution = 'betabinom'\n", "distribution_args"),
        ("[causal\n", "not valid TOML"),
        ("iters = 3\n", "inside a section"),
    ],
)
def test_mistakes_are_errors_naming_key_and_file(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert needle in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[causal]\nwhat = 1\n", "causal.what"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[causal]\nqueue_style = 'sideways'\n", "causal.queue_style"),
        ("[causal]\nmin_box_size = -3\n", "causal.min_box_size"),
        ("[causal\n", None),
        ("iters = 3\n", "iters"),
    ],
)
def test_mistakes_carry_the_key(tmp_path: Path, text: str, key: str | None) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key


def test_spatial_section(tmp_path: Path) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(
        "[explanation]\nstrategy = 'spatial'\n"
        "[explanation.spatial]\ninitial_radius = 12\nspatial_radius_eta = 0.5\n"
        "[rex.visual]\nheatmap_colours = 'Blues'\n"
    )
    config = load_config(path)
    assert config.extraction.strategy == "spatial"
    assert config.extraction.spatial_initial_radius == 12
    assert config.extraction.spatial_radius_eta == 0.5
    assert config.visual.heatmap_colours == "Blues"
