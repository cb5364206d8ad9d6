"""bpo-jax: Bounded Policy Optimization (BPO) and PPO as one compiled, vmappable JAX program."""
from bpo_jax import threefry_cpu
from bpo_jax.config import Config, ConfigError, HParams
from bpo_jax.train import TrainState, Trainer, make_train, make_trainer

threefry_cpu.install()  # same random bits, fewer XLA:CPU kernels for vmapped keys (see the module)

__all__ = ["Config", "ConfigError", "HParams", "TrainState", "Trainer", "make_train", "make_trainer"]
__version__ = "0.1.0"
