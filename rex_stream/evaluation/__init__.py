"""The evaluation wing: metrics planned up front and scored through the engine's scheduler.

Import rules: like every method wing, evaluation imports the engine and the top-level leaf
modules, never another method wing; to re-explain (robustness metrics) it goes through the
public API at the top of the package.
"""
