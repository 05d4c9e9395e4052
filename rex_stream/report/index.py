"""The top of the page: the summary (counts, queries, wall time, models) and the index, one
row per input with its thumbnail, name, class, confidence, area, queries and status."""

from __future__ import annotations

import json
from html import escape

from rex_stream.report.reading import Contents, Entry
from rex_stream.report.visuals import Visuals


def summary_html(contents: Contents, shown: int) -> str:
    """Counts per status, total queries and wall time, and every model's identity."""
    counts = contents.counts
    total = len(contents.entries)
    queries = sum(e.queries for e in contents.entries)
    wall = sum(e.wall_s for e in contents.entries)
    limited = f" (the first {shown} shown: --limit/--filter)" if shown < total else ""
    models = "".join(
        f"<li><b>{escape(str(m['name']))}</b> <code>{escape(json.dumps(m['identity']))}</code></li>"
        for m in contents.models
    )
    stores = ", ".join(f"<code>{escape(s)}</code>" for s in contents.stores)
    return (
        '<section id="summary"><h2>Summary</h2><table class="facts">'
        f'<tr><th>inputs</th><td>{total}{limited}: <span class="status explained">'
        f'{counts.get("explained", 0)} explained</span> <span class="status failed">'
        f'{counts.get("failed", 0)} failed</span> <span class="status running">'
        f"{counts.get('running', 0)} running</span></td></tr>"
        f"<tr><th>queries</th><td>{queries}</td></tr>"
        f"<tr><th>wall time</th><td>{wall:.1f} s (sum over inputs)</td></tr>"
        f"<tr><th>stores</th><td>{stores}</td></tr>"
        f"<tr><th>models</th><td><ul>{models or '<li>–</li>'}</ul></td></tr>"
        "</table></section>"
    )


def controls_html(entries: list[Entry], page_size: int) -> str:
    """Filters (class, status), the page size and the pager."""
    classes = sorted({(e.class_id, e.class_label) for e in entries if e.class_id is not None})
    options = "".join(f'<option value="{c}">{escape(label)}</option>' for c, label in classes)
    return (
        '<nav id="controls"><label>class <select id="f-class"><option value="">all</option>'
        f"{options}</select></label> {target_choosers(entries)}"
        '<label>status <select id="f-status"><option value="">all</option>'
        "<option>explained</option><option>failed</option><option>running</option></select>"
        "</label> "
        f'<label>per page <input id="page-size" type="number" min="10" value="{page_size}">'
        '</label> <button id="prev" type="button">◀</button> <span id="page-label"></span> '
        '<button id="next" type="button">▶</button> '
        '<label class="fade">overlays <input id="opacity-all" type="range" min="0" max="100" '
        'value="75"></label> <span id="shown"></span></nav>'
    )


def target_choosers(entries: list[Entry]) -> str:
    """For a detection store: choosers of an input (all its targets) and of a target (that
    detection of every input); nothing for a store without targets."""
    targeted = [e for e in entries if e.target]
    if not targeted:
        return ""
    inputs = sorted({e.input for e in targeted})
    targets = sorted({e.target for e in targeted}, key=lambda t: (len(t), t))
    return "".join(
        f'<label>{what} <select id="f-{what}"><option value="">all</option>'
        + "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
        + "</select></label> "
        for what, values in (("input", inputs), ("target", targets))
    )


HEADERS = (
    ("", ""),
    ("name", "name"),
    ("class", "class"),
    ("confidence", "confidence"),
    ("area", "area"),
    ("queries", "queries"),
    ("status", "status"),
)


def index_html(rows: list[str]) -> str:
    """The index table of ``rows`` (:func:`row_html`); columns sort when their header is
    clicked."""
    head = "".join(
        f'<th data-sort="{key}">{escape(title)}</th>' if key else "<th></th>"
        for key, title in HEADERS
    )
    return f'<table id="index"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def row_html(number: int, entry: Entry, visuals: Visuals) -> str:
    """One index row; its data attributes are what the page's script filters and sorts by."""
    if visuals.thumbnail:
        thumb = f'<img class="thumb" alt="" loading="lazy" src="{visuals.thumbnail}">'
    else:
        thumb = visuals.thumbnail_svg
    confidence = "" if entry.confidence is None else f"{entry.confidence:.3f}"
    area = "" if entry.area is None else f"{entry.area:.1%}"
    reason = f'<div class="reason">{escape(entry.reason)}</div>' if entry.reason else ""
    data = {
        "i": number,
        "name": entry.name,
        "class": "" if entry.class_id is None else entry.class_id,
        "confidence": "" if entry.confidence is None else entry.confidence,
        "area": "" if entry.area is None else entry.area,
        "queries": entry.queries,
        "status": entry.status,
        "input": entry.input,
        "target": entry.target,
    }
    attributes = " ".join(f'data-{k}="{escape(str(v))}"' for k, v in data.items())
    return (
        f'<tr class="row" {attributes}><td>{thumb}</td>'
        f'<td><a href="#card-{number}" class="open">{escape(entry.name)}</a></td>'
        f"<td>{escape(entry.class_label)}</td><td>{confidence}</td><td>{area}</td>"
        f"<td>{entry.queries}</td>"
        f'<td><span class="status {entry.status}">{entry.status}</span>{reason}</td></tr>'
    )
