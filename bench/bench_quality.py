"""Explanation quality per query (issue 26): ReX 0.4.1 and rex-stream, one photo set, one evaluator.

For every photo of ``bench/quality_set.py`` (ReX's sample photos, scikit-image's bundled
photos, synthetic scenes; a fixed tuning / held-out split):

1. ReX 0.4.1 runs once in its own venv (``bench/rex_runner.py``, 20 iterations, seed 42,
   cached in ``--rex-dir``): its map, explanation area and model queries;
2. rex-stream runs through its ONNX adapter for every ``--variant`` (settings over its
   defaults) and every ``--iters``: map, explanation area, model queries (search + extraction);
3. every map is scored by the SAME evaluator: rex-stream's insertion/deletion curves through
   the same local model (baseline = the mask value, ``--step`` elements a step, curves ÷ the
   target's confidence), so the AUCs are comparable across tools.

Printed: per photo and the means (tuning and held-out apart) of insertion AUC, deletion AUC,
explanation area and queries, with the differences to ReX. Quality numbers do not depend on the
machine's load; wall times are not reported. Run with rex-stream's interpreter::

    .venv/bin/python bench/bench_quality.py --rex-python .venv-rex/bin/python --iters 20 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_set import HELD_OUT, TUNING, photo_paths

from rex_stream import BackendSettings, explain, open_backend
from rex_stream.causal.insertion_deletion import insertion_deletion
from rex_stream.config import EvaluationConfig, ExplainConfig, SchedulerConfig
from rex_stream.engine.backend import Backend
from rex_stream.engine.scheduler import Scheduler
from rex_stream.rex_compat.config_file import load_config

HERE = Path(__file__).resolve().parent
NAN = float("nan")
MODEL = HERE.parent / "rex_stream" / "data" / "efficientnet-lite0.onnx"


def run_rex(options: argparse.Namespace, name: str, photo: Path) -> dict[str, Any]:
    """ReX 0.4.1's record for ``photo`` (run once, then read from ``--rex-dir``)."""
    folder = Path(options.rex_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out_map, out_json = folder / f"{name}.npy", folder / f"{name}.json"
    if not out_json.exists():
        command = [
            *(options.rex_python, str(HERE / "rex_runner.py"), str(photo)),
            *("--model", str(options.model), "--config", str(options.config)),
            *("--iters", str(options.rex_iters), "--seed", str(options.seed)),
            *("--batch-size", "64", "--out-map", str(out_map), "--out-json", str(out_json)),
        ]
        env = {**os.environ, "TQDM_DISABLE": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ReX failed on {name}:\n{done.stderr[-3000:]}")
    record = json.loads(out_json.read_text())
    record["map"] = np.load(out_map)
    return record


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``name=key:value;key:value`` → (name, overrides); values are read as JSON if they can be."""
    name, _, spec = text.partition("=")
    overrides: dict[str, Any] = {}
    for item in filter(None, spec.split(";")):
        key, _, value = item.partition(":")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


async def score(backend: Backend, result: Any, responsibility: np.ndarray, step: int) -> Any:
    """The one evaluator: insertion/deletion curves of ``responsibility`` on the explained input."""
    async with Scheduler(backend, SchedulerConfig(max_batch=16)) as scheduler:
        return await insertion_deletion(
            result.subject,
            responsibility,
            result.target,
            scheduler,
            EvaluationConfig(analyse=True, insertion_step=step),
            result.config.scoring,
        )


async def one_photo(
    options: argparse.Namespace, base: ExplainConfig, name: str, photo: Path
) -> list[dict[str, Any]]:
    """Every variant × iteration count on one photo, and ReX's map, scored alike.

    Each search variant has its own store: the iteration counts run in increasing order, each
    resuming the last (the first iterations of a longer run are those of the shorter one: each
    iteration draws from its own generators), and every extraction variant re-extracts the
    same stored iterations (its settings are not recorded, so the store resumes)."""
    rex = None if options.no_rex else await anyio.to_thread.run_sync(run_rex, options, name, photo)
    backend = await open_backend(str(options.model), BackendSettings(max_inflight=2))
    rows: list[dict[str, Any]] = []
    stores = Path(options.store_dir) / name
    stores.mkdir(parents=True, exist_ok=True)
    scored: dict[str, Any] = {}
    try:
        rex_curves = None
        for variant in options.variant:
            label, overrides = parse_variant(variant)
            store = stores / f"{label or 'default'}.zarr"
            for iters in sorted(options.iters):
                for extract_variant in options.extract_variant:
                    sub, more = parse_variant(extract_variant)
                    sub, _, only = sub.partition("@")  # NAME@20: at 20 iterations only
                    if only and int(only) != iters:
                        continue
                    config = base.with_overrides(
                        iters=iters, seed=options.seed, **overrides, **more
                    )
                    result = await explain(
                        str(photo), backend, config, store=store, resume=store.exists()
                    )
                    if rex_curves is None and rex is not None:
                        rex_curves = await score(backend, result, rex["map"], options.step)
                    # extraction variants share a map: its curves are scored once
                    key = hashlib.sha256(result.responsibility.tobytes()).hexdigest()
                    if key not in scored:
                        scored[key] = await score(
                            backend, result, result.responsibility, options.step
                        )
                    curves = scored[key]
                    stats = result.stats
                    extraction = result.sufficiency.queries if result.sufficiency else 0
                    if result.multi is not None:
                        extraction = result.multi.queries
                    row = {
                        "photo": name,
                        "split": "held-out" if name in HELD_OUT else "tuning",
                        "variant": "+".join(filter(None, (label, sub))) or "default",
                        "iters": iters,
                        "target": result.target.classification,
                        "rex_target": rex["target"] if rex else None,
                        "ins": curves.insertion_auc,
                        "del": curves.deletion_auc,
                        "area": result.sufficiency.area if result.sufficiency else NAN,
                        # every iteration's mutants (resumed ones too) + extraction + checks
                        "queries": stats.passing + stats.failing + extraction + stats.check_queries,
                        "rex_ins": rex_curves.insertion_auc if rex_curves else NAN,
                        "rex_del": rex_curves.deletion_auc if rex_curves else NAN,
                        "rex_area": rex["sufficiency_area"] if rex else NAN,
                        "rex_queries": rex["queries"] if rex else 0,
                    }
                    if result.multi is not None:
                        row["multi_kept"] = len(result.multi.kept)
                        row["multi_masks"] = [e.mask for e in result.multi.kept]
                    rows.append(row)
                    print(
                        f"  {name:<17} {row['variant']:<14} {iters:>3} it  ins {row['ins']:.3f} "
                        f"(ReX {row['rex_ins']:.3f})  del {row['del']:.3f} "
                        f"({row['rex_del']:.3f})  area {row['area']:.3f} "
                        f"({row['rex_area']:.3f})  q {row['queries']} ({row['rex_queries']})",
                        flush=True,
                    )
    finally:
        await backend.aclose()
    return rows


async def score_rex_only(
    options: argparse.Namespace, base: ExplainConfig, name: str, photo: Path
) -> dict[str, Any]:
    """ReX's record and its map scored by the evaluator alone (one throwaway iteration gives
    the subject and target), to merge with rex-stream rows run separately (``--merge``)."""
    rex = await anyio.to_thread.run_sync(run_rex, options, name, photo)
    backend = await open_backend(str(options.model), BackendSettings(max_inflight=2))
    try:
        config = base.with_overrides(iters=1, seed=options.seed, extract=False)
        result = await explain(str(photo), backend, config)
        curves = await score(backend, result, rex["map"], options.step)
    finally:
        await backend.aclose()
    return {
        "photo": name,
        "rex_target": rex["target"],
        "rex_ins": curves.insertion_auc,
        "rex_del": curves.deletion_auc,
        "rex_area": rex["sufficiency_area"],
        "rex_queries": rex["queries"],
    }


def merge(files: list[str], rex_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rex-stream rows from earlier ``--no-rex`` runs with ReX's scored rows, by photo."""
    by_photo = {r["photo"]: r for r in rex_rows}
    rows = [r for f in files for r in json.loads(Path(f).read_text())]
    return [{**r, **by_photo[r["photo"]]} for r in rows if r["photo"] in by_photo]


def summarise(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per photo, then the means per split, variant and iteration count."""
    lines = [
        "| photo | split | variant | iters | ins ReX | ins rs | del ReX | del rs | "
        "area ReX | area rs | queries ReX | queries rs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['photo']} | {r['split']} | {r['variant']} | {r['iters']} | "
            f"{r['rex_ins']:.3f} | {r['ins']:.3f} | {r['rex_del']:.3f} | {r['del']:.3f} | "
            f"{r['rex_area']:.3f} | {r['area']:.3f} | {r['rex_queries']} | {r['queries']} |"
        )
    lines += [
        "",
        "| split | variant | iters | n | ins ReX | ins rs | Δins | del ReX | del rs | "
        "area ReX | area rs | queries ReX | queries rs | rs ÷ ReX queries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["split"], r["variant"], r["iters"]) for r in rows}, key=str)
    for split, variant, iters in keys:
        group = [
            r for r in rows if (r["split"], r["variant"], r["iters"]) == (split, variant, iters)
        ]

        def mean(field: str, group: list[dict[str, Any]] = group) -> float:
            return float(np.mean([r[field] for r in group]))

        lines.append(
            f"| {split} | {variant} | {iters} | {len(group)} | {mean('rex_ins'):.3f} | "
            f"{mean('ins'):.3f} | {mean('ins') - mean('rex_ins'):+.3f} | "
            f"{mean('rex_del'):.3f} | {mean('del'):.3f} | {mean('rex_area'):.3f} | "
            f"{mean('area'):.3f} | {mean('rex_queries'):.0f} | {mean('queries'):.0f} | "
            f"{mean('queries') / max(mean('rex_queries'), 1):.2f} |"
        )
    return lines


def main() -> None:
    """Command line: see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rex-python", default=str(HERE.parent / ".venv-rex" / "bin" / "python"))
    parser.add_argument("--no-rex", action="store_true", help="rex-stream only (tuning runs)")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--config", type=Path, default=HERE / "rex-imagenet.toml")
    parser.add_argument("--split", choices=("tuning", "held-out", "all"), default="all")
    parser.add_argument("--photos", nargs="*", help="names from quality_set.py (default: split)")
    parser.add_argument("--iters", type=int, nargs="+", default=[20, 10])
    parser.add_argument("--rex-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--step", type=int, default=448, help="elements per curve step")
    parser.add_argument(
        "--variant",
        action="append",
        help="NAME=key:value;key:value over rex-stream's defaults (repeatable; default: defaults)",
    )
    parser.add_argument(
        "--extract-variant",
        action="append",
        help="NAME=key:value;… extraction settings, each re-extracting the stored iterations",
    )
    parser.add_argument(
        "--merge", nargs="*", help="score ReX's maps only and merge them with these JSON files"
    )
    parser.add_argument(
        "--store-dir",
        default="/tmp/rex_quality/stores",
        help="one store per photo and variant, kept: a later run re-extracts without searching",
    )
    parser.add_argument("--photo-dir", default="/tmp/rex_quality/photos")
    parser.add_argument("--rex-dir", default="/tmp/rex_quality/rex")
    parser.add_argument("--out", default="/tmp/rex_quality/summary.json")
    options = parser.parse_args()
    options.variant = options.variant or ["="]
    options.extract_variant = options.extract_variant or ["="]
    if options.photos:
        names = tuple(options.photos)
    else:
        names = {"tuning": TUNING, "held-out": HELD_OUT, "all": TUNING + HELD_OUT}[options.split]
    paths = photo_paths(Path(options.photo_dir), names)
    base = load_config(options.config).with_overrides(analyse=False)
    rows: list[dict[str, Any]] = []
    if options.merge:
        rex_rows = [anyio.run(score_rex_only, options, base, n, paths[n]) for n in names]
        rows = merge(options.merge, rex_rows)
        Path(options.out).write_text(json.dumps(rows, indent=1, default=float))
        print("\n".join(summarise(rows)))
        return
    for name in names:
        rows += anyio.run(one_photo, options, base, name, paths[name])
        plain = [{k: v for k, v in r.items() if k != "multi_masks"} for r in rows]
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(json.dumps(plain, indent=1, default=float))
    print("\n".join(summarise(rows)))


if __name__ == "__main__":
    main()
