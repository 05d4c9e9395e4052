"""Metric definitions on hand-made maps, statistics against scipy, and parameter parsing."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
import scipy.stats

from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metrics.registry import METRICS, choose
from rex_stream.evaluation.metrics.statistics import pearson, roc_auc, spearman, trapezoid
from rex_stream.evaluation.sources import fit_map


def _subject(shape: tuple[int, ...] = (3, 8, 8)) -> Subject:
    tensor = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return Subject("s", tensor, (1, 2), 0.0, "RGB")


def _score(
    name: str, attribution: np.ndarray, mask: np.ndarray | None = None, **params: str
) -> float:
    choice = choose(":".join([name, *(f"{k}={v}" for k, v in params.items())]))[0]
    case = Case(_subject(), attribution, 0, mask=mask)
    result = anyio.run(choice.spec.compute, case, choice.params, None)
    return result.score


def test_statistics_match_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = a[:10]
    ties = np.round(a, 1)
    assert pearson(a, b) == pytest.approx(scipy.stats.pearsonr(a, b)[0], abs=1e-12)
    assert spearman(ties, b) == pytest.approx(scipy.stats.spearmanr(ties, b)[0], abs=1e-12)
    assert np.isnan(pearson(np.ones(5), np.arange(5)))
    assert trapezoid(np.array([1.0, 3.0, 2.0])) == pytest.approx(np.trapezoid([1, 3, 2]))
    labels = rng.random(40) > 0.5
    scores = np.round(rng.random(40), 1)
    pairs = [(p, n) for p in scores[labels] for n in scores[~labels]]
    brute = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(labels, scores) == pytest.approx(brute)


def test_complexity_metrics_on_known_maps() -> None:
    one_hot = np.zeros((8, 8))
    one_hot[2, 3] = 5.0
    flat = np.ones((8, 8))
    assert _score("sparseness", one_hot) > 0.98
    assert _score("sparseness", flat) == pytest.approx(0.0, abs=1e-9)
    assert _score("complexity", flat) == pytest.approx(np.log(64), rel=1e-9)
    assert _score("complexity", one_hot) == pytest.approx(0.0, abs=1e-9)
    assert _score("effective-complexity", one_hot) == 1
    assert _score("effective-complexity", flat, eps="2") == 0


def test_localisation_metrics_on_known_maps() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    inside = np.where(mask, 1.0, 0.0)
    inside[0, 0] = 2.0
    assert _score("pointing-game", inside, mask) == 1
    assert _score("pointing-game", 1 - inside, mask) == 0
    assert _score("attribution-localisation", inside, mask) == pytest.approx(1.0, abs=1e-6)
    assert _score("relevance-mass-accuracy", inside + 1, mask) == pytest.approx(
        (17 + 16) / (17 + 16 + 48), rel=1e-9
    )
    assert _score("relevance-rank-accuracy", inside, mask) == 1
    assert _score("top-k-intersection", inside, mask, k="32") == 0.5
    assert _score("auc", inside, mask) == 1.0
    assert np.isnan(_score("auc", inside, np.zeros((8, 8), bool)))


def test_parsing_metrics_and_their_parameters() -> None:
    choices = choose("PixelFlipping:features_in_step=4, selectivity:patch_size=2:abs=true")
    assert [c.label for c in choices] == [
        "pixel-flipping:features_in_step=4",
        "selectivity:abs=true:patch_size=2",
    ]
    assert choices[1].params["abs"] is True
    with pytest.raises(ConfigError, match="unknown metric 'flipping'; valid metrics: "):
        choose("flipping")
    with pytest.raises(ConfigError, match="has no parameter 'k'"):
        choose("sparseness:k=3")
    with pytest.raises(ConfigError, match="must be an integer"):
        choose("selectivity:patch_size=big")
    with pytest.raises(ConfigError, match="listed twice"):
        choose("sparseness,sparseness")
    with pytest.raises(ConfigError, match="patch_size='0' must be > 0"):
        choose("selectivity:patch_size=0")
    assert choose("random-logit:seed=0")[0].params["seed"] == 0
    with pytest.raises(ConfigError, match="seed='-1' must be >= 0"):
        choose("random-logit:seed=-1")
    assert set(METRICS) >= {"pixel-flipping", "faithfulness-correlation", "auc"}


def test_maps_are_fitted_to_the_spatial_axes() -> None:
    subject = _subject()
    assert fit_map(np.ones((1, 8, 8)), subject, "a").shape == (8, 8)
    summed = fit_map(np.ones((3, 8, 8)), subject, "a")
    assert summed.shape == (8, 8) and summed[0, 0] == 3
    with pytest.raises(InputError, match=r"shape \(4, 4\) but the input's spatial shape"):
        fit_map(np.ones((4, 4)), subject, "a")
    bad = np.ones((8, 8))
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_map(bad, subject, "a")
