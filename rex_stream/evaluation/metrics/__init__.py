"""The metrics: one module per family (faithfulness, sensitivity-n, IROF, infidelity, ROAD,
insertion/deletion curves, complexity, localisation, robustness, randomisation, parameter
randomisation), each a plan over a case and a reduction; :mod:`.registry` names them all,
:mod:`.statistics` holds the correlations and areas they reduce with, :mod:`.removal` and
:mod:`.patches` the removal steps they share."""
