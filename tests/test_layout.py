"""The house rules of DESIGN.md, held by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rex_stream"
ADAPTERS = PACKAGE / "adapters"
METHOD_WINGS = ("causal", "evaluation", "cem", "l2x")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n == "rex_stream" or n.startswith("rex_stream.")}


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in _modules(folder):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.name} imports {name}")
    return found


def test_engine_imports_no_method_mode_cli_or_adapter() -> None:
    forbidden = tuple(f"rex_stream.{w}" for w in (*METHOD_WINGS, "modes", "cli", "adapters"))
    forbidden += ("rex_stream.runs", "rex_stream.api", "rex_stream.result")
    assert _violations(PACKAGE / "engine", forbidden) == []


def test_method_wings_never_import_each_other() -> None:
    for wing in METHOD_WINGS:
        if not (PACKAGE / wing).is_dir():
            continue
        others = tuple(f"rex_stream.{w}" for w in METHOD_WINGS if w != wing)
        forbidden = (*others, "rex_stream.cli", "rex_stream.adapters")
        assert _violations(PACKAGE / wing, forbidden) == [], wing


def test_adapters_import_only_the_port_and_errors() -> None:
    allowed = ("rex_stream.engine", "rex_stream.errors", "rex_stream.adapters")
    found = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(ADAPTERS)
        for name in _imports(path)
        if not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert found == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("from rex_stream.causal.search import run_iteration\n")
    assert _violations(tmp_path, ("rex_stream.causal",)) == [
        "bad.py imports rex_stream.causal.search"
    ]


def test_only_the_glue_imports_the_distributed_wing() -> None:
    for folder in ("engine", *METHOD_WINGS, "modes"):
        if (PACKAGE / folder).is_dir():
            assert _violations(PACKAGE / folder, ("rex_stream.distributed",)) == [], folder
    assert _violations(ADAPTERS, ("rex_stream.distributed",)) == []
