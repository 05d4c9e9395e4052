"""Item 3 of issue 27: a ``--labels`` file in the wrong format, or naming fewer classes than
the model predicts, is refused in one line instead of giving nonsense or bare numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import _one_line_error, rex


def _explain(tiny_cnn: Path, tiny_image: Path, labels: Path):
    return rex(
        str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "--seed", "0", "-n", "-q",
        "--labels", str(labels),
    )  # fmt: skip


@pytest.mark.parametrize(
    "content",
    [
        json.dumps([f"name {i}" for i in range(10)]),
        json.dumps({str(i): f"n{i}" for i in range(10)}),
    ],
    ids=["list", "object"],
)
def test_a_json_label_file_is_refused(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path, content: str
) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(content)
    _one_line_error(_explain(tiny_cnn, tiny_image, labels), "this is a JSON file")


def test_a_label_file_without_the_predicted_class_is_refused(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "ten.txt"
    whole.write_text("\n".join(f"thing {i}" for i in range(10)) + "\n")
    named = _explain(tiny_cnn, tiny_image, whole)
    assert named.returncode == 0, named.stderr
    predicted = next(line for line in named.stdout.splitlines() if "thing " in line)
    index = int(predicted.split("thing ")[1].split()[0])
    short = tmp_path / "short.txt"
    short.write_text("\n".join(f"thing {i}" for i in range(index)) + "\n")
    if index == 0:
        pytest.skip("the tiny model predicts class 0: no shorter file can miss it")
    _one_line_error(_explain(tiny_cnn, tiny_image, short), f"{index} names")
