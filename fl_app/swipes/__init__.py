"""Labelled swipes at rest on a device: the SQLite swipe store the sidecar writes and the
ClientApp trains on (not to be confused with `fl_app.checkpoints`, where models rest)."""
