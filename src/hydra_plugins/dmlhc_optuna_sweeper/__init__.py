"""Hydra sweeper plugin: Optuna (>= 4) studies through Hydra's multirun, on Optuna's ask/tell API."""
