"""Algorithm objects: ``get("bpo")``, ``get("ppo")``, and :func:`register` for your own.

See :mod:`bpo_jax.algorithms.base` for what an algorithm provides."""
from __future__ import annotations

import re

from bpo_jax.algorithms.base import COMMON_METRICS, Algorithm, Batch, LossContractError, LossInputs, checked_loss
from bpo_jax.algorithms.bpo import BPO
from bpo_jax.algorithms.ppo import PPO

_REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm, replace: bool = False) -> Algorithm:
    """Make ``algorithm`` (an instance of an :class:`Algorithm` subclass) available as
    ``Config(algo=algorithm.name)``.  Its name is a run-directory-safe word (letters, digits,
    ``_ . -``).  A name already registered (``bpo``, ``ppo``, or one added before) is refused
    with a ValueError unless ``replace=True`` (or it is the same class defined again: a notebook
    cell run twice, a reloaded module), so that a plug-in cannot silently take over the
    built-ins; so is a metric named as one the shared program reports for every algorithm, as
    a column metrics.csv always has, or as another algorithm's under another tag, and a tag that
    another metric has (CSV columns and TensorBoard tags are shared).  A plug-in's ``defaults``
    and ``own_fields`` must name Config fields (every Config checks every algorithm's)."""
    if not isinstance(algorithm, Algorithm):
        kind = f"the class {algorithm.__name__}" if isinstance(algorithm, type) else repr(algorithm)
        raise TypeError(f"register takes an Algorithm instance (e.g. MyAlgorithm()), got {kind}")
    name = getattr(algorithm, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"register: {type(algorithm).__name__}.name must be a word of letters, digits, '_', '.' "
                         f"or '-' (it names run directories), got {name!r}")
    if name in _REGISTRY and not replace and not _same_class(_REGISTRY[name], algorithm):
        raise ValueError(f"register: algorithm {name!r} is already registered; pass replace=True to replace it, "
                         "or give yours another name")
    if not type(algorithm).__module__.startswith("bpo_jax."):  # (the built-ins register as config imports)
        from bpo_jax.config import check_algorithm_fields

        check_algorithm_fields(algorithm)  # every Config checks every algorithm's own_fields
    others = [a for n, a in _REGISTRY.items() if n != name]
    used = {t: m for m, t in COMMON_METRICS.items()} | {t: m for a in others for m, t in a.metrics.items()}
    for metric, tag in algorithm.metrics.items():
        if metric in COMMON_METRICS or metric in PROGRAM_METRICS:
            raise ValueError(f"register: {name}'s metric {metric!r} is one every algorithm reports; rename it")
        if metric in _CSV_COLUMNS:
            raise ValueError(f"register: {name}'s metric {metric!r} is a column metrics.csv always has; rename it")
        clash = next((a for a in others if a.metrics.get(metric, tag) != tag), None)
        if clash is not None:
            raise ValueError(f"register: {name}'s metric {metric!r} is {clash.name}'s under the tag "
                             f"{clash.metrics[metric]!r}; use that tag or another name")
        if used.get(tag, metric) != metric or tag.startswith("perf/"):
            whose = f"metric {used[tag]!r}'s" if tag in used else "where runs log their throughput"
            raise ValueError(f"register: {name}'s metric {metric!r} has the TensorBoard tag {tag!r}, {whose}; "
                             "give it a tag of its own")
        used[tag] = metric
    _REGISTRY[name] = algorithm
    return algorithm


# Rows the shared training program adds to every algorithm's metrics besides COMMON_METRICS.
PROGRAM_METRICS = ("nonfinite", "env_nonfinite", "bootstrap_overflow")
# metrics.csv's own columns (bpo_jax.reporting.write_metrics).
_CSV_COLUMNS = ("update", "seed", "env_steps", "steps_per_second")


def _same_class(registered: Algorithm, algorithm: Algorithm) -> bool:
    """Whether ``algorithm`` is the registered one's class defined again (a notebook cell run
    twice, a reloaded plug-in module): registering it again replaces it, as intended."""
    old, new = type(registered), type(algorithm)
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__) and \
        not old.__module__.startswith("bpo_jax.")


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

__all__ = ["Algorithm", "Batch", "LossInputs", "LossContractError", "checked_loss", "BPO", "PPO", "register", "names", "get", "reads", "metric_tags"]
