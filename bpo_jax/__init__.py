"""bpo-jax: Bounded Policy Optimization (BPO) and PPO as one compiled, vmappable JAX program."""
from bpo_jax.config import Config, ConfigError, HParams
from bpo_jax.train import TrainState, Trainer, make_train, make_trainer

__all__ = ["Config", "ConfigError", "HParams", "TrainState", "Trainer", "make_train", "make_trainer"]
__version__ = "0.1.0"
