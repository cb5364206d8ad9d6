"""What every algorithm object provides, and the data its loss sees.

An algorithm owns what differs between PPO, BPO and the next one: its default
hyperparameters, the configuration fields only it reads, whether the critic carries a median
head, its policy loss (plus the losses of its own heads), and the names of the metrics that
loss reports.  Everything else (rollout, GAE, value loss, entropy bonus, optimiser, epochs x
minibatches) is the shared training program of :mod:`bpo_jax.train`.

To add an algorithm, subclass :class:`Algorithm`, fill in its class attributes and
:meth:`Algorithm.loss`, and :func:`bpo_jax.algorithms.register` an instance: ``Config(algo=NAME)``,
the command line's ``--algo NAME``, CSV columns and TensorBoard tags all follow.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Batch:
    """Flat training samples, [N, ...] with N = num_envs * num_steps (or one minibatch of them)."""

    obs: jax.Array  # [N, *O] observation acted on (normalised as the policy saw it)
    action: jax.Array  # [N] or [N, A] sampled action (unclipped)
    log_prob: jax.Array  # [N] log pi_old(a|s)
    value: jax.Array  # [N] V_old(s)
    advantage: jax.Array  # [N] GAE advantage
    q_hat: jax.Array  # [N] GAE return A + V_old, the value and BPO targets


@struct.dataclass
class LossInputs:
    """What the current networks say about one minibatch, handed to :meth:`Algorithm.loss`."""

    batch: Batch
    log_ratio: jax.Array  # [N] log pi(a|s) - log pi_old(a|s)
    ratio: jax.Array  # [N] exp(log_ratio)
    value: jax.Array  # [N] current V(s) (differentiable)
    median: jax.Array  # [N] current u(s); zeros when the critic has no median head


# Metrics every algorithm reports, in CSV column order, with their TensorBoard tag (CleanRL's
# namespaces: charts/ for episodes, losses/ for the learner).
COMMON_METRICS: dict[str, str] = {
    "episode_return_mean": "charts/episode_return",
    "episode_length_mean": "charts/episode_length",
    "episodes": "charts/episodes",
    "loss": "losses/loss",
    "policy_loss": "losses/policy_loss",
    "value_loss": "losses/value_loss",
    "entropy": "losses/entropy",
    "approx_kl": "losses/approx_kl",
    "clip_fraction": "losses/clip_fraction",
    "grad_norm": "losses/grad_norm",
    "value_mean": "losses/value_mean",
    # Only with lr_schedule adaptive (bpo_jax.lr_schedule): the lr after the update, the mean KL(old||new).
    "lr": "charts/learning_rate",
    "policy_kl": "losses/policy_kl",
}


class Algorithm:
    """One on-policy actor-critic algorithm; instances are stateless and hashable (static)."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by ``bpo-jax train --help``
    # Values of Config fields left at None; it must give lr, ent_coef, vf_coef and value_clip
    # (bpo_jax.config.FROM_ALGORITHM) unless every Config sets them.
    defaults: ClassVar[Mapping[str, Any]] = {}
    own_fields: ClassVar[tuple[str, ...]] = ()  # Config fields that only this algorithm reads
    metrics: ClassVar[Mapping[str, str]] = {}  # its own metric names -> TensorBoard tags

    def uses_median(self, config) -> bool:
        """Whether the critic needs the median head u(s)."""
        return False

    def validate(self, config) -> None:
        """Raise ``ConfigError`` for settings this algorithm cannot use."""

    def prepare(self, config, batch: Batch) -> Batch:
        """Batch-level preprocessing before the epochs (e.g. normalising over the whole rollout)."""
        return batch

    def loss(self, config, hp, x: LossInputs) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """(policy loss, loss of this algorithm's own heads (0.0 if none), metrics), scalars.

        The shared program minimises ``policy + vf_coef * value_loss + heads - ent_coef * entropy``.
        Metrics hold every name of :attr:`metrics`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LossContractError(ValueError):
    """An algorithm's :meth:`Algorithm.loss` returned what the shared program cannot use."""


def checked_loss(algorithm: Algorithm, out: Any) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """``out``, what ``algorithm.loss`` returned (at trace time), if it is (policy loss, heads
    loss, metrics) with scalar losses and the scalar metrics of :attr:`Algorithm.metrics`,
    no more and no fewer; else a one-line :class:`LossContractError`.  Without it a plug-in's
    mistake failed deep inside JAX (a per-sample loss has no gradient), or silently: a declared
    metric it did not return vanished from the CSV and TensorBoard."""
    where = f"algorithm {algorithm.name}'s loss"
    if not isinstance(out, tuple) or len(out) != 3:
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise LossContractError(f"{where} must return (policy loss, heads loss, metrics), got {got}")
    pi_loss, head_loss, metrics = out
    for what, x in (("policy loss", pi_loss), ("heads loss", head_loss)):
        if jnp.shape(x) != ():
            raise LossContractError(f"{where} returned a {what} of shape {jnp.shape(x)}; it must be a scalar "
                                    "(e.g. the mean over the minibatch)")
    if not isinstance(metrics, Mapping):
        raise LossContractError(f"{where} must return its metrics as a dict, got {type(metrics).__name__}")
    missing, extra = set(algorithm.metrics) - set(metrics), set(metrics) - set(algorithm.metrics)
    if missing or extra:
        said = (f"misses {', '.join(sorted(missing))}" if missing else "") + (" and " if missing and extra else "") + (
            f"returns {', '.join(sorted(extra))}, not declared" if extra else "")
        raise LossContractError(f"{where} {said}: its metrics must be those of {type(algorithm).__name__}.metrics")
    for name, x in metrics.items():
        if jnp.shape(x) != ():
            raise LossContractError(f"{where} returned metric {name!r} of shape {jnp.shape(x)}; metrics are scalars")
    return pi_loss, head_loss, dict(metrics)


def normalize(x: jax.Array, ddof: int = 0) -> jax.Array:
    """(x - mean) / (std + 1e-8) over all of x [N]; the std divides by N - ddof (0: jnp.std's,
    PureJaxRL's; 1: torch's .std(), SB3's and rsl_rl's)."""
    return (x - x.mean()) / (x.std(ddof=ddof) + 1e-8)


def as_metric(x) -> jax.Array:
    """A metric value as a float32 scalar array (so every algorithm's rows stack alike)."""
    return jnp.asarray(x, jnp.float32)
