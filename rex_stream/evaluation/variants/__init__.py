"""Variants of a local ONNX model with some weights replaced, for the metrics that re-explain
under changed weights (MPRT, efficient-MPRT) and the model-perturbation test.

:mod:`.layers` finds the layers that hold weights; :mod:`.weights` makes seeded variants
(randomised layers, noise); :mod:`.files` opens a variant as an engine from a temporary file;
:mod:`.pool` keeps variants open on demand and remembers the maps explained under them.
"""
