"""Hyperparameter and architecture search: a Hydra sweeper that drives Optuna with ask/tell."""
