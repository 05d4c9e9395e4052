"""Every command and Python snippet in README.md and docs/*.md runs as written, from a copy of
the repository root (the source tree beside the installed package, as a new user has it)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: commands that set up an environment rather than use the tool
SETUP = ("pip ", "python3 -m venv", "bash .ci/run", "python -m pytest", ". .venv")


def _commands(text: str) -> list[str]:
    """``rex-stream …`` commands in indented or ```bash blocks (backslash continuations
    joined), skipping prose lines."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("rex-stream ") and (
            lines[i].startswith("    ") or _in_bash_block(lines, i)
        ):
            command = line
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            found.append(command.split("  #")[0].strip())
        i += 1
    return found


def _in_bash_block(lines: list[str], index: int) -> bool:
    fences = [i for i in range(index) if lines[i].startswith("```")]
    return bool(fences) and len(fences) % 2 == 1 and lines[fences[-1]].strip() in ("```bash", "```")


def _snippets(text: str) -> list[str]:
    return [code for code, _ in _snippets_with_output(text)]


def _snippets_with_output(text: str) -> list[tuple[str, str | None]]:
    """Each python snippet and, when a plain or ```text block follows it directly (only
    blank lines between), that block: what the snippet prints."""
    found = []
    for match in re.finditer(r"```python\n(.*?)```\n", text, flags=re.S):
        after = re.match(r"\s*```(?:text)?\n(.*?)```", text[match.end() :], flags=re.S)
        gap = text[match.end() : match.end() + (after.start(1) if after else 0)]
        shown = after.group(1) if after and gap.count("\n") <= 2 else None
        found.append((match.group(1), shown))
    return found


def _expected_output(document: Path, code: str) -> str | None:
    for snippet, shown in _snippets_with_output(document.read_text()):
        if snippet == code:
            return shown
    return None


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for document in DOCUMENTS:
        text = document.read_text()
        for n, command in enumerate(_commands(text)):
            cases.append((f"{document.name}:command{n}", "command", command))
        for n, code in enumerate(_snippets(text)):
            cases.append((f"{document.name}:python{n}", "python", code))
    return cases


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the repository root (links to its tree), for outputs."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("rex_stream", "adapters", "pyproject.toml", "docs", "README.md"):
        (root / name).symlink_to(ROOT / name)
    return root


def test_the_documents_have_examples() -> None:
    kinds = {kind for _, kind, _ in _cases()}
    assert kinds == {"command", "python"}
    assert len(_cases()) >= 8


@pytest.mark.parametrize(("name", "kind", "text"), _cases(), ids=[c[0] for c in _cases()])
def test_documented_example_runs(checkout: Path, name: str, kind: str, text: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    if kind == "python":
        argv = [sys.executable, "-c", text]
    else:
        argv = shlex.split(text)
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{name}\n{text}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    assert str(ROOT) not in done.stderr, f"{name}: a message names the checkout's own path"
    if kind == "python":
        document = ROOT / (
            "README.md" if name.startswith("README") else f"docs/{name.split(':')[0]}"
        )
        shown = _expected_output(document, text)
        if shown is not None:  # the document shows what the snippet prints: it must be so
            printed = [line.rstrip() for line in done.stdout.strip().splitlines()]
            assert printed == [line.rstrip() for line in shown.strip().splitlines()], done.stdout
