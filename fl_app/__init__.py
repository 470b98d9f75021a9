"""swipe-fl core, one package per part of the system (docs/layout.md has the map):

- `decoder`: keyboards, the swipe contract, features, model, lexicon decoding, training, evaluation;
- `synthetic`: the generator's users, their statistics, centralized runs on them;
- `swipes`: the on-device SQLite swipe store;
- `checkpoints`: the checkpoint format, its local and S3 stores, the release pointer;
- `federation`: the Flower ServerApp/ClientApp logic, the typed run config, the Hydra entry;
- `deploy`: real processes on loopback (S3, SuperLink, SuperNodes, sidecars).
"""
