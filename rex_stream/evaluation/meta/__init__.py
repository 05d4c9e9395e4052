"""Meta-evaluation (MetaQuantus): are the metrics themselves reliable?

The input-perturbation test (:mod:`.input_test`, its units :mod:`.input_units`) and the
model-perturbation test (:mod:`.model_test`, :mod:`.model_units`) commit their units to the
store as :mod:`.store` lays them out, and reduce them to IAC, IEC and MC (:mod:`.scores`).
"""
