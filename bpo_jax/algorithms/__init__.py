"""Algorithm objects: ``get("bpo")``, ``get("ppo")``, and :func:`register` for your own.

See :mod:`bpo_jax.algorithms.base` for what an algorithm provides."""
from __future__ import annotations

from bpo_jax.algorithms.base import COMMON_METRICS, Algorithm, Batch, LossInputs
from bpo_jax.algorithms.bpo import BPO
from bpo_jax.algorithms.ppo import PPO

_REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Make ``algorithm`` available as ``Config(algo=algorithm.name)``."""
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Algorithm:
    """The registered algorithm called ``name``; KeyError if there is none."""
    return _REGISTRY[name]


def reads(algo: str, field: str) -> bool:
    """Whether algorithm ``algo`` reads Config field ``field``: every field but those that only
    other algorithms read (their ``own_fields``)."""
    return field in get(algo).own_fields or not any(field in a.own_fields for a in _REGISTRY.values())


def metric_tags() -> dict[str, str]:
    """Every metric name -> TensorBoard tag, in CSV column order: the shared metrics, then each
    registered algorithm's own."""
    tags = dict(COMMON_METRICS)
    for algorithm in _REGISTRY.values():
        tags.update(algorithm.metrics)
    return tags


register(BPO())
register(PPO())

__all__ = ["Algorithm", "Batch", "LossInputs", "BPO", "PPO", "register", "names", "get", "reads", "metric_tags"]
