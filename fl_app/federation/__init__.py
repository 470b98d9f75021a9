"""Federated training with Flower: the ServerApp and ClientApp logic behind `flwr run .`.

- `config`: compose `conf/` (Hydra) and check it; `experiment`: the Hydra command-line entry;
- `server`: the run loop (strategy, centralized evaluation, checkpoints, releases, metrics);
- `client`: training and evaluation on a node's swipe store;
- `protocol`: the records the two exchange; `strategies`: FedAvg/FedProx/FedAdam additions;
- `data`: synthetic users' cached stores; `resume`: continuing a run; `metrics`: logs and plot.
"""
