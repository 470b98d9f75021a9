"""The decoder core: what turns a trace over a keyboard into ranked words.

keyboard (geometry) -> swipe (the validated contract) -> features -> model (per-frame letter
log-probabilities) -> template (SHARK2 shortlist and baseline) -> ranking (CTC rescoring fused
with template and prior) over a lexicon; spec rebuilds all of it from a checkpoint manifest;
training and evaluation are the one loop and the one scorer everybody shares; tuning fits the
few decoding weights. Nothing here knows about Flower, HTTP or storage.
"""
