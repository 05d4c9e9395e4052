"""Does a photo hold two disjoint sufficient regions at all? (issue 26, ``--multi`` round 3)

For each photo, after a plain 20-iteration run (its map and shrunk global explanation E1),
every candidate region below is shown alone (the rest at the mask value) and the model's top
class compared with the target; then the largest set of pairwise-disjoint passing regions is
counted (:func:`rex_stream.causal.separation.separate` at overlap 0). Families:

- ``cuts``: two-way cuts of E1 and of the whole input (axis cuts at the responsibility-weighted
  median and at 35 % / 65 %, pieces dealt alternately by rank, checkerboards of 4–28 px);
- ``rest``: the input without E1 (and without E1 dilated by 6 px), its top-ranked 20 … all
  elements at 40 log-spaced counts — the "second search over the complement";
- ``balls-E1``: discs scaled to E1 (1, 1.5, 2, 2.5 × the radius of a disc of E1's area) at
  7 × 7 centres, E1 removed — spotlights sized to the first explanation;
- ``balls``: the same discs without removing E1, plus half-planes at 9 cuts × 4 sides;
- ``random``: 120 seeded random two-colourings of 16 / 28 / 56 px cells (both colours probed).

Every pass is a real model query; nothing here is reported as an explanation. Run::

    .venv/bin/python bench/multi_pairs.py --photos-dir /tmp/rex_quality/photos \\
        two_ladybirds dog_hide rocket ladybird_small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_set import photo_paths
from scipy.ndimage import binary_dilation

from rex_stream import BackendSettings, explain, open_backend
from rex_stream.causal.multi import ball
from rex_stream.causal.separation import separate
from rex_stream.causal.shrink import pieces_of
from rex_stream.config import SchedulerConfig
from rex_stream.engine.ranking import rank_elements, rank_positions
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.verdicts import judge
from rex_stream.rex_compat.config_file import load_config

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent / "rex_stream" / "data" / "efficientnet-lite0.onnx"


def halves(region: np.ndarray, resp: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two-way cuts of ``region`` (see the module's ``cuts``)."""
    yy, xx = np.indices(region.shape)
    pairs = []
    weights = np.clip(resp.astype(np.float64), 0, None) * region
    for axis, grid in ((0, yy), (1, xx)):
        profile = np.cumsum(weights.sum(axis=1 - axis))
        cut = int(np.searchsorted(profile, profile[-1] / 2, side="right"))
        pairs.append((region & (grid < cut), region & (grid >= cut)))
        for f in (0.35, 0.65):
            edge = f * region.shape[axis]
            pairs.append((region & (grid < edge), region & (grid >= edge)))
    labels = pieces_of(region, resp)
    order = labels.max() - labels
    pairs.append((region & (order % 2 == 0), region & (order % 2 == 1)))
    for cell in (4, 8, 16, 28):
        board = (yy // cell + xx // cell) % 2 == 0
        pairs.append((region & board, region & ~board))
    return pairs


def families(resp: np.ndarray, e1: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Every candidate region, by family."""
    shape = resp.shape
    out: dict[str, list[np.ndarray]] = {}
    whole = np.ones(shape, bool)
    out["cuts"] = [h for r in (e1, whole) for pair in halves(r, resp) for h in pair]
    rest_masks = []
    for excluded in (e1, binary_dilation(e1, iterations=6)):
        rest = ~excluded
        position = rank_positions(rank_elements(np.where(rest, resp.astype(np.float64), -np.inf)))
        total = int(rest.sum())
        for count in sorted({int(c) for c in np.geomspace(20, total, 40)}):
            rest_masks.append((position < count).reshape(shape))
    out["rest"] = rest_masks
    radius = np.sqrt(e1.sum() / np.pi)
    centres = [
        (int(y), int(x))
        for y in np.linspace(0, shape[0] - 1, 7)
        for x in np.linspace(0, shape[1] - 1, 7)
    ]
    discs = [ball(shape, c, f * radius) for f in (1.0, 1.5, 2.0, 2.5) for c in centres]
    out["balls-E1"] = [d & ~e1 for d in discs]
    yy, xx = np.indices(shape)
    planes = []
    for q in np.linspace(0.2, 0.8, 9):
        planes += [xx < q * shape[1], xx >= q * shape[1], yy < q * shape[0], yy >= q * shape[0]]
    out["balls"] = discs + planes
    rng = np.random.default_rng(7)
    colourings = []
    for cell in (16, 28, 56):
        for _ in range(40):
            colour = rng.integers(0, 2, (-(-shape[0] // cell), -(-shape[1] // cell))).astype(bool)
            a = np.kron(colour, np.ones((cell, cell), bool))[: shape[0], : shape[1]]
            colourings += [a, ~a]
    out["random"] = colourings
    return out


def showing(subject: Any, mask: np.ndarray) -> Any:
    """A fill that shows only ``mask``."""
    return lambda out: subject.fill_mask(out, mask)


async def one(options: argparse.Namespace, name: str, photo: Path) -> dict[str, Any]:
    """The candidate families' pass counts and largest disjoint passing sets on one photo."""
    base = load_config(HERE / "rex-imagenet.toml").with_overrides(analyse=False)
    config = base.with_overrides(iters=options.iters, seed=options.seed)
    backend = await open_backend(str(MODEL), BackendSettings(max_inflight=2))
    try:
        result = await explain(str(photo), backend, config)
        resp, target = result.responsibility, result.target
        e1 = result.sufficiency.mask
        row: dict[str, Any] = {
            "photo": name,
            "class": target.classification,
            "confidence": round(target.confidence, 3),
            "E1 area": round(float(e1.mean()), 3),
        }
        every: list[np.ndarray] = []
        async with Scheduler(backend, SchedulerConfig(max_batch=16)) as scheduler:
            for family, masks in families(resp, e1).items():
                fills = [showing(result.subject, m) for m in masks]
                verdicts = judge(
                    await scheduler.evaluate(fills), config.scoring, target.classification
                )
                passing = [m for m, c in zip(masks, verdicts.classes) if c == target.classification]
                row[family] = f"{len(passing)}/{len(masks)} pass"
                every += passing
        row["largest disjoint"] = len(separate([*every, e1], 0.0))
        return row
    finally:
        await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--photos-dir", default="/tmp/rex_quality/photos")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    paths = photo_paths(Path(options.photos_dir), tuple(options.photos))
    for name in options.photos:
        print(anyio.run(one, options, name, paths[name]), flush=True)


if __name__ == "__main__":
    main()
