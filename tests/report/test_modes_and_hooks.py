"""Inputs that are not photos: a spectrum drawn by its own mode's picture, and the generic
hooks for text (``units``) and detection (``target_box``) groups."""

from __future__ import annotations

from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import zarr

from rex_stream.cli.main import main
from rex_stream.report import ReportOptions, read_contents
from rex_stream.report.cards import card_html
from rex_stream.report.visuals import draw_entry

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"


def test_a_spectrum_is_drawn_as_the_spectral_mode_draws_it(tmp_path: Path) -> None:
    store = tmp_path / "spectra.zarr"
    spectrum = MODELS / "spectral-markers-A.npy"
    model = MODELS / "spectral-markers.onnx"
    with redirect_stdout(StringIO()):
        code = main([str(spectrum), "--model", str(model), "--iters", "2", "--store", str(store)])
    assert code == 0
    (entry,) = read_contents([store]).entries
    assert entry.mode == "spectral"
    visuals = draw_entry(entry, ReportOptions().picture_size, 64)
    (panel,) = visuals.panels[0]
    assert panel.title == "spectral explanation" and panel.uri.startswith("data:image/png")
    assert visuals.thumbnail_svg.startswith("<svg")  # a sparkline in the index
    moved = tmp_path / "elsewhere.zarr"
    (store).rename(moved)  # the source path is absolute: still found
    group = zarr.open_group(str(moved / entry.key), mode="r+")
    group.attrs["source"] = "gone.npy"  # an input no longer there: the map alone
    (entry,) = read_contents([moved]).entries
    (panel,) = draw_entry(entry, 224, 64).panels[0]
    assert panel.title == "responsibility" and panel.svg.startswith("<svg")


def test_text_units_and_target_boxes_are_drawn_when_a_group_has_them(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "hooks.zarr"), mode="w")
    text = root.create_group("review")
    text.attrs.update({"complete": True, "units": ["a", "truly", "great", "film"]})
    text.create_array("responsibility", data=np.array([0.0, 0.2, 1.0, 0.1], np.float32))
    text.create_array("explanation", data=np.array([0, 0, 1, 0], np.uint8))
    boxed = root.create_group("street")
    boxed.attrs.update({"complete": True, "target_box": [2, 4, 10, 12]})
    boxed.create_array("responsibility", data=np.eye(16, dtype=np.float32))
    boxed.create_array("explanation", data=np.eye(16, dtype=np.uint8))
    entries = {e.key: e for e in read_contents([tmp_path / "hooks.zarr"]).entries}
    review = card_html(0, entries["review"], draw_entry(entries["review"], 224, 64))
    assert '<span class="chosen"' in review and ">great</span>" in review
    assert review.count("<span") - review.count('<span class="status') == 4
    street = card_html(1, entries["street"], draw_entry(entries["street"], 224, 64))
    assert '<svg class="box"' in street and 'x="28.0" y="56.0"' in street
