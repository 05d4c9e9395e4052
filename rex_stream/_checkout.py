"""Adapters from a source checkout, registered when ``rex_stream`` is imported."""

from __future__ import annotations


def _adapters_from_checkout() -> None:
    """Run from a source checkout (e.g. a script in the repository root after a plain
    ``pip install .``), ``import rex_stream`` finds this tree, whose adapters live in
    ``../adapters`` (installed as ``rex_stream.adapters``): register them under that name."""
    import importlib.util
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    adapters = here.parent / "adapters" / "__init__.py"
    if (here / "adapters").exists() or not adapters.is_file():
        return
    if "rex_stream.adapters" in sys.modules or importlib.util.find_spec is None:
        return
    spec = importlib.util.spec_from_file_location(
        "rex_stream.adapters", adapters, submodule_search_locations=[str(adapters.parent)]
    )
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["rex_stream.adapters"] = module
    spec.loader.exec_module(module)


_adapters_from_checkout()
