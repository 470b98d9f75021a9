"""Labelled swipes at rest on a device: the SQLite swipe store the sidecar writes and the
ClientApp trains on (`store`), and its on-disk layout and row encoding (`format`). Not to be
confused with `fl_app.checkpoints`, where models rest."""
