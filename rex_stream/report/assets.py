"""The page's own style sheet and script, inlined into every report (no external resource)."""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em}h3{font-size:1.05em;margin:.2em 0}h4{margin:.3em 0}
table{border-collapse:collapse}th,td{padding:2px 6px;text-align:left;vertical-align:top}
#index{margin:.5em 0;background:#fff}#index tr.row:nth-child(even){background:#f2f2f2}
#index th[data-sort]{cursor:pointer;text-decoration:underline dotted}
#index th.asc::after{content:" ▲"}#index th.desc::after{content:" ▼"}
.thumb{width:64px;height:auto;display:block}
.status{padding:0 4px;border-radius:3px;font-size:.85em;color:#fff}
.status.explained{background:#2a7d2a}.status.failed{background:#b02020}
.status.running{background:#b07000}.reason{font-size:.85em;color:#b02020}
nav#controls{position:sticky;top:0;background:#fafafa;padding:.4em 0;z-index:2;
border-bottom:1px solid #ddd}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em 1em}
.methods{display:flex;flex-wrap:wrap;gap:1em}.method{border-top:3px solid #888;padding:.3em}
.method.rex{border-color:#d4a000}.method.evaluation{border-color:#3060c0}
.method.cem{border-color:#a03090}.method.l2x{border-color:#30a070}
.panels{display:flex;flex-wrap:wrap;gap:.6em}.panel{margin:0}
.panel figcaption{font-size:.8em;color:#555;max-width:260px}
.stack{position:relative;display:inline-block;line-height:0}
.stack img{display:block;max-width:260px;height:auto;image-rendering:auto}
.stack .layer,.stack svg.box{position:absolute;left:0;top:0;width:100%;height:100%}
.facts th{font-weight:600;color:#444}.scores td,.scores th{border:1px solid #ddd}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em}
.text-units span{padding:1px 2px}.text-units .chosen{text-decoration:underline 2px}
pre{max-height:20em;overflow:auto;background:#f4f4f4;font-size:.8em}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var body = document.body;
  var rows = Array.prototype.slice.call(document.querySelectorAll("#index tr.row"));
  var tbody = document.querySelector("#index tbody");
  var templates = {};
  document.querySelectorAll("template.card-t").forEach(function (t) {
    templates[t.getAttribute("data-i")] = t;
  });
  var cards = document.getElementById("cards");
  var size = document.getElementById("page-size");
  var state = {cls: "", status: "", input: "", target: "", sort: "", dir: 1, page: 0,
    size: +size.value || 200};
  // the choosers of a detection store's inputs and targets (absent for other stores)
  var choosers = ["input", "target"].filter(function (k) {
    return document.getElementById("f-" + k);
  });
  function readHash() {
    var hash = location.hash.slice(1);
    if (!hash || hash.indexOf("card-") === 0) return;
    var p = new URLSearchParams(hash);
    if (p.has("class")) state.cls = p.get("class");
    if (p.has("status")) state.status = p.get("status");
    if (p.has("input")) state.input = p.get("input");
    if (p.has("target")) state.target = p.get("target");
    if (p.has("sort")) state.sort = p.get("sort");
    if (p.has("dir")) state.dir = p.get("dir") === "-1" ? -1 : 1;
    if (p.has("page")) state.page = Math.max(0, (parseInt(p.get("page"), 10) || 1) - 1);
    if (p.has("size")) state.size = Math.max(1, parseInt(p.get("size"), 10) || state.size);
  }
  function writeHash() {
    var p = new URLSearchParams();
    if (state.cls) p.set("class", state.cls);
    if (state.status) p.set("status", state.status);
    if (state.input) p.set("input", state.input);
    if (state.target) p.set("target", state.target);
    if (state.sort) { p.set("sort", state.sort); p.set("dir", String(state.dir)); }
    if (state.page) p.set("page", String(state.page + 1));
    history.replaceState(null, "", "#" + p.toString());
  }
  function value(row, key) {
    var v = row.getAttribute("data-" + key);
    if (key === "name" || key === "status") return v;
    return v === "" ? -Infinity : +v;
  }
  function opacity() {
    var all = document.getElementById("opacity-all").value / 100;
    cards.querySelectorAll(".card").forEach(function (card) {
      var own = card.querySelector("input.opacity");
      var level = own ? own.value / 100 : all;
      card.querySelectorAll("img.layer").forEach(function (l) { l.style.opacity = level; });
    });
  }
  function render() {
    var list = rows.filter(function (r) {
      return (!state.cls || r.getAttribute("data-class") === state.cls) &&
        (!state.status || r.getAttribute("data-status") === state.status) &&
        (!state.input || r.getAttribute("data-input") === state.input) &&
        (!state.target || r.getAttribute("data-target") === state.target);
    });
    if (state.sort) {
      list.sort(function (a, b) {
        var x = value(a, state.sort), y = value(b, state.sort);
        return (x < y ? -1 : x > y ? 1 : 0) * state.dir || (+a.dataset.i - +b.dataset.i);
      });
    }
    var pages = Math.max(1, Math.ceil(list.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var page = list.slice(state.page * state.size, (state.page + 1) * state.size);
    rows.forEach(function (r) { r.hidden = true; });
    page.forEach(function (r) { r.hidden = false; tbody.appendChild(r); });
    cards.replaceChildren.apply(cards, page.map(function (r) {
      return templates[r.dataset.i].content.cloneNode(true);
    }));
    document.querySelectorAll("#index th[data-sort]").forEach(function (th) {
      var key = th.getAttribute("data-sort");
      th.className = key === state.sort ? (state.dir > 0 ? "asc" : "desc") : "";
    });
    document.getElementById("f-class").value = state.cls;
    document.getElementById("f-status").value = state.status;
    choosers.forEach(function (k) { document.getElementById("f-" + k).value = state[k]; });
    document.getElementById("page-label").textContent = "page " + (state.page + 1) + " of " + pages;
    document.getElementById("shown").textContent = page.length + " shown of " + list.length +
      " matching (" + rows.length + " in all)";
    body.setAttribute("data-matching", String(list.length));
    body.setAttribute("data-shown", String(page.length));
    body.setAttribute("data-page", String(state.page + 1));
    opacity();
  }
  function change(update) { update(); writeHash(); render(); }
  document.getElementById("f-class").addEventListener("change", function (e) {
    change(function () { state.cls = e.target.value; state.page = 0; });
  });
  choosers.forEach(function (k) {
    document.getElementById("f-" + k).addEventListener("change", function (e) {
      change(function () { state[k] = e.target.value; state.page = 0; });
    });
  });
  document.getElementById("f-status").addEventListener("change", function (e) {
    change(function () { state.status = e.target.value; state.page = 0; });
  });
  size.addEventListener("change", function () {
    change(function () { state.size = Math.max(1, +size.value || 200); state.page = 0; });
  });
  document.getElementById("prev").addEventListener("click", function () {
    change(function () { state.page = Math.max(0, state.page - 1); });
  });
  document.getElementById("next").addEventListener("click", function () {
    change(function () { state.page += 1; });
  });
  document.querySelectorAll("#index th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      change(function () {
        state.dir = state.sort === key ? -state.dir : 1;
        state.sort = key;
      });
    });
  });
  document.getElementById("opacity-all").addEventListener("input", function () {
    cards.querySelectorAll("input.opacity").forEach(function (o) {
      o.value = document.getElementById("opacity-all").value;
    });
    opacity();
  });
  cards.addEventListener("input", function (e) {
    if (e.target.classList.contains("opacity")) opacity();
  });
  tbody.addEventListener("click", function (e) {
    var link = e.target.closest("a.open");
    if (!link) return;
    e.preventDefault();
    var card = document.getElementById(link.getAttribute("href").slice(1));
    if (card) card.scrollIntoView();
  });
  window.addEventListener("hashchange", function () { readHash(); render(); });
  readHash();
  render();
  body.setAttribute("data-ready", "1");
  // milliseconds from the start of navigation to a page drawn by this script; #timing=1
  // also logs them (bench/bench_report.py reads Chromium's log)
  var ready = String(Math.round(performance.now()));
  body.setAttribute("data-ready-ms", ready);
  if (/(^#|&)timing=1(&|$)/.test(location.hash)) {
    console.info("report ready after " + ready + " ms");
  }
})();
"""
