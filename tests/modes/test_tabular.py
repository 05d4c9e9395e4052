"""Tabular mode: planted features, per-iteration permutations, the real breast-cancer model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rex_stream import ExplainConfig, InputError, explain_sync
from rex_stream.api import explain_rows_sync
from rex_stream.causal.responsibility import Ledger
from rex_stream.causal.search import _in_input
from rex_stream.config import ScoreKind
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.geometry import Box
from rex_stream.modes import load_subject
from rex_stream.modes.tabular import (
    TabularSubject,
    feature_table,
    format_table,
    render,
    table_csv,
)

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
REAL_MODEL = MODELS / "tabular-breast-cancer.onnx"
REAL_TEST = MODELS / "tabular-breast-cancer-test.csv"
REAL_TRAIN = MODELS / "tabular-breast-cancer-train.csv"
FEATURES = 12
PLANTED = (3, 7)
FAST = {"iters": 8, "seed": 3, "min_box_size": 4, "chunk_size": 1, "search_limit": 200}


def save_planted_model(path: Path) -> Path:
    """logits = [1.5, x3 + x7]: class 1 only when features 3 and 7 (both ≈ 1) are seen."""
    weights = np.zeros((2, FEATURES), np.float32)
    weights[1, list(PLANTED)] = 1.0
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w", "b"], ["logits"], transB=1)],
        "planted_tabular",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([1.5, 0.0], np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planted model and a CSV whose rows are all ones (with a header and a label)."""
    folder = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    rows = np.ones((3, FEATURES)) + rng.uniform(-0.05, 0.05, (3, FEATURES))
    names = [f"col{i}" for i in range(FEATURES)]
    lines = [",".join([*names, "label"])]
    lines += [",".join([*(f"{v:.4f}" for v in row), "1"]) for row in rows]
    csv = folder / "rows.csv"
    csv.write_text("\n".join(lines) + "\n")
    return save_planted_model(folder / "planted.onnx"), csv


def test_planted_features_get_top_responsibility(planted: tuple[Path, Path]) -> None:
    model, csv = planted
    explanation = explain_sync(
        csv, str(model), mode="tabular", mode_options={"drop": "label", "row": "1"}, **FAST
    )
    assert explanation.target.classification == 1
    top = {row.index for row in feature_table(explanation)[:2]}
    assert top == set(PLANTED)
    assert explanation.mask is not None
    assert set(np.flatnonzero(explanation.mask)) == set(PLANTED)


def test_groups_mask_features_together(planted: tuple[Path, Path]) -> None:
    model, csv = planted
    explanation = explain_sync(
        csv,
        str(model),
        mode="tabular",
        mode_options={"drop": "label", "groups": "col3,col10;col7,col0"},
        **FAST,
    )
    responsibility = explanation.responsibility
    assert responsibility[3] == pytest.approx(responsibility[10])
    assert responsibility[7] == pytest.approx(responsibility[0])
    top = {row.index for row in feature_table(explanation)[:4]}
    assert top == {0, 3, 7, 10}


def test_each_iteration_partitions_a_different_feature_order() -> None:
    info = ModelInfo("m", "input", (FEATURES,))
    config = ExplainConfig().with_overrides(mode="tabular")
    subject = load_subject(np.arange(FEATURES, dtype=np.float32), info, config)
    assert isinstance(subject, TabularSubject)
    orders = {
        tuple(int(u[0]) for u in subject.for_iteration(5, 9, i).units)  # type: ignore[attr-defined]
        for i in range(6)
    }
    assert len(orders) == 6
    view = subject.for_iteration(5, 9, 0)
    box = Box((0,), (6,))
    regions = view.input_regions(box)
    covered = sorted(i for r in regions for i in range(r.start[0], r.stop[0]))
    assert covered == sorted(int(u[0]) for u in view.units[:6])  # type: ignore[attr-defined]
    ledger = Ledger.from_entries(_in_input({(box, 1): 0.5}, view), 1)
    assert np.all(ledger.amount == 0.5)
    # the ledger is in feature space: the mutant shows exactly the covered features
    out = np.zeros(FEATURES, np.float32)
    view.fill_boxes(out, [box])
    assert sorted(np.flatnonzero(out)) == [c for c in covered if c != 0]


def test_real_model_end_to_end(tmp_path: Path) -> None:
    explanation = explain_sync(
        REAL_TEST,
        str(REAL_MODEL),
        scores=ScoreKind.PROBABILITIES,
        mode="tabular",
        mode_options={"row": "3", "drop": "label", "baseline": str(REAL_TRAIN)},
        **FAST,
    )
    assert explanation.target.classification in (0, 1)
    assert 0.5 < explanation.target.confidence <= 1.0
    rows = feature_table(explanation)
    assert len(rows) == 30
    assert rows[0].responsibility == pytest.approx(1.0)
    assert [r.rank for r in rows] == list(range(1, 31))
    assert rows[0].responsibility >= rows[-1].responsibility
    text = format_table(rows, limit=5)
    assert "rank" in text and "more features" in text
    assert table_csv(rows).splitlines()[0].startswith("rank,feature,index")
    json.dumps([r.__dict__ for r in rows])
    picture = tmp_path / "bars.png"
    render(explanation, picture)
    assert picture.stat().st_size > 1000


def test_explain_rows_shares_one_backend(planted: tuple[Path, Path]) -> None:
    model, csv = planted
    results = explain_rows_sync(
        csv, str(model), rows=[0, 2], mode_options={"drop": "label"}, **FAST
    )
    assert [r.subject.source for r in results] == [f"{csv}#row=0", f"{csv}#row=2"]


def test_parquet_and_npy_inputs(planted: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = planted
    table = np.ones((2, FEATURES))
    np.save(tmp_path / "rows.npy", table)
    explanation = explain_sync(tmp_path / "rows.npy", str(model), mode="tabular", **FAST)
    assert explanation.target.classification == 1
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({f"c{i}": table[:, i] for i in range(FEATURES)}), tmp_path / "r.pq")
    explanation = explain_sync(tmp_path / "r.pq", str(model), **FAST)
    assert explanation.subject.mode == "tabular"


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("a,b\n1,2\n", {}, "the row has 2 features but the model takes 12"),
        ("a,b\n1,x\n", {}, "non-numeric"),
        (",".join(["1"] * 11) + ",\n", {}, "NaN"),
        (",".join(["1"] * FEATURES) + "\n", {"row": "4"}, "row 4 does not exist"),
        (",".join(["1"] * FEATURES) + "\n", {"drop": "nope"}, "no column 'nope'"),
        (",".join(["1"] * FEATURES) + "\n", {"baseline": "/nonexistent.csv"}, "no such file"),
    ],
)
def test_bad_inputs_give_one_line_errors(
    planted: tuple[Path, Path], tmp_path: Path, content: str, options: dict, message: str
) -> None:
    model, _ = planted
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError) as error:
        explain_sync(path, str(model), mode_options=options, **FAST)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unreadable_parquet_and_mismatched_mode(planted: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = planted
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"junk\.parquet"):
        explain_sync(junk, str(model), **FAST)
    spectral_model = MODELS / "spectral-markers.onnx"
    with pytest.raises(InputError, match="features but the model takes 1356"):
        explain_sync(REAL_TEST, str(spectral_model), mode_options={"drop": "label"}, **FAST)
