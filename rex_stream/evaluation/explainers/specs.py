"""Re-explainers from specs (``rex:iters=5``, ``python:module:function``) and callables, and
the names they are shown and recorded under."""

from __future__ import annotations

import inspect
from typing import Any

from rex_stream.engine.user_modules import import_from_cwd_first
from rex_stream.errors import ConfigError
from rex_stream.evaluation.explainers.kinds import (
    REX_DEFAULTS,
    REX_OPTIONAL,
    ExplainFunction,
    FunctionExplainer,
    ReExplain,
    RexExplainer,
)


def explainer_from_spec(spec: str) -> RexExplainer | FunctionExplainer:
    """``"rex"``, ``"rex:iters=5,tree_depth=6"`` or ``"python:module:function"``."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    if kind.strip().lower() == "rex":
        return _rex_from_settings(rest)
    if kind.strip().lower() == "python":
        module_name, sep, function_name = rest.partition(":")
        if not sep or not module_name.strip() or not function_name.strip():
            raise ConfigError(f"--explainer {spec!r}: expected python:module:function")
        return explainer_from_function(
            _load_function(module_name.strip(), function_name.strip(), spec)
        )
    raise ConfigError(
        f"--explainer {spec!r}: expected rex[:iters=N,tree_depth=N,min_box_size=N,"
        "search_limit=N,seed=N] or python:module:function"
    )


def explainer_from_function(function: ExplainFunction) -> FunctionExplainer:
    """Wrap a ``(x, target) -> map`` callable (sync or async)."""
    if not callable(function):
        raise ConfigError(f"explainer {function!r} is not callable")
    named = function if hasattr(function, "__qualname__") else type(function)
    module = getattr(named, "__module__", None) or "?"
    return FunctionExplainer(function, f"{module}:{getattr(named, '__qualname__', repr(named))}")


def _rex_from_settings(text: str) -> RexExplainer:
    values: dict[str, int] = {}
    allowed = (*REX_DEFAULTS, *REX_OPTIONAL)
    for item in (part.strip() for part in text.replace(":", ",").split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ConfigError(
                f"--explainer rex: unknown setting {item!r}; settings: {', '.join(allowed)}"
            )
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(
                f"--explainer rex: {key}={raw.strip()!r} must be an integer"
            ) from None
        if value < 0 or (value == 0 and key != "seed"):
            raise ConfigError(f"--explainer rex: {key}={value} must be > 0")
        values[key] = value
    return RexExplainer(**values)


def _load_function(module_name: str, function_name: str, spec: str) -> ExplainFunction:
    try:
        module = import_from_cwd_first(module_name)
    except ImportError as exc:
        raise ConfigError(f"--explainer {spec!r}: cannot import {module_name}: {exc}") from None
    function: Any = module
    for part in function_name.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise ConfigError(f"--explainer {spec!r}: {module_name} has no {function_name}")
    if not callable(function):
        raise ConfigError(f"--explainer {spec!r}: {function_name} is not callable")
    return function


def as_re_explainer(explainer: str | ReExplain | ExplainFunction) -> ReExplain:
    """A spec, a re-explainer, or a user's ``(x, target) -> map`` function as a re-explainer
    (a callable of two parameters is taken for a user's function)."""
    if isinstance(explainer, str):
        return explainer_from_spec(explainer)
    if isinstance(explainer, (RexExplainer, FunctionExplainer)):
        return explainer
    if not callable(explainer):
        raise ConfigError(f"explainer {explainer!r} is neither a spec nor a callable")
    try:
        parameters = inspect.signature(explainer).parameters.values()
    except (TypeError, ValueError):
        return explainer  # type: ignore[return-value]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 2:
        return explainer_from_function(explainer)  # type: ignore[arg-type]
    return explainer  # type: ignore[return-value]


def explainer_name(explainer: ReExplain) -> str:
    """How a re-explainer is shown and recorded (its spec, or its function's name)."""
    spec = getattr(explainer, "spec", None)
    if isinstance(spec, str):
        return spec
    named = explainer if hasattr(explainer, "__qualname__") else type(explainer)
    return f"{getattr(named, '__module__', '?')}:{getattr(named, '__qualname__', repr(named))}"
