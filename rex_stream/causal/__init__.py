"""The causal-responsibility method of ReX: search, responsibility maps, extraction.

Import rules: a method wing imports the engine (``rex_stream.engine``), the top-level leaf
modules (``config``, ``errors``) and modes only through the ``Subject`` protocol; it never
imports another method wing (``evaluation``, ``cem``, ``l2x``), the CLI or an adapter.
"""
