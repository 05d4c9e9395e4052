"""The engine: the streaming machinery every method shares.

The backend port (``backend``), the scheduler that coalesces mutants into batches with
backpressure (``scheduler``), subjects (``subject``), N-d boxes (``geometry``), verdicts from
score rows (``verdicts``), ranking of a map's elements (``ranking``), option parsing
(``options``) and the Zarr store that persists any method's records (``store``).

Import rules: the engine imports nothing from ``rex_stream.causal``, ``rex_stream.evaluation``,
any other method wing, ``rex_stream.modes``, ``rex_stream.cli`` or ``rex_stream.adapters``;
only the leaf modules ``rex_stream.config`` and ``rex_stream.errors`` at the top. Verdicts and
ranking live here, not in a method, because every method (causal, evaluation, CEM, L2X) needs
them and a method wing may not import another.
"""
