"""Per-prompt group statistics from a group id per sample, and the two group-relative signals
built from them: GRPO's advantage and GBPO's target logit (digest section 5.1).

Samples of one group need not be contiguous: every statistic is computed from an [N, N]
same-group mask, which is cheap for the few thousand responses of an RL batch and needs no
static number of groups under ``jit``.  Shapes: N = number of responses (flat).

Conventions follow the reference (verl ``core_algos.py``): the std is the unbiased sample std
(``torch.std``), the median interpolates linearly between the two middle values for an even
group size (``torch.quantile(g, 0.5)``), and eps = 1e-6 is added to the std.  One deliberate
difference: a group of size 1 has no baseline, so its advantage and target logit are 0 (the
reference uses mean 0 and std 1 there, which turns the raw reward into the advantage).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

EPS = 1e-6


class GroupStats(NamedTuple):
    """Statistics of each sample's own group, broadcast back to the samples: all [N]."""

    count: jax.Array  # number of samples in the group (int32)
    mean: jax.Array  # group mean of the rewards
    std: jax.Array  # unbiased group std (0 for a group of size 1)
    median: jax.Array  # group median, linear interpolation for even sizes


def group_stats(rewards: jax.Array, group_ids: jax.Array) -> GroupStats:
    """Group mean, std and median of ``rewards`` per sample.

    Args:
      rewards: [N] float scalar reward per response.
      group_ids: [N] int, the prompt (group) each response belongs to; any values, any order.

    Returns:
      GroupStats of [N] arrays.
    """
    rewards = rewards.astype(jnp.float32)
    same = group_ids[:, None] == group_ids[None, :]  # [N, N]
    samef = same.astype(rewards.dtype)
    count = same.sum(axis=1)
    countf = count.astype(rewards.dtype)
    mean = samef @ rewards / countf
    dev2 = samef * (rewards[None, :] - mean[:, None]) ** 2
    std = jnp.sqrt(dev2.sum(axis=1) / jnp.maximum(countf - 1.0, 1.0))
    std = jnp.where(count > 1, std, 0.0)
    # Rank of each sample inside its group (ties broken by index, so ranks are a permutation
    # 0..count-1 per group); the median reads the values at ranks floor/ceil((count-1)/2).
    index = jnp.arange(rewards.shape[0])
    before = (rewards[None, :] < rewards[:, None]) | (
        (rewards[None, :] == rewards[:, None]) & (index[None, :] < index[:, None]))
    rank = (same & before).sum(axis=1)  # [N]
    middle = (countf - 1.0) / 2.0
    lo, hi = jnp.floor(middle).astype(rank.dtype), jnp.ceil(middle).astype(rank.dtype)

    def value_at(ranks):  # [N] -> value of rank ranks[i] in sample i's group
        return (samef * (rank[None, :] == ranks[:, None]) * rewards[None, :]).sum(axis=1)

    frac = middle - jnp.floor(middle)
    median = value_at(lo) * (1.0 - frac) + value_at(hi) * frac
    return GroupStats(count=count, mean=mean, std=std, median=median)


def grpo_advantages(
    rewards: jax.Array, group_ids: jax.Array, eps: float = EPS, norm_by_std: bool = True
) -> jax.Array:
    """GRPO advantage (r - mean_g) / (std_g + eps), or r - mean_g without ``norm_by_std``.

    Args:
      rewards, group_ids: [N] as :func:`group_stats`.

    Returns:
      [N] advantage, 0 for a group of size 1 (also the weight |z| of the GBPO loss).
    """
    s = group_stats(rewards, group_ids)
    centred = rewards - s.mean
    adv = centred / (s.std + eps) if norm_by_std else centred
    return jnp.where(s.count > 1, adv, 0.0)


def gbpo_target_logits(
    rewards: jax.Array, group_ids: jax.Array, temperature: float, eps: float = EPS
) -> jax.Array:
    """GBPO target logit (r - median_g) / (std_g + eps) / temperature.

    The target ratio is then 1 - c_low + (c_low + c_high) * sigmoid(logit): above the median
    pushes up, below pushes down, and a response tied with the median gets sigmoid(0) = 1/2,
    i.e. it is not moved in the symmetric case (digest section 5.4).

    Args:
      rewards, group_ids: [N] as :func:`group_stats`.
      temperature: tau > 0; the reference's TTRL scripts use 1e-4 (a near-binary target).

    Returns:
      [N] logit, 0 for a group of size 1.
    """
    if isinstance(temperature, (int, float)) and not temperature > 0:  # a traced one is the caller's to check
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = group_stats(rewards, group_ids)
    logit = (rewards - s.median) / (s.std + eps) / temperature
    return jnp.where(s.count > 1, logit, 0.0)
