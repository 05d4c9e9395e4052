"""Tabular mode: one row of a CSV/Parquet/.npy table, explained feature by feature.

The order of a table's columns means nothing, so contiguous intervals of it would be arbitrary
feature sets. Each iteration therefore partitions a *random permutation* of the features (or of
user-defined feature groups): the search splits intervals of that permutation, which are random
feature subsets, and :meth:`TabularView.input_regions` maps every box back onto the features it
covers, so ledgers, stores and maps are in feature space. The permutation is drawn from
``(seed, input, iteration)``, so runs are reproducible and resumable.

Mode options (``mode_options``): ``row=N`` (default 0), ``baseline=PATH`` (a reference table:
masked features take its column ``baseline_stat``, ``mean`` or ``median``), ``drop=COL,COL``
(columns to ignore, e.g. the label), ``groups=a,b;c,d`` (features masked together, by name or
index), ``permute=false`` (keep the file's order: ReX's contiguous intervals).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.geometry import Box
from rex_stream.engine.mask_values import constant_mask_value
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.modes._signal1d import check_finite, index_runs, option_bool, option_int
from rex_stream.modes._table_io import Table, read_table

if TYPE_CHECKING:
    from rex_stream.result import Explanation

SUFFIXES = {".csv", ".tsv", ".parquet", ".pq"}
MODES = ("tabular",)

#: Salt for the permutation generator, so it never coincides with a box's split generator.
_PERMUTATION_SALT = 0x7AB1E


@dataclass
class TabularSubject(Subject):
    """One row in model space; ``units`` lists the features each partitioned unit masks."""

    feature_names: tuple[str, ...] = ()
    units: tuple[np.ndarray, ...] = ()
    unit_names: tuple[str, ...] = ()
    permute: bool = True
    row: int = 0

    def for_iteration(self, seed: int, key: int, iteration: int) -> Subject:
        """A view whose boxes are intervals over this iteration's random order of units."""
        count = len(self.units)
        if self.permute:
            rng = np.random.default_rng([seed, key, iteration, _PERMUTATION_SALT])
            order = rng.permutation(count)
        else:
            order = np.arange(count)
        return TabularView(
            name=self.name,
            tensor=self.tensor,
            spatial_axes=self.spatial_axes,
            baseline=self.baseline,
            mode=self.mode,
            source=self.source,
            units=tuple(self.units[int(u)] for u in order),
        )


@dataclass
class TabularView(Subject):
    """A tabular subject as one iteration sees it: element ``i`` of a box is ``units[i]``."""

    units: tuple[np.ndarray, ...] = ()

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """One element per unit (feature or group), in this iteration's order."""
        return (len(self.units),)

    def _features(self, boxes: Sequence[Box]) -> np.ndarray:
        parts = [u for box in boxes for u in self.units[box.start[0] : box.stop[0]]]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def fill_boxes(self, out: np.ndarray, boxes: Sequence[Box]) -> None:
        """Write the mutant that shows only the features under ``boxes``."""
        np.copyto(out, self._baseline_full)
        index: list[Any] = [slice(None)] * self.tensor.ndim
        index[self.spatial_axes[0]] = self._features(boxes)
        out[tuple(index)] = self.tensor[tuple(index)]

    def input_regions(self, box: Box) -> tuple[Box, ...]:
        """The runs of feature indices a box covers."""
        return tuple(Box((a,), (b,)) for a, b in index_runs(self._features([box])))

    def weights_for_view(self, weights: np.ndarray) -> np.ndarray:
        """A feature map as unit weights (each unit's mean), in this iteration's order."""
        return np.array([float(np.mean(weights[u])) for u in self.units])


def count_rows(path: str | Path, explain_config: ExplainConfig | None = None) -> int:
    """How many rows a table file holds (for explaining every row)."""
    options = (explain_config or ExplainConfig()).image.mode_options
    return int(read_table(Path(path), _drop(options)).values.shape[0])


def _drop(options: Mapping[str, str]) -> list[str]:
    raw = options.get("drop", "")
    return [c.strip() for c in raw.split(",") if c.strip()]


def _feature_axis(info: ModelInfo, features: int) -> int:
    """The axis of the model input that holds the features: (F,) or (1, F)."""
    shape = info.input_shape
    if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
        width = shape[-1]
        if width > 0 and width != features:
            raise InputError(f"the row has {features} features but the model takes {width}")
        return len(shape) - 1
    raise InputError(
        f"the model's input shape {shape} is not tabular: expected (features,) or (1, features)"
    )


