"""The card of one input: every method's pictures side by side, its facts, scores, curves and
the settings and model it was made with."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from rex_stream.report.charts import LINE_COLOURS, curves_svg
from rex_stream.report.reading import Entry, Section
from rex_stream.report.visuals import Panel, Visuals

KIND_TITLES = {
    "rex": "ReX explanation",
    "evaluation": "evaluation",
    "cem": "CEM",
    "l2x": "L2X selection",
    "other": "other results",
}


def card_html(number: int, entry: Entry, visuals: Visuals) -> str:
    """One ``<article class="card">`` for ``entry`` (row ``number`` of the index)."""
    sections = "".join(
        section_html(section, visuals.panels.get(i, [])) for i, section in enumerate(entry.sections)
    )
    reason = f'<p class="reason">{escape(entry.reason)}</p>' if entry.reason else ""
    control = (
        '<label class="fade">overlay <input type="range" class="opacity" min="0" max="100" '
        'value="75"></label>'
        if any(p.layer for panels in visuals.panels.values() for p in panels)
        else ""
    )
    return (
        f'<article class="card" id="card-{number}" data-i="{number}">'
        f'<h3>{escape(entry.name)} <span class="status {entry.status}">{entry.status}</span></h3>'
        f'<p class="facts">{escape(facts_line(entry))}</p>{reason}{control}'
        f'<div class="methods">{sections}</div></article>'
    )


def facts_line(entry: Entry) -> str:
    """Class, confidence, area and queries in one line."""
    parts = []
    if entry.class_label:
        confidence = f" at {entry.confidence:.3f}" if entry.confidence is not None else ""
        parts.append(f"{entry.class_label}{confidence}")
    if entry.area is not None:
        parts.append(f"explanation {entry.area:.1%} of the input")
    if entry.queries:
        parts.append(f"{entry.queries} queries")
    if entry.mode:
        parts.append(f"mode {entry.mode}")
    return " · ".join(parts)


def section_html(section: Section, panels: list[Panel]) -> str:
    """One method's part of a card."""
    title = KIND_TITLES.get(section.kind, section.kind)
    pictures = "".join(panel_html(p) for p in panels)
    body = {
        "rex": rex_facts,
        "evaluation": evaluation_html,
        "cem": cem_facts,
        "l2x": l2x_facts,
    }.get(section.kind, lambda s: "")(section)
    settings = json.dumps(
        {k: v for k, v in section.attributes.items() if k in ("settings", "model_identity")},
        indent=1,
        default=str,
    )
    return (
        f'<section class="method {section.kind}"><h4>{escape(title)} '
        f"<small>{escape(section.store)}</small></h4>"
        f'<div class="panels">{pictures}</div>{body}'
        f"<details><summary>settings and model</summary><pre>{escape(settings)}</pre></details>"
        "</section>"
    )


def panel_html(panel: Panel) -> str:
    """A titled picture; an overlay layer stacked over it; inline SVG or text instead."""
    if panel.html:
        inner = panel.html
    elif panel.uri:
        layer = (
            f'<img class="layer" alt="" loading="lazy" src="{panel.layer}">' if panel.layer else ""
        )
        picture = f'<img alt="{escape(panel.title)}" loading="lazy" src="{panel.uri}">'
        inner = f'<div class="stack">{picture}{layer}{panel.svg}</div>'
    else:
        inner = panel.svg
    return f'<figure class="panel">{inner}<figcaption>{escape(panel.title)}</figcaption></figure>'


def rex_facts(section: Section) -> str:
    """The explanation's facts: area and confidence, each ``--multi`` explanation, the
    complete explanation, the run's statistics and warnings."""
    attributes = section.attributes
    rows: list[tuple[str, str]] = []
    explanation = attributes.get("explanation")
    if isinstance(explanation, dict):
        rows.append(("explanation", _pairs(explanation)))
    for number, item in enumerate(attributes.get("explanations") or []):
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        swatch = f'<i class="swatch" style="background:{colour}"></i>'
        rows.append((f"{swatch}explanation {number + 1}", _pairs(item)))
    for key in ("multi", "complete", "analysis", "stats"):
        value = attributes.get(key)
        if isinstance(value, dict):
            rows.append((key, _pairs(value)))
    for name in ("seed", "model"):
        if name in attributes:
            rows.append((name, escape(str(attributes[name]))))
    for warning in attributes.get("warnings") or []:
        rows.append(("warning", escape(str(warning))))
    return facts_table(rows)


def cem_facts(section: Section) -> str:
    """CEM's facts: method, class found, margin, penalty, queries."""
    cem = section.attributes.get("cem") or {}
    rows = [
        (k.replace("_", " "), _pairs(v) if isinstance(v, dict) else escape(str(v)))
        for k, v in cem.items()
        if k != "store"
    ]
    return facts_table(rows)


def l2x_facts(section: Section) -> str:
    """L2X's facts: k, the selected regions, the post-hoc check."""
    l2x = section.attributes.get("l2x") or {}
    rows = [(k.replace("_", " "), escape(str(v))) for k, v in l2x.items() if k != "input"]
    return facts_table(rows)


def evaluation_html(section: Section) -> str:
    """Scores (methods × metrics) and, for metrics with curves, the methods' curves overlaid."""
    methods = list(dict.fromkeys(c.attribution for c in section.curves))
    metrics = list(dict.fromkeys(c.metric for c in section.curves))
    if not methods:
        scores = section.attributes.get("evaluation") or {}
        methods = list(scores)
        metrics = list(dict.fromkeys(m for v in scores.values() for m in v))
        table = {(a, m): scores[a].get(m) for a in methods for m in scores[a]}
    else:
        table = {(c.attribution, c.metric): c.score for c in section.curves}
    head = "".join(f"<th>{escape(m)}</th>" for m in methods)
    body = "".join(
        f"<tr><th>{escape(metric)}</th>"
        + "".join(f"<td>{_number(table.get((method, metric)))}</td>" for method in methods)
        + "</tr>"
        for metric in metrics
    )
    charts = []
    for metric in metrics:
        lines = [
            (c.attribution, c.curve)
            for c in section.curves
            if c.metric == metric and c.curve is not None and c.curve.size >= 2
        ]
        if lines:
            charts.append(curves_svg(metric, lines))
    return (
        f'<table class="scores"><tr><th>metric</th>{head}</tr>{body}</table>'
        f'<div class="curves">{"".join(charts)}</div>'
    )


def facts_table(rows: list[tuple[str, str]]) -> str:
    """Rows of (name, already escaped HTML) as a small table."""
    if not rows:
        return ""
    inner = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table class="facts">{inner}</table>'


def _pairs(values: dict[str, Any]) -> str:
    return escape(", ".join(f"{k.replace('_', ' ')} {_plain_number(v)}" for k, v in values.items()))


def _plain_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_plain_number(v)}" for k, v in value.items()) + "}"
    return str(value)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "–"
