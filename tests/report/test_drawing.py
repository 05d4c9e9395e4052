"""Drawing entries in worker processes gives exactly the page drawn in this process, in the
same order, and the pictures load lazily."""

from __future__ import annotations

from rex_stream.report import read_contents
from rex_stream.report.drawing import draw_html
from tests.report.conftest import Stores


def test_a_pool_of_processes_draws_the_same_rows_and_cards(stores: Stores) -> None:
    paths = [stores.rex, stores.evaluation, stores.cem, stores.l2x]
    entries = read_contents(paths).entries
    assert len(entries) >= 6
    seen: list[tuple[int, int]] = []
    here = draw_html(entries, 96, 32, workers=0)
    pooled = draw_html(
        entries, 96, 32, workers=2, chunk=2, progress=lambda d, t: seen.append((d, t))
    )
    assert pooled == here
    assert seen[-1] == (len(entries), len(entries)) and len(seen) == (len(entries) + 1) // 2
    rows = "".join(row for row, _ in here)
    assert rows.count('<img class="thumb" alt="" loading="lazy"') >= stores.photos
    assert 'loading="lazy"' in "".join(card for _, card in here)
