"""bpo-jax: Bounded Policy Optimization (BPO) and PPO as one compiled, vmappable JAX program.

The names below load on first use (PEP 562), so that ``import bpo_jax`` is cheap and the
``bpo-jax`` command (:mod:`bpo_jax.__main__`) can answer a Ctrl-C during the seconds that JAX
and the suites take to import with its one-line message instead of a traceback.
"""
import importlib
import importlib.util

__version__ = "0.1.0"

_NAMES = {
    "Config": "bpo_jax.config", "ConfigError": "bpo_jax.config", "HParams": "bpo_jax.config",
    "TrainState": "bpo_jax.train", "Trainer": "bpo_jax.train", "make_train": "bpo_jax.train",
    "make_trainer": "bpo_jax.train",
}
__all__ = list(_NAMES)


def __getattr__(name: str):
    """The names above, and submodules by name (``bpo_jax.sweep.run(...)`` after ``import bpo_jax``)."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'bpo_jax' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
