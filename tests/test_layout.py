"""The house rules of DESIGN.md that import-linter cannot state (its contracts in pyproject.toml
hold the layers; CI runs ``lint-imports``): no module imports another's private name, no module
grows past 500 lines, the shared vocabulary at the top of the package stays small, the adapters
live inside the package, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rex_stream"
#: modules allowed directly in rex_stream/: the shared vocabulary
VOCABULARY = {"__init__", "__main__", "config", "errors", "result", "progress", "naming", "labels"}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for each ``from rex_stream… import name`` and ``import rex_stream…``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("rex_stream")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("rex_stream"):
                found += [(node.module, a.name) for a in node.names]
    return found


def _private_imports(paths: dict[str, Path]) -> list[str]:
    return [
        f"{name} imports {module}.{imported}"
        for name, path in paths.items()
        for module, imported in _imported(path)
        if imported is not None
        and imported.startswith("_")
        and not imported.startswith("__")
        and f"{module}.{imported}" not in MODULES  # a private module of one's own folder
    ]


def _module_circles(paths: dict[str, Path]) -> list[tuple[str, str]]:
    edges: dict[str, set[str]] = {}
    for name, path in paths.items():
        for module, imported in _imported(path):
            target = f"{module}.{imported}" if f"{module}.{imported}" in paths else module
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target not in (name, "rex_stream"):
                edges.setdefault(name, set()).add(target)
    return sorted((a, b) for a, bs in edges.items() for b in bs if a < b and a in edges.get(b, ()))


def test_no_module_imports_a_private_name_of_another() -> None:
    assert _private_imports(MODULES) == []


def test_the_private_name_check_sees_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from rex_stream.runs.rex import _secret\n")
    assert _private_imports({"bad": bad}) == ["bad imports rex_stream.runs.rex._secret"]


def test_no_two_modules_import_each_other() -> None:
    assert _module_circles(MODULES) == []


def test_the_circle_check_sees_one(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from rex_stream.b import x\n")
    (tmp_path / "b.py").write_text("import rex_stream.a\n")
    paths = {"rex_stream.a": tmp_path / "a.py", "rex_stream.b": tmp_path / "b.py"}
    assert _module_circles(paths) == [("rex_stream.a", "rex_stream.b")]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_500_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concept"


def test_only_the_shared_vocabulary_is_loose() -> None:
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= VOCABULARY, sorted(loose - VOCABULARY)


def test_the_adapters_live_inside_the_package() -> None:
    assert (PACKAGE / "adapters" / "__init__.py").is_file()
    assert not (ROOT / "adapters").exists()
