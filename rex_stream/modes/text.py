"""Text mode: a text classifier explained over the units of its input — words (default),
sentences, or a tokenizer's tokens — as the spectral mode explains a signal: boxes are
contiguous spans of units along one axis.

The model decides the transport. One that takes strings (a BYTES tensor to Triton or an Open
Inference Protocol server, KServe v1 ``instances``, a ``python:`` function's list of ``str``)
gets the masked text itself: masked units deleted (``--mask-value delete``, the default) or
each replaced by a literal (``--mask-value '[MASK]'``). One that takes token ids (an ONNX
model with ``input_ids``/``attention_mask``/``token_type_ids``) needs a local tokenizer
(``--tokenizer tokenizer.json`` or ``--mode-option tokenizer=…``) and also masks with
``attention`` or ``mask-token`` (:mod:`rex_stream.modes.text_tokens`).

A text longer than the model's token length is refused, one line naming both; with the mode
option ``truncate=true`` its first tokens are kept (the closing special token too) with a
warning, and the units cut off are not explained.

Mode options: ``unit=word|sentence|token``, ``column=NAME`` and ``row=N`` (rows of .jsonl,
.csv, .tsv files), ``tokenizer=PATH``, ``truncate=true``, ``mask_token=TOKEN``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.geometry import Box
from rex_stream.engine.inputs import is_named, is_text
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.modes.text_io import read_text
from rex_stream.modes.text_tokens import TokenizedText, load_tokenizer, tokenize
from rex_stream.modes.text_units import UNITS, Units, split_text
from rex_stream.pictures.text import highlight_terminal, save_text_picture

if TYPE_CHECKING:
    from rex_stream.result import Explanation

logger = logging.getLogger(__name__)

SUFFIXES = {".txt", ".jsonl", ".csv", ".tsv"}
MODES = ("text",)
OPTIONS = ("unit", "column", "row", "tokenizer", "truncate", "mask_token")

#: How masked units are hidden; any other string is a literal that replaces each one.
MASKINGS = ("delete", "attention", "mask-token")


@dataclass(frozen=True)
class TokenFields:
    """Which fields of a token-id batch row hold the ids, the attention mask, the type ids."""

    ids: str
    attention: str | None = None
    types: str | None = None


@dataclass
class TextSubject(Subject):
    """A text as units along one axis; a mutant is the text (or its token ids) with only the
    visible units shown."""

    units: Units = field(default_factory=lambda: Units("", np.zeros(0, int), np.zeros(0, int)))
    masking: str = "delete"
    tokens: TokenizedText | None = None
    fields: TokenFields | None = None
    truncated: bool = False

    def __post_init__(self) -> None:
        self._baseline_full = self.tensor  # never read: fills build the text themselves

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """One axis: the units."""
        return (len(self.units),)

    @property
    def literal(self) -> str | None:
        """The string that replaces each masked unit (None: masked units are deleted)."""
        return None if self.masking in MASKINGS else self.masking

    def fill_visible(self, out: np.ndarray, visible: np.ndarray) -> None:
        """Write the input showing only the ``visible`` units into ``out`` (one batch row)."""
        if self.tokens is None:
            out[0] = self.units.render(visible, self.literal)
            return
        assert self.fields is not None
        ids, attention, types = self.tokens.row(visible, self.masking)
        out[self.fields.ids][0] = ids
        if self.fields.attention is not None:
            out[self.fields.attention][0] = attention
        if self.fields.types is not None:
            out[self.fields.types][0] = types

    def fill_boxes(self, out: np.ndarray, boxes: Sequence[Box]) -> None:
        """Write the mutant that shows only ``boxes`` (spans of units)."""
        visible = np.zeros(len(self.units), bool)
        for box in boxes:
            visible[box.start[0] : box.stop[0]] = True
        self.fill_visible(out, visible)

    def fill_mask(self, out: np.ndarray, visible: np.ndarray) -> None:
        """Write the text with only the units where ``visible`` is true shown."""
        self.fill_visible(out, np.asarray(visible, bool).reshape(-1))

    def fill_at_least(
        self, out: np.ndarray, weights: np.ndarray, level: float, slab: int = 1 << 22
    ) -> None:
        """Write the text with only the units whose ``weights`` are ≥ ``level`` shown."""
        self.fill_visible(out, np.asarray(weights).reshape(-1) >= level)

    def content(self) -> np.ndarray:
        """The text's units as UTF-8 (the same whether strings or token ids travel), so the
        search is the same on every route."""
        joined = "\x1f".join(self.units.strings).encode("utf-8")
        return np.frombuffer(joined, dtype=np.uint8)

    def with_baseline(self, baseline: np.ndarray | float) -> Subject:
        """Texts are not masked with numbers (ReX's ``random``/``linear`` are refused)."""
        raise InputError("text mode: --mask-value random/linear do not apply to text")

    def expand(self, spatial: np.ndarray) -> np.ndarray:
        """A map over the units is already in the units' shape."""
        return spatial

    def summary_facts(self, mask: np.ndarray | None) -> dict[str, Any]:
        """The units in order and the explanation as text (``--json`` and the store)."""
        facts: dict[str, Any] = {"units": self.units.strings, "unit_kind": self.display_unit}
        if mask is not None:
            shown = np.asarray(mask, bool).reshape(-1)
            facts["explanation_text"] = explanation_text(self.units, shown)
            facts["explanation_units"] = np.flatnonzero(shown).tolist()
        if self.truncated:
            facts["truncated"] = True
        return facts

    @property
    def display_unit(self) -> str:
        """word, sentence or token."""
        return str(self.source_unit)

    source_unit: str = "word"


def explanation_text(units: Units, shown: np.ndarray) -> str:
    """The explanation's units in order, ``…`` where units were left out between them."""
    pieces: list[str] = []
    previous = -1
    for index in np.flatnonzero(shown).tolist():
        if pieces and index != previous + 1:
            pieces.append(" …")
        gap = units.gaps[index] if pieces else ""
        pieces.append((gap if index == previous + 1 else " ") + units.strings[index])
        previous = index
    return "".join(pieces).strip()


def _masking(config: ExplainConfig, tokenizer: bool) -> str:
    value = config.image.mask_value
    if isinstance(value, float | int) and not isinstance(value, bool):
        if value != 0:
            raise InputError(
                f"--mask-value {value:g}: text masks with delete (default), a literal such as "
                "'[MASK]', or with --tokenizer attention / mask-token"
            )
        return "delete"
    if value in ("min", "mean", "random", "linear"):
        raise InputError(f"--mask-value {value}: does not apply to text (delete, a literal …)")
    if value in ("attention", "mask-token") and not tokenizer:
        raise InputError(
            f"--mask-value {value}: needs token ids (--tokenizer tokenizer.json and a model "
            "that takes input_ids)"
        )
    if value == "":
        raise InputError("--mask-value '': give delete or a non-empty literal")
    return str(value)


def token_fields(info: ModelInfo) -> TokenFields:
    """Which fields of the model's token-id input are ids, attention mask and type ids."""
    ids = attention = types = None
    for name in info.dtype.names or ():
        lower = name.lower()
        if "type" in lower or "segment" in lower:
            types = name
        elif "mask" in lower or "attention" in lower:
            attention = name
        elif "ids" in lower or lower in ("input", "tokens"):
            ids = name
        else:
            raise InputError(
                f"the model's input {name!r} is none of input_ids, attention_mask, "
                "token_type_ids: rex-stream cannot fill it"
            )
    if ids is None:
        raise InputError(f"the model takes {list(info.dtype.names or ())} but no token ids")
    return TokenFields(ids, attention, types)


def load(path: Path, info: ModelInfo, config: ExplainConfig) -> Subject:
    """Read a text file (or one row of a .jsonl/.csv/.tsv file) as a Subject."""
    options = config.image.mode_options
    try:
        row = int(options.get("row", "0"))
    except ValueError as exc:
        raise InputError(f"mode option row={options['row']!r} must be an integer") from exc
    text, name, source = read_text(path, options.get("column", "text"), row)
    return text_subject(text, info, config, name, source)


def subject_from_array(array: np.ndarray, info: ModelInfo, config: ExplainConfig) -> Subject:
    """A text given as a numpy string (``np.array("a great film")``)."""
    values = np.asarray(array).reshape(-1)
    if values.size != 1 or not isinstance(values[0], str | np.str_):
        raise InputError("text mode takes one string (np.array('…')), not an array of numbers")
    return text_subject(str(values[0]), info, config, "text", None)


def text_subject(
    text: str, info: ModelInfo, config: ExplainConfig, name: str, source: str | None
) -> TextSubject:
    """The Subject of ``text`` for this model: strings or token ids, as it takes them."""
    what = source or "the input text"
    if not text.strip():
        raise InputError(f"{what}: the text is empty")
    options = config.image.mode_options
    unit = options.get("unit", "word")
    if unit not in UNITS:
        raise InputError(f"mode option unit={unit!r}: one of {', '.join(UNITS)}")
    tokenizer_path = options.get("tokenizer")
    masking = _masking(config, tokenizer_path is not None)
    if is_text(info.dtype):
        if tokenizer_path is not None or unit == "token":
            raise InputError(
                f"{info.name} takes strings (the server tokenises): drop --tokenizer and "
                "unit=token, or serve a model that takes token ids"
            )
        units = split_text(text, unit)
        if len(units) == 0:
            raise InputError(f"{what}: no words to explain")
        full = units.render(np.ones(len(units), bool))
        return _subject(name, np.array([full]), units, masking, source, unit)
    if not is_named(info.dtype):
        raise InputError(
            f"--mode text: {info.name}'s input is neither strings nor token ids "
            f"({info.dtype} of shape {info.input_shape})"
        )
    if tokenizer_path is None:
        raise InputError(
            f"{info.name} takes token ids ({', '.join(info.dtype.names or ())}): give the "
            "tokenizer with --tokenizer tokenizer.json"
        )
    fields = token_fields(info)
    length = int(info.dtype[fields.ids].shape[0])
    tokens, units, truncated = tokenize(
        load_tokenizer(tokenizer_path),
        text,
        None if unit == "token" else split_text(text, unit),
        length,
        truncate=options.get("truncate", "false").lower() in ("1", "true", "yes", "on"),
        masking=masking,
        mask_token=options.get("mask_token"),
        what=what,
    )
    if truncated:
        logger.warning(
            "%s: truncated to the model's %d tokens; the rest is not explained", what, length
        )
    row = np.zeros(1, dtype=info.dtype)
    subject = _subject(name, row, units, masking, source, unit)
    subject.tokens, subject.fields, subject.truncated = tokens, fields, truncated
    subject.fill_visible(row, np.ones(len(units), bool))
    return subject


def _subject(
    name: str, tensor: np.ndarray, units: Units, masking: str, source: str | None, unit: str
) -> TextSubject:
    subject = TextSubject(
        name=name,
        tensor=tensor,
        spatial_axes=(0,),
        baseline=0.0,
        mode="text",
        source=source,
        units=units,
        masking=masking,
    )
    subject.source_unit = unit
    return subject


def render(explanation: Explanation, path: Path) -> None:
    """The text with the explanation highlighted and a responsibility colour per unit:
    ``.html`` (or ``.htm``) a web page, any other suffix a picture."""
    subject = explanation.subject
    assert isinstance(subject, TextSubject)
    target = explanation.target
    label = explanation.label or f"class {target.classification}"
    title = f"{subject.name}: {label} ({target.confidence:.2f})"
    masks = (
        [np.asarray(e.mask, bool).reshape(-1) for e in explanation.multi.kept]
        if (explanation.multi is not None)
        else []
    )
    mask = explanation.mask
    save_text_picture(
        path,
        subject.units.strings,
        subject.units.gaps,
        np.asarray(explanation.responsibility, np.float64).reshape(-1),
        None if mask is None else np.asarray(mask, bool).reshape(-1),
        title,
        masks,
    )


def summary_lines(explanation: Explanation) -> list[str]:
    """The text with the explanation's units marked (in colour on a terminal)."""
    subject = explanation.subject
    assert isinstance(subject, TextSubject)
    mask = explanation.mask
    shown = np.zeros(len(subject.units), bool) if mask is None else np.asarray(mask, bool)
    line = highlight_terminal(
        subject.units.strings, subject.units.gaps, shown.reshape(-1), colour=sys.stdout.isatty()
    )
    return [f"explanation ({subject.display_unit}s): {line}"]
