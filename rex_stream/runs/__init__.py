"""Runs: one module per method run, each composing a method with a mode, a store and an engine.

``rex`` is the ReX run in explicit phases (predict the target, open the store, search a range
of iterations, build the map, extract, save) that ``rex_search``, ``rex_store`` and
``rex_extract`` hold and the Dask tasks call; ``many`` explains many inputs through one engine;
``rows`` and ``windows`` explain a table's rows and an audio file's windows; ``cem`` and ``l2x``
run the other explainers.
"""