def load(path: Path, info: ModelInfo, explain_config: ExplainConfig) -> Subject:
    """Read row ``row`` of a table file as a Subject."""
    options = explain_config.image.mode_options
    table = read_table(path, _drop(options))
    row = option_int(options, "row", 0)
    rows = table.values.shape[0]
    if not -rows <= row < rows:
        raise InputError(f"{path}: row {row} does not exist (the table has {rows} rows)")
    values = table.values[row]
    check_finite(values, f"{path} row {row}", table.names)
    subject = _subject(values, table.names, info, explain_config, f"{path.stem}_row{row % rows}")
    subject.source = f"{path}#row={row % rows}"
    subject.row = row % rows
    return subject


def subject_from_array(
    array: np.ndarray, info: ModelInfo, explain_config: ExplainConfig
) -> Subject:
    """Wrap a row (features,), a (1, features) array, or a table with ``row=N``."""
    array = np.asarray(array, dtype=np.float64)
    options = explain_config.image.mode_options
    row = option_int(options, "row", 0)
    if array.ndim == 2 and array.shape != tuple(info.input_shape):
        if not -array.shape[0] <= row < array.shape[0]:
            raise InputError(f"row {row} does not exist (the array has {array.shape[0]} rows)")
        array = array[row]
    values = array.reshape(-1)
    check_finite(values, "the input array")
    names = [f"f{i}" for i in range(values.size)]
    return _subject(values, names, info, explain_config, f"array_row{row}")


def _subject(
    values: np.ndarray,
    names: list[str],
    info: ModelInfo,
    explain_config: ExplainConfig,
    name: str,
) -> TabularSubject:
    options = explain_config.image.mode_options
    axis = _feature_axis(info, values.size)
    shape = tuple(info.input_shape) if info.input_shape[-1] > 0 else (values.size,)
    if len(shape) == 2:
        shape = (1, values.size)
    tensor = np.ascontiguousarray(values.reshape(shape), dtype=info.dtype)
    units, unit_names = _units(options.get("groups"), names)
    return TabularSubject(
        name=name,
        tensor=tensor,
        spatial_axes=(axis,),
        baseline=_baseline(options, explain_config.image.mask_value, values, names, shape),
        mode="tabular",
        feature_names=tuple(names),
        units=units,
        unit_names=unit_names,
        permute=option_bool(options, "permute", True),
    )


def _baseline(
    options: Mapping[str, str],
    mask_value: float | str,
    values: np.ndarray,
    names: list[str],
    shape: tuple[int, ...],
) -> np.ndarray | float:
    """Per-feature values from a reference table, else the constant ``mask_value``."""
    reference = options.get("baseline")
    if reference is None:
        if "baseline_stat" in options:
            raise InputError("mode option baseline_stat needs baseline=TABLE (its statistic)")
        return constant_mask_value(values, mask_value)
    stat = options.get("baseline_stat", "mean")
    if stat not in ("mean", "median"):
        raise InputError(f"mode option baseline_stat={stat!r} must be mean or median")
    path = Path(reference)
    if not path.exists():
        raise InputError(f"baseline table {path}: no such file")
    table = read_table(path)
    if table.names != names and set(names) <= set(table.names):
        # a reference table may keep columns the input dropped (a label): align by name
        table = Table(table.values[:, [table.names.index(n) for n in names]], names)
    if table.values.shape[1] != values.size:
        raise InputError(
            f"baseline table {path} has {table.values.shape[1]} columns, the input {values.size}"
        )
    reduce = np.nanmedian if stat == "median" else np.nanmean
    per_feature = reduce(table.values, axis=0)
    check_finite(per_feature, f"baseline table {path}", names)
    return per_feature.reshape(shape)


