"""Ties of a responsibility map ranked by their neighbourhood (issue 26)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rex_stream import explain_sync
from rex_stream.causal.tie_break import box_mean, break_ties
from rex_stream.config import ExtractionConfig


def test_box_mean_is_the_clipped_window_mean() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((7, 9))
    radius = 2
    expected = np.empty_like(values)
    for i in range(7):
        for j in range(9):
            window = values[
                max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1
            ]
            expected[i, j] = window.mean()
    np.testing.assert_allclose(box_mean(values, radius), expected)


def test_a_tied_box_is_revealed_from_the_side_that_touches_the_object() -> None:
    """A flat box next to a responsible object: its elements nearest the object come first
    (by index alone, ReX's rule, the far bottom-right corner would)."""
    responsibility = np.zeros((40, 40))
    responsibility[10:20, 10:20] = 1.0  # the object
    responsibility[0:40, 20:40] = 0.5  # one tied box to its right
    ranked = break_ties(responsibility, 4)
    order = np.argsort(-ranked.ravel(), kind="stable")
    first_of_box = np.unravel_index(order[100], responsibility.shape)  # after the object's 100
    assert 20 <= first_of_box[1] <= 22 and 10 <= first_of_box[0] < 20
    # the object still comes first, and nothing from the background above the box
    assert set(order[:100]) == set(np.flatnonzero(responsibility == 1.0))
    assert ranked[responsibility == 0.5].max() < ranked[responsibility == 1.0].min()


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(2, 12), st.integers(2, 12)),
        elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]),
    ),
    st.integers(0, 4),
)
def test_distinct_values_keep_their_order(values: np.ndarray, radius: int) -> None:
    """Property: every element above another stays above it, also in float32."""
    ranked = break_ties(values, radius)
    for out in (ranked, ranked.astype(np.float32)):
        above, below = np.nonzero(values.ravel()[:, None] > values.ravel()[None, :])
        assert np.all(out.ravel()[above] > out.ravel()[below])


def test_radius_zero_and_maps_without_ties_are_unchanged() -> None:
    values = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.testing.assert_array_equal(break_ties(values, 3), values)
    tied = np.ones((3, 4))
    np.testing.assert_array_equal(break_ties(tied, 0), tied)


def test_a_run_ranks_ties_by_neighbourhood_and_resumes_a_store_made_without(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """End to end (onnxruntime): with ``tie_break_radius`` the map is the ReX-order map with
    its ties broken, and a store searched without it resumes with it without a new query for
    its iterations (the setting is not part of what the store compares)."""
    settings = {"iters": 4, "seed": 3, "min_box_size": 4}
    store = tmp_path / "runs.zarr"
    assert ExtractionConfig().tie_break_radius == 0  # off by default: ReX's order
    plain = explain_sync(tiny_image, str(tiny_cnn), store=store, **settings)
    broken = explain_sync(
        tiny_image, str(tiny_cnn), store=store, resume=True, tie_break_radius=4, **settings
    )
    assert broken.stats.resumed_iterations == 4
    assert broken.stats.passing + broken.stats.failing == plain.stats.passing + plain.stats.failing
    a, b = plain.responsibility.ravel(), broken.responsibility.ravel()
    above, below = np.nonzero(a[:, None] > a[None, :])
    assert np.all(b[above] > b[below])  # the order between distinct values is kept
    assert np.unique(b).size > np.unique(a).size  # and ties are broken
    expected = break_ties(plain.responsibility, 4)
    np.testing.assert_allclose(broken.responsibility, expected, atol=1e-6)
