"""A missing extra is named by the package and its extra, never by a local path (issue 27,
item 14): the same hint from the checkout, from another folder, and in every source file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rex_stream.engine.install_hint import install_command

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "rex_stream" / "data" / "models" / "digits-mlp.onnx"
BLOCK_AUTOGRAD = (
    "import sys; sys.modules['autograd'] = None; sys.modules['autograd.numpy'] = None; "
    "from rex_stream.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_a_missing_extra_names_the_package_extra(where: str, tmp_path: Path) -> None:
    rows = tmp_path / "rows.npy"
    np.save(rows, (np.load(ROOT / "rex_stream/data/models/digits-train.npy")[:20, None] / 16.0)
            .astype(np.float32))  # fmt: skip
    cwd = ROOT if where == "checkout" else tmp_path
    train = ["l2x-train", str(rows), "--model", str(DIGITS), "--k", "4", "--epochs", "1"]
    command = [sys.executable, "-c", BLOCK_AUTOGRAD, *train, "--out", str(tmp_path / "x.npz")]
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].endswith("L2X training needs autograd: pip install 'rex-stream[l2x]'")
    assert str(ROOT) not in out.stderr and "'.[" not in out.stderr


def test_install_command_is_the_same_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = install_command("s3")
    monkeypatch.chdir(tmp_path)
    assert install_command("s3") == here == "pip install 'rex-stream[s3]'"


#: what a hint may ask to install: an extra of ours, a hint built by install_command, or a
#: package by its index name (with a version bound)
_ALLOWED = re.compile(
    r"'?rex-stream\[[a-z0-9]+\]'?|\{install_command\(.*|'?[A-Za-z][\w.-]*(>=[\d.]+)?'?"
)


def test_no_source_file_hints_at_a_path() -> None:
    from rex_stream.engine.store_location import EXTRAS

    offending = [name for name in EXTRAS.values() if not _ALLOWED.fullmatch(name)]
    for path in sorted((ROOT / "rex_stream").rglob("*.py")):
        if path.name == "install_hint.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for found in re.findall(r"pip install (\S+)", line):
                hint = found.rstrip('"`),.;:')
                if hint == "'{package}'":  # an EXTRAS value, checked above
                    continue
                local = "/" in hint or hint.lstrip("'\"").startswith(".")
                if local or not _ALLOWED.fullmatch(hint):
                    offending.append(f"{path.relative_to(ROOT)}:{number}: {hint}")
    assert offending == []
