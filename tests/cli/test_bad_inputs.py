"""An adversarial sweep of the command line: every bad input is one ``rex-stream: error:`` line.

Each case calls the console entry point ``rex_stream.cli.main.main`` in this process (fast:
no interpreter start per case) and checks what a user would see: a non-zero exit, exactly one
line on stderr that starts with ``rex-stream: error:`` and names what was wrong, no traceback,
and no warning or log record beside it. Store cases also check that the data already in the
store is untouched.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rex_stream.cli.main import main

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"

#: A module of misbehaving model and explainer functions, imported from the working directory.
FUNCTIONS = """
import numpy as np
input_shape = (3, 32, 32)
def raises(batch):
    raise RuntimeError("boom")
def wrong_shape(batch):
    return np.zeros((len(batch), 10, 2), np.float32)
def fine(batch):
    return np.linspace(0, 1, 10)[None].repeat(len(batch), 0)
def explainer_raises(x, target):
    raise ValueError("explode")
def explainer_nan(x, target):
    return np.full(x.shape[-2:], np.nan)
"""


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> dict[str, Path]:
    """Broken and misleading files, one of each kind."""
    folder = tmp_path_factory.mktemp("bad")
    files = {"dir": folder / "a-directory", "missing_dir": folder / "missing" / "x"}
    files["dir"].mkdir()
    (folder / "empty.npy").write_bytes(b"")
    files["empty_npy"] = folder / "empty.npy"
    files["map"] = folder / "map.npy"
    np.save(files["map"], np.random.default_rng(1).random((32, 32)).astype(np.float32))
    files["nan_map"] = folder / "nan_map.npy"
    np.save(files["nan_map"], np.full((32, 32), np.nan, np.float32))
    files["png"] = tiny_image
    (folder / "rexbad_functions.py").write_text(FUNCTIONS)
    files["functions"] = folder
    return files


def one_line_error(
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> str:
    """Run the CLI with ``argv``; assert one error line containing ``needle``; return it."""
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse, like the console script, exits
            code = exit_.code if isinstance(exit_.code, int) else 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("rex-stream: error:"), err
    assert needle in lines[0], lines[0]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [str(w.message) for w in caught]
    return lines[0]


Case = Callable[[dict[str, Path], Path, Path], list[str]]


#: name → (arguments from (bad files, model, picture), what the one line must say)
CASES: dict[str, tuple[Case, str]] = {
    # a typo on the command line: one line, not the usage block
    "not a number": (lambda b, m, p: [str(p), "--model", str(m), "--iters", "abc"], "--iters"),
    "unknown choice": (lambda b, m, p: [str(p), "--model", str(m), "-s", "foo"], "--strategy"),
    "negative-looking value": (
        lambda b, m, p: [str(p), "--model", str(m), "--stds", "-1,1,1"],
        "--stds",
    ),
    "evaluate typo": (
        lambda b, m, p: ["evaluate", str(p), "--model", str(m), "--seed", "x"],
        "evaluate: argument --seed",
    ),
    "evaluate bad --meta": (
        lambda b, m, p: ["evaluate", str(p), "--model", str(m), "--meta", "foo"],
        "--meta",
    ),
    "cem bad --kind": (lambda b, m, p: ["cem", str(p), "--model", str(m), "--kind", "x"], "--kind"),
    "cem takes no --iters": (
        lambda b, m, p: [str(p), "--method", "cem-pp", "--model", str(m), "--iters", "3"],
        "--iters",
    ),
    "l2x-train without --out": (
        lambda b, m, p: ["l2x-train", str(b["dir"]), "--model", str(m)],
        "--out",
    ),
    "l2x without --explainer": (lambda b, m, p: ["l2x", str(p)], "--explainer"),
    # empty files (np.load raises EOFError on them)
    "empty .npy input": (lambda b, m, p: [str(b["empty_npy"]), "--model", str(m)], "empty.npy"),
    "empty .npy input to cem": (
        lambda b, m, p: ["cem", str(b["empty_npy"]), "--model", str(m)],
        "empty.npy",
    ),
    "empty .npy input to evaluate": (
        lambda b, m, p: [
            "evaluate",
            str(b["empty_npy"]),
            "--model",
            str(m),
            "--attribution",
            str(b["map"]),
            "--metrics",
            "sparseness",
        ],
        "empty.npy",
    ),
    "empty .npy attribution": (
        lambda b, m, p: [
            "evaluate",
            str(p),
            "--model",
            str(m),
            "--attribution",
            str(b["empty_npy"]),
            "--metrics",
            "sparseness",
        ],
        "empty.npy",
    ),
    "empty .npy mask": (
        lambda b, m, p: [
            "evaluate",
            str(p),
            "--model",
            str(m),
            "--attribution",
            str(b["map"]),
            "--mask",
            str(b["empty_npy"]),
            "--metrics",
            "pointing-game",
        ],
        "empty.npy",
    ),
    "empty .npy training rows": (
        lambda b, m, p: ["l2x-train", str(b["empty_npy"]), "--model", str(m), "--out", "e.npz"],
        "empty.npy",
    ),
    "empty explainer file": (
        lambda b, m, p: ["l2x", str(p), "--explainer", str(b["empty_npy"])],
        "not an L2X explainer",
    ),
    # a Python function as the model that fails or answers in the wrong shape
    "python model raises": (
        lambda b, m, p: [str(p), "--backend", "python:rexbad_functions:raises", "--iters", "1"],
        "raised RuntimeError on a batch of 1: boom",
    ),
    "python model raises in cem": (
        lambda b, m, p: ["cem", str(p), "--backend", "python:rexbad_functions:raises"],
        "rexbad_functions:raises raised RuntimeError",
    ),
    "python model answers (N, 10, 2)": (
        lambda b, m, p: [str(p), "--backend", "python:rexbad_functions:wrong_shape"],
        "expected (1, classes)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(
    name: str,
    bad: dict[str, Path],
    tiny_cnn: Path,
    tiny_image: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(bad["functions"])  # python:rexbad_functions:… is found here
    arguments, needle = CASES[name]
    one_line_error(arguments(bad, tiny_cnn, tiny_image), needle, capsys, caplog)


def tree_digest(folder: Path) -> str:
    """A digest of every file's path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
