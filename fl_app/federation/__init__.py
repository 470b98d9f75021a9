"""Federated training with Flower: the ServerApp and ClientApp logic behind `flwr run .`.

- `config`: compose `conf/` (Hydra), check it and finalize it into `run_config.RunConfig`, the
  typed settings every other module reads (`fields`: the typed reads behind it);
- `experiment`: the Hydra command-line entry;
- `server`: the run loop (strategy, centralized evaluation, checkpoints, releases, metrics);
- `client`: training and evaluation on a node's swipe store;
- `protocol`: the records the two exchange; `strategies`: FedAvg/FedProx/FedAdam additions;
- `data`: synthetic users' cached stores; `resume`: continuing a run, run ids; `metrics`: logs
  and plot.
"""
