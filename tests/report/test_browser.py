"""The report in a real browser (headless Debian Chromium): a row and a card per input, the
filters and sorting work through the page's own script, no console error, no external
resource, and a screenshot that is not blank."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rex_stream.cli.main import main
from tests.report.browser import open_page, screenshot
from tests.report.conftest import Stores


@pytest.fixture(scope="module")
def page(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("report") / "report.html"
    paths = [str(p) for p in (stores.rex, stores.evaluation, stores.cem, stores.l2x)]
    code = main(["report", *paths, "--summary", str(stores.summary), "-o", str(output), "-q"])
    assert code == 0
    return output


def shown(dom: str) -> int:
    """The number of cards the page's script put on the page."""
    live = dom.split('<div id="cards">', 1)[1].split("<template", 1)[0]
    return live.count('<article class="card"')


def visible_statuses(dom: str) -> list[str]:
    """The status of every index row the script left visible."""
    rows = re.findall(r'<tr class="row"([^>]*)>', dom)
    return [re.search(r'data-status="(\w+)"', r).group(1) for r in rows if " hidden" not in r]  # type: ignore[union-attr]


def test_every_input_has_a_row_and_a_card(page: Path, stores: Stores) -> None:
    dom, console = open_page(page)
    inputs = stores.photos + 2
    assert 'data-ready="1"' in dom
    assert dom.count('<tr class="row"') == inputs
    assert shown(dom) == inputs
    assert "Uncaught" not in console and "CONSOLE" not in console
    assert dom.count('<svg class="chart"') >= 2  # evaluation curves
    assert "pertinent positive" in dom and "selected regions" in dom
    assert "not an image Pillow can read" in dom


def test_filters_and_pages_work_in_the_browser(page: Path, stores: Stores) -> None:
    failed, _ = open_page(page, "status=failed")
    assert visible_statuses(failed) == ["failed"] and shown(failed) == 1
    explained, _ = open_page(page, "status=explained&size=2&page=2")
    assert visible_statuses(explained) == ["explained", "explained"] and shown(explained) == 2
    assert 'data-matching="6"' in explained and 'data-page="2"' in explained
    classes = re.findall(r'data-class="(\d+)"', failed)
    chosen = classes[0]
    by_class, _ = open_page(page, f"class={chosen}")
    expected = classes.count(chosen)
    assert f'data-matching="{expected}"' in by_class and shown(by_class) == expected


def test_sorting_by_queries_orders_the_rows(page: Path) -> None:
    dom, _ = open_page(page, "sort=queries&dir=-1")
    rows = [r for r in re.findall(r'<tr class="row"([^>]*)>', dom) if " hidden" not in r]
    queries = [int(re.search(r'data-queries="(\d+)"', r).group(1)) for r in rows]  # type: ignore[union-attr]
    assert queries == sorted(queries, reverse=True) and queries[0] > queries[-1]


def test_the_page_references_nothing_outside_itself(page: Path) -> None:
    text = page.read_text()
    references = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert references, "the page has pictures"
    assert all(r.startswith(("data:", "#")) for r in references), {
        r[:40] for r in references if not r.startswith(("data:", "#"))
    }
    assert not re.search(r"url\((?!data:)", text)
    assert "<link" not in text and 'src="http' not in text


def test_a_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    picture = tmp_path / "shot.png"
    screenshot(page, picture)
    pixels = np.asarray(Image.open(picture).convert("RGB"), np.float64)
    assert pixels.std() > 20  # pictures, text and colour, not an empty white page
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 200


def test_detection_targets_are_chosen_by_input_and_by_target(tmp_path: Path) -> None:
    import zarr

    store = zarr.open_group(str(tmp_path / "boxes.zarr"), mode="w")
    for name in ("park.jpg", "street.jpg", "yard.jpg"):
        for index in range(2 if name != "yard.jpg" else 1):
            group = store.create_group(f"{name}__detection-{index}")
            group.attrs.update({"complete": True, "rex_stream": "test", "target_box": [1, 1, 5, 6]})
            group.create_array("responsibility", data=np.eye(8, dtype=np.float32) * (index + 1))
    output = tmp_path / "boxes.html"
    assert main(["report", str(tmp_path / "boxes.zarr"), "-o", str(output), "-q"]) == 0
    dom, console = open_page(output, "input=street.jpg")
    assert 'data-matching="2"' in dom and shown(dom) == 2
    assert "Uncaught" not in console and re.search(r'data-ready-ms="\d+"', dom)
    dom, _ = open_page(output, "target=detection%201")
    assert 'data-matching="2"' in dom and shown(dom) == 2
    dom, _ = open_page(output, "input=street.jpg&target=detection%201")
    assert 'data-matching="1"' in dom
    assert '<select id="f-input">' in dom and '<option value="yard.jpg">' in dom
