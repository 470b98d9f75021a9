"""Federated training with Flower: the ServerApp and ClientApp logic behind `flwr run .`.

- `server`: the run loop (strategy, centralized evaluation, checkpoints, releases, metrics);
- `client`: training and evaluation on a node's swipe store;
- `protocol`: the records the two exchange; `strategies`: FedAvg/FedProx/FedAdam additions;
- `data`: synthetic users' cached stores; `resume`: continuing a run; `metrics`: logs and plot.
"""