def _units(spec: str | None, names: list[str]) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
    """Feature groups (``a,b;c,d`` by name or index, or a JSON file); the rest are singletons."""
    if not spec:
        return tuple(np.array([i]) for i in range(len(names))), tuple(names)
    if spec.endswith(".json") and Path(spec).exists():
        groups: dict[str, list[Any]] = json.loads(Path(spec).read_text())
    else:
        groups = {
            "+".join(p.strip() for p in g.split(",")): [p.strip() for p in g.split(",")]
            for g in spec.split(";")
            if g.strip()
        }
    taken: set[int] = set()
    units: list[np.ndarray] = []
    labels: list[str] = []
    for label, members in groups.items():
        indices = [_feature_index(m, names) for m in members]
        overlap = taken.intersection(indices)
        if overlap:
            raise InputError(f"feature {names[overlap.pop()]!r} is in more than one group")
        taken.update(indices)
        units.append(np.array(sorted(indices)))
        labels.append(label)
    for i, name in enumerate(names):
        if i not in taken:
            units.append(np.array([i]))
            labels.append(name)
    return tuple(units), tuple(labels)


def _feature_index(member: Any, names: list[str]) -> int:
    if isinstance(member, int) or (isinstance(member, str) and member.isdigit()):
        index = int(member)
        if not 0 <= index < len(names):
            raise InputError(f"group member {member} is not a feature index (0..{len(names) - 1})")
        return index
    if member not in names:
        raise InputError(f"group member {member!r} is not a column; columns: {names}")
    return names.index(member)


@dataclass(frozen=True)
class FeatureRow:
    """One line of the ranked feature table."""

    rank: int
    feature: str
    index: int
    value: float
    baseline: float
    responsibility: float
    in_explanation: bool


def feature_table(explanation: Explanation) -> list[FeatureRow]:
    """Features ranked by responsibility (highest first; ties keep the file's order)."""
    subject = explanation.subject
    values = subject.tensor.reshape(-1).astype(np.float64)
    baseline = np.broadcast_to(np.asarray(subject.baseline, np.float64), subject.tensor.shape)
    baseline = baseline.reshape(-1)
    names = getattr(subject, "feature_names", ()) or tuple(f"f{i}" for i in range(values.size))
    responsibility = np.asarray(explanation.responsibility, np.float64).reshape(-1)
    mask = explanation.mask
    shown = np.zeros(values.size, bool) if mask is None else np.asarray(mask).reshape(-1)
    order = np.argsort(-responsibility, kind="stable")
    return [
        FeatureRow(
            rank=rank + 1,
            feature=names[i],
            index=int(i),
            value=float(values[i]),
            baseline=float(baseline[i]),
            responsibility=float(responsibility[i]),
            in_explanation=bool(shown[i]),
        )
        for rank, i in enumerate(order)
    ]


def format_table(rows: Sequence[FeatureRow], limit: int | None = 20) -> str:
    """The ranked table as aligned text for a terminal."""
    shown = list(rows if limit is None else rows[:limit])
    width = max([len("feature"), *(len(r.feature) for r in shown)])
    lines = [f"{'rank':>4}  {'feature':<{width}}  {'value':>11}  {'baseline':>11}  resp    expl"]
    for r in shown:
        lines.append(
            f"{r.rank:>4}  {r.feature:<{width}}  {r.value:>11.4g}  {r.baseline:>11.4g}  "
            f"{r.responsibility:.3f}  {'*' if r.in_explanation else ''}"
        )
    if limit is not None and len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more features")
    return "\n".join(lines)


def table_csv(rows: Sequence[FeatureRow]) -> str:
    """The ranked table as CSV text (header included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(FeatureRow.__dataclass_fields__))
    for r in rows:
        writer.writerow(list(r.__dict__.values()))
    return buffer.getvalue()


def render(explanation: Explanation, path: Path) -> None:
    """A horizontal bar chart of the top features' responsibility (explanation in colour)."""
    from rex_stream.pictures.image import class_text
    from rex_stream.pictures.table import save_feature_bars

    rows = feature_table(explanation)[:20]
    target = explanation.target
    save_feature_bars(
        [f"{r.feature} = {r.value:.3g}" for r in rows],
        [r.responsibility for r in rows],
        [r.in_explanation for r in rows],
        f"{explanation.subject.name}: {class_text(explanation)} "
        f"({target.confidence:.2f}); red = sufficient explanation",
        path,
    )


__all__ = [
    "FeatureRow",
    "TabularSubject",
    "TabularView",
    "count_rows",
    "feature_table",
    "format_table",
    "load",
    "read_table",
    "render",
    "subject_from_array",
    "table_csv",
]


def summary_lines(explanation: Explanation) -> list[str]:
    """The ranked feature table, for the CLI's human summary."""
    return format_table(feature_table(explanation), limit=10).splitlines()
