"""A sentiment classifier over a small planted lexicon, in every form the text tests serve it.

Pure numpy and ``re`` at the top (the PyTriton server imports this file in its own
environment); the ONNX model and the ``tokenizers`` tokenizer are built on demand. Every form
gives the same float32 logits ``[-s, s]``, ``s`` the sum of the words' weights (multiples of
0.5, so sums are exact whatever the order)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

#: The planted words: everything else weighs 0.
WEIGHTS = {
    "excellent": 2.0,
    "wonderful": 2.0,
    "superb": 1.5,
    "terrible": -2.0,
    "awful": -2.0,
    "boring": -1.5,
}
#: Neutral words the tokenizer knows (others become [UNK], weight 0 as well).
NEUTRAL = (
    "the film was a plot and but music acting ending actors seemed tired slow long it is "
    "of with this that very quite i found story cast score by end"
).split()
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = re.compile(r"\w+|[^\w\s]+")

TEXTS = [
    "The plot was slow and the actors seemed tired, but the music was excellent.",
    "It is a long film with a boring story and awful acting.",
    "I found the cast wonderful and the ending superb.",
    "The score was terrible, the story slow, and the end very long.",
]


def score_texts(texts: list[str]) -> np.ndarray:
    """The classifier on strings (the server's or a ``python:`` function's tokenising)."""
    sums = [sum(WEIGHTS.get(w, 0.0) for w in WORDS.findall(t.lower())) for t in texts]
    s = np.asarray(sums, np.float32).reshape(-1, 1)
    return np.concatenate([-s, s], axis=1)


def vocabulary() -> dict[str, int]:
    """Token ids: the specials, then the neutral and planted words."""
    words = list(SPECIALS) + NEUTRAL + sorted(WEIGHTS)
    return {word: index for index, word in enumerate(dict.fromkeys(words))}


def score_ids(ids: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """The classifier on token ids (:func:`vocabulary`'s): what the ONNX token model computes,
    for servers that take ``input_ids`` and ``attention_mask``."""
    vocab = vocabulary()
    weights = np.zeros(len(vocab), np.float32)
    for word, weight in WEIGHTS.items():
        weights[vocab[word]] = weight
    s = (weights[np.asarray(ids, np.int64)] * np.asarray(attention, np.float32)).sum(axis=1)
    s = s.astype(np.float32).reshape(-1, 1)
    return np.concatenate([-s, s], axis=1)


def save_tokenizer(path: Path) -> Path:
    """A WordLevel ``tokenizer.json`` over :func:`vocabulary` ([CLS] text [SEP])."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = vocabulary()
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.add_special_tokens(list(SPECIALS))  # one token each, never lower-cased
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.save(str(path))
    return path


def save_token_model(path: Path, length: int | None = 32, token_types: bool = False) -> Path:
    """ONNX: ``input_ids``, ``attention_mask`` (and ``token_type_ids``) [N, L] int64 →
    logits [N, 2] = [-s, s], s = Σ weight[id] × mask (``length`` None: variable L)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vocab = vocabulary()
    weights = np.zeros(len(vocab), np.float32)
    for word, weight in WEIGHTS.items():
        weights[vocab[word]] = weight
    seq = length if length is not None else "L"
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", seq]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", seq]),
    ]
    if token_types:
        inputs.append(
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["N", seq])
        )
    nodes = [
        helper.make_node("Gather", ["weights", "input_ids"], ["w"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w", "m"], ["wm"]),
        helper.make_node("ReduceSum", ["wm", "axes"], ["s"], keepdims=1),
        helper.make_node("Neg", ["s"], ["ns"]),
        helper.make_node("Concat", ["ns", "s"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "lexicon",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_string_model(path: Path) -> Path:
    """ONNX taking ``text`` as tensor(string) [N, 1] — a model whose input is strings (it
    cannot tokenise: it answers the same for every text, used only for transport checks)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Shape", ["text"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
        helper.make_node("Concat", ["n", "two"], ["out_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["out_shape"],
            ["logits"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([2], np.int64), "two"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
