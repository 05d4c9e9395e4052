"""--analyse: ReX's figures (area, KL(U‖P)), bounded companions, AUCs, per explanation for
multi; in the summary, the JSON and the database row."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import entropy

from rex_stream import explain_sync
from rex_stream.causal.analysis import map_figures
from rex_stream.rex_compat.database import append_explanation


def test_map_figures_match_scipy_and_rex() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((8, 8)) + 0.01
    figures = map_figures(values)
    p = values.ravel() / values.sum()
    assert figures["kl_divergence"] == pytest.approx(entropy(np.ones(p.size), p, base=2))
    assert figures["entropy"] == pytest.approx(entropy(p, base=2))
    assert figures["kl_from_uniform"] == pytest.approx(6 - figures["entropy"])
    flat = map_figures(np.ones((4, 4)))
    assert flat["entropy"] == pytest.approx(4) and flat["kl_divergence"] == pytest.approx(0)
    values[0, 0] = 0
    assert math.isinf(map_figures(values)["kl_divergence"])  # as ReX's scipy call gives
    assert map_figures(values - 1)["entropy"] is None  # negative maps have no distribution


def test_analysis_in_summary_and_database(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    result = explain_sync(
        tiny_image,
        str(tiny_cnn),
        iters=3,
        seed=2,
        min_box_size=4,
        analyse=True,
        strategy="multi",
        spotlights=5,
        spatial_initial_radius=4,
        permitted_overlap=1.0,
    )
    analysis = result.summary()["analysis"]
    assert result.curves is not None and result.multi is not None
    assert analysis["insertion_auc"] == result.curves.insertion_auc
    assert analysis["area"] == pytest.approx(result.multi.kept[0].area)
    if len(result.multi.kept) > 1:
        listed = analysis["explanations"]
        assert [e["spotlight"] for e in listed] == [e.index for e in result.multi.kept]
        assert all(0 < e["area"] <= 1 for e in listed)
    database = tmp_path / "rex.db"
    append_explanation(database, result)
    rows = (
        sqlite3.connect(database)
        .execute("SELECT area, entropy, insertion_curve, deletion_curve, multi_no FROM rex")
        .fetchall()
    )
    for (area, kl, insertion, deletion, spotlight), kept in zip(rows, result.multi.kept):
        assert spotlight == kept.index and area == pytest.approx(kept.area)
        assert insertion == pytest.approx(result.curves.insertion_auc)
        assert deletion == pytest.approx(result.curves.deletion_auc)
        expected = result.analysis["kl_divergence"]
        assert kl == pytest.approx(expected) if math.isfinite(expected) else math.isinf(kl)
