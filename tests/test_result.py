"""The result types: typed fields, and the deprecated ``extra`` view of them."""

from __future__ import annotations

import pytest

from rex_stream.result import Explanation


def test_extra_is_a_deprecated_read_only_view_of_the_typed_fields() -> None:
    explanation = Explanation.__new__(Explanation)
    explanation.model_identity = {"sha256": "x"}
    explanation.warnings = ["the model may expect normalised input"]
    explanation.complete = None
    explanation.analysis = None
    explanation.mask_values = None
    explanation.label = "ladybird"
    with pytest.warns(DeprecationWarning, match="typed fields"):
        extra = explanation.extra
    assert extra == {
        "model_identity": {"sha256": "x"},
        "warnings": ["the model may expect normalised input"],
        "label": "ladybird",
    }
