"""The evaluation wing scores CEM and L2X stores like any map: a pertinent positive's region
values and an L2X selection, read from the stores the ``cem`` and ``l2x`` sub-commands write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import evaluate_sync
from rex_stream.cli.main import main
from rex_stream.errors import InputError

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
DIGITS = MODELS / "digits-mlp.onnx"
METRICS = "pixel-flipping:features_in_step=4,sparseness"


def test_cem_and_l2x_stores_are_scored_like_maps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digit = tmp_path / "digit.npy"
    np.save(digit, (np.load(MODELS / "digits-test.npy")[3, None] / 16.0).astype(np.float32))
    train = tmp_path / "train.npy"
    np.save(train, (np.load(MODELS / "digits-train.npy")[:200, None] / 16.0).astype(np.float32))
    cem_store, l2x_store = tmp_path / "cem.zarr", tmp_path / "l2x.zarr"
    model = ["--model", str(DIGITS)]
    assert main(["cem", str(digit), *model, "--steps", "60", "--store", str(cem_store)]) == 0
    explainer = tmp_path / "explainer.npz"
    trained = ["l2x-train", str(train), *model, "--k", "8", "--epochs", "5", "--max-gap", "1"]
    assert main([*trained, "--out", str(explainer)]) == 0
    assert main(["l2x", str(digit), "--explainer", str(explainer), "--store", str(l2x_store)]) == 0
    capsys.readouterr()

    pp = np.asarray(zarr.open_group(str(cem_store), mode="r")["digit/pertinent_positive_regions"])
    selection = np.asarray(zarr.open_group(str(l2x_store), mode="r")["digit/l2x_selection"])
    assert pp.shape == selection.shape == (8, 8) and pp.max() > 0 and selection.sum() > 0
    stores = {"cem": str(cem_store), "l2x": str(l2x_store)}
    from_stores = evaluate_sync(str(digit), str(DIGITS), stores, METRICS)
    arrays = {"cem": pp, "l2x": selection.astype(np.float64)}
    from_arrays = evaluate_sync(str(digit), str(DIGITS), arrays, METRICS)
    assert from_stores.summary()["inputs"] == from_arrays.summary()["inputs"]
    scores = from_stores.summary()["inputs"][0]["attributions"]
    selected = int(np.count_nonzero(selection))
    assert selected == 8
    assert scores["l2x"]["sparseness"]["score"] > 0.5
    assert len(scores["cem"]["pixel-flipping:features_in_step=4"]["curve"]) == 16

    code = main(
        [
            "evaluate",
            str(digit),
            *model,
            "--attribution",
            str(cem_store),
            "--attribution",
            f"selection={l2x_store}",
            "--metrics",
            METRICS,
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    columns = summary["inputs"][0]["attributions"]
    assert set(columns) == {"cem", "selection"}
    assert columns["cem"] == scores["cem"] and columns["selection"] == scores["l2x"]


def test_a_store_without_any_map_is_a_clear_error(tmp_path: Path) -> None:
    digit = tmp_path / "digit.npy"
    np.save(digit, (np.load(MODELS / "digits-test.npy")[0, None] / 16.0).astype(np.float32))
    store = tmp_path / "empty.zarr"
    zarr.open_group(str(store), mode="w").create_group("digit")
    with pytest.raises(InputError, match=r"pertinent_positive_regions, .*l2x_selection"):
        evaluate_sync(str(digit), str(DIGITS), {"x": str(store)}, "sparseness")
