"""A local tokenizer (a Hugging Face ``tokenizer.json``, read by the ``tokenizers`` package):
a text's token ids, and the token-id rows of its masked versions.

Every unit (word, sentence or token) owns the tokens whose character offsets start inside it,
so masking a word masks all its sub-word pieces; special tokens (``[CLS]``, ``[SEP]``) are
always kept. Masking (``--mask-value``):

- ``delete``: the masked units' tokens are removed and the row is padded at the end;
- ``attention``: the ids stay, ``attention_mask`` is 0 at the masked tokens;
- ``mask-token``: each masked token becomes the mask token (``[MASK]``, ``<mask>``, or the
  mode option ``mask_token=…``);
- any other string: each masked unit becomes that literal's tokens (``[UNK]``, ``…``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.errors import InputError
from rex_stream.modes.text_units import Units, from_spans, units_of_tokens

#: Mask tokens tried in order when the mode option ``mask_token`` names none.
MASK_TOKENS = ("[MASK]", "<mask>", "<MASK>")
PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>")


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """The tokenizer in ``path`` (cached: many inputs share one)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise InputError(
            "--tokenizer needs the tokenizers package: pip install 'rex-stream[text]'"
        ) from exc
    if not Path(path).is_file():
        raise InputError(f"--tokenizer {path}: no such file")
    try:
        return Tokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises a plain Exception for bad files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--tokenizer {path}: not a tokenizer.json file ({first})") from exc


def _token_id(tokenizer: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        found = tokenizer.token_to_id(name)
        if found is not None:
            return int(found)
    return None


@dataclass
class TokenizedText:
    """One text as token ids, and each token's unit (−1: special, always kept)."""

    ids: np.ndarray
    type_ids: np.ndarray
    token_units: np.ndarray
    length: int
    pad_id: int
    mask_id: int | None
    literal_ids: np.ndarray | None

    def row(self, visible: np.ndarray, masking: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input_ids, attention_mask, token_type_ids) of length ``length`` showing only the
        ``visible`` units, the rest masked as ``masking`` says."""
        shown = self.token_units < 0
        shown[~shown] = np.asarray(visible, bool)[self.token_units[~shown]]
        ids, types = self.ids, self.type_ids
        attention = np.ones(len(ids), np.int64)
        if masking == "attention":
            attention = shown.astype(np.int64)
        elif masking == "mask-token":
            assert self.mask_id is not None
            ids = np.where(shown, ids, self.mask_id)
        elif masking == "delete":
            ids, types, attention = ids[shown], types[shown], attention[shown]
        else:  # a literal: one copy of its tokens per masked unit
            ids, types = self._literal(shown)
            attention = np.ones(len(ids), np.int64)
        return self.padded(ids, self.pad_id), self.padded(attention, 0), self.padded(types, 0)

    def _literal(self, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.literal_ids is not None
        pieces, types = [], []
        previous = None
        for position, keep in enumerate(shown.tolist()):
            unit = int(self.token_units[position])
            if keep:
                pieces.append(self.ids[position : position + 1])
                types.append(self.type_ids[position : position + 1])
            elif unit != previous:  # the first token of a masked unit stands for all of it
                pieces.append(self.literal_ids)
                types.append(np.full(len(self.literal_ids), self.type_ids[position]))
            previous = unit if not keep else None
        return np.concatenate(pieces)[: self.length], np.concatenate(types)[: self.length]

    def padded(self, values: np.ndarray, fill: int) -> np.ndarray:
        """``values`` cut or padded with ``fill`` to ``length``."""
        out = np.full(self.length, fill, np.int64)
        out[: min(len(values), self.length)] = values[: self.length]
        return out


def tokenize(
    tokenizer: Any,
    text: str,
    units: Units | None,
    length: int,
    *,
    truncate: bool,
    masking: str,
    mask_token: str | None,
    what: str,
) -> tuple[TokenizedText, Units, bool]:
    """Tokenise ``text`` for a model of ``length`` positions; ``units`` None: the tokens are
    the units. Returns the tokens, the units, and whether the text was truncated."""
    encoding = tokenizer.encode(text)
    ids = np.asarray(encoding.ids, np.int64)
    special = np.asarray(encoding.special_tokens_mask, bool)
    offsets = np.asarray(encoding.offsets, np.int64).reshape(-1, 2)
    truncated = len(ids) > length
    if truncated:
        if not truncate:
            raise InputError(
                f"{what}: {len(ids)} tokens, but the model takes {length} (mode option "
                "truncate=true keeps the first ones, or --input-shape L for a model whose "
                "length varies)"
            )
        keep = np.arange(len(ids)) < length
        if special[-1]:  # keep the closing special token ([SEP]) at the end
            keep[length - 1] = False
            keep[-1] = True
        ids, special, offsets = ids[keep], special[keep], offsets[keep]
    if units is None:
        plain = ~special & (offsets[:, 1] > offsets[:, 0])
        units = from_spans(text, [tuple(o) for o in offsets[plain].tolist()])
        token_units = np.full(len(ids), -1, np.int64)
        token_units[plain] = np.arange(int(plain.sum()))
    else:
        token_units = np.where(special, -1, units_of_tokens(offsets[:, 0], units))
        if truncated:  # units whose every token was cut off are no longer units
            kept = np.unique(token_units[token_units >= 0])
            units = from_spans(text, list(zip(units.starts[kept], units.stops[kept])))
            token_units = np.where(token_units >= 0, np.searchsorted(kept, token_units), -1)
    if len(units) == 0:
        raise InputError(f"{what}: the tokenizer finds nothing to explain in this text")
    mask_id = None
    if masking == "mask-token":
        names = (mask_token,) if mask_token else MASK_TOKENS
        mask_id = _token_id(tokenizer, names)
        if mask_id is None:
            raise InputError(
                f"--mask-value mask-token: the tokenizer has no {' / '.join(names)} token "
                "(name it with --mode-option mask_token=…)"
            )
    literal_ids = None
    if masking not in ("delete", "attention", "mask-token"):
        known = tokenizer.token_to_id(masking)  # a token itself ([UNK]): its one id
        literal_ids = np.asarray(
            [known]
            if known is not None
            else tokenizer.encode(masking, add_special_tokens=False).ids,
            np.int64,
        )
    pad_id = _token_id(tokenizer, PAD_TOKENS)
    types = np.asarray(encoding.type_ids, np.int64)[: len(ids)] if not truncated else None
    if types is None:
        types = np.zeros(len(ids), np.int64)
    tokens = TokenizedText(
        ids=ids,
        type_ids=types,
        token_units=token_units,
        length=length,
        pad_id=0 if pad_id is None else pad_id,
        mask_id=mask_id,
        literal_ids=literal_ids,
    )
    return tokens, units, truncated
