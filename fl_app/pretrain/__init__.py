"""The pretraining recipe of the shipped base decoder: `python -m fl_app.pretrain`.

One reproducible command (Hydra config `conf/pretrain.yaml`; a fixed seed and step count):
train on synthetic users plus the public-train real users, tune decoding on public-val, measure
on public-val and dev, and write a checkpoint whose manifest records the recipe, the data it
saw and its figures (docs/pretraining.md).
"""
