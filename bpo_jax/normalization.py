"""Running statistics for observation and reward normalisation, inside the compiled loop.

Statistics are kept as (count, mean, M2) and combined with Chan et al.'s parallel update,
so two summaries of disjoint samples merge exactly into the summary of their union.  That
makes them order-free: the same numbers come out whether a rollout is folded in sample by
sample (Welford), as one batch, or as per-device shards merged afterwards.

Reward normalisation follows SB3's ``VecNormalize``: rewards are divided by the running
standard deviation of the per-environment discounted return (not of the reward), and never
shifted, so the sign of every reward and the optimal policy are unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    """Summary of samples of shape S seen so far."""

    count: jax.Array  # [] float32 number of samples (float: it only ever weights means)
    mean: jax.Array  # [*S]
    m2: jax.Array  # [*S] sum of squared deviations from the mean

    @property
    def variance(self) -> jax.Array:
        """[*S] population variance (0 before any sample)."""
        return self.m2 / jnp.maximum(self.count, 1.0)


def init_stats(shape: tuple[int, ...]) -> RunningStats:
    """Empty statistics for samples of ``shape``."""
    return RunningStats(jnp.zeros((), jnp.float32), jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))


def batch_stats(x: jax.Array) -> RunningStats:
    """Exact statistics of a batch ``x`` of shape [N, *S]."""
    x = x.astype(jnp.float32)
    mean = x.mean(axis=0)
    return RunningStats(jnp.asarray(x.shape[0], jnp.float32), mean, jnp.sum(jnp.square(x - mean), axis=0))


def merge(a: RunningStats, b: RunningStats) -> RunningStats:
    """Statistics of the union of two disjoint sample sets (Chan, Golub & LeVeque 1979)."""
    count = a.count + b.count
    safe = jnp.maximum(count, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / safe)
    m2 = a.m2 + b.m2 + jnp.square(delta) * (a.count * b.count / safe)
    return RunningStats(count, mean, m2)


def update(stats: RunningStats, x: jax.Array, window: int = 0) -> RunningStats:
    """Fold a batch [N, *S] into ``stats``.  ``window`` > 0: the old summary first counts for at
    most ``window`` samples (:func:`cap`), so the result follows about the last ``window``
    samples, an exponential moving average giving each new batch the weight N / (window + N)."""
    if window:
        stats = cap(stats, window)
    return merge(stats, batch_stats(x))


def cap(stats: RunningStats, window: int) -> RunningStats:
    """``stats`` counted as at most ``window`` samples: the same mean and variance, less weight
    against the samples merged next.  Exact statistics of a long run stop moving (each batch
    weighs N / count); a drifting observation distribution needs them to keep up."""
    scale = jnp.minimum(1.0, window / jnp.maximum(stats.count, 1.0))
    return RunningStats(stats.count * scale, stats.mean, stats.m2 * scale)


def normalize(stats: RunningStats, x: jax.Array, clip: float, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / std, clipped to [-clip, clip]; x is [..., *S].  The identity before any sample."""
    z = (x - stats.mean) / jnp.sqrt(stats.variance + eps)
    return jnp.where(stats.count > 0, jnp.clip(z, -clip, clip), x)


def discounted_returns(rewards: jax.Array, dones: jax.Array, carry: jax.Array, gamma: jax.Array
                       ) -> tuple[jax.Array, jax.Array]:
    """Running discounted return per environment, as ``VecNormalize`` tracks it.

    rewards, dones: [T, B]; carry: [B] the return accumulated before this rollout.
    Returns (returns [T, B] after each step, carry [B] for the next rollout); the
    accumulator restarts at 0 after a step that ended an episode.
    """
    def step(ret, xs):
        reward, done = xs
        ret = ret * gamma + reward
        return jnp.where(done, 0.0, ret), ret

    carry, returns = jax.lax.scan(step, carry, (rewards, dones))
    return returns, carry


def scale_rewards(stats: RunningStats, rewards: jax.Array, clip: float, eps: float = 1e-8) -> jax.Array:
    """rewards / std(discounted return), clipped; no shift, so signs are kept."""
    return jnp.clip(rewards / jnp.sqrt(stats.variance + eps), -clip, clip)
