"""The evaluation wing: metrics planned up front and scored through the engine's scheduler.

A small framework core (a case, a metric, its plan, the row scorer, sources, records, the
report, the session shared by every run, and :func:`~rex_stream.evaluation.run.evaluate`),
re-explanation (:mod:`.explainers`), model variants (:mod:`.variants`), the metrics
(:mod:`.metrics`) and MetaQuantus' meta-evaluation (:mod:`.meta`).

Import rules: evaluation sits above the runs; it imports them (a ReX re-explanation goes
through :func:`rex_stream.runs.rex.explain_input`), the engine and the shared vocabulary,
never the CLI or the API.
"""
