"""Which observations the critic must see to compute GAE targets, and its values put back.

GAE needs V(s_t) of every observation acted on and V of every observation a transition
reached (``final_obs``).  The second set is mostly the first one shifted by a step: where no
episode ended, ``final_obs[t] == obs[t + 1]``; where one terminated its value is never used;
only where one was *truncated* is ``final_obs[t]`` an observation the first set lacks.  An env
whose episodes are truncated only by a time limit of L steps truncates each copy at most
``ceil(T / L)`` times in T steps, so the critic needs T + 1 + ceil(T / L) rows per env instead
of 2 T (CartPole with PureJaxRL's rollout, T = 128 and L = 500: 130 against 256).

Shapes: T = rollout length, B = number of environments, k = truncation slots per env.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def truncation_slots(num_steps: int, time_limit: int | None) -> int | None:
    """k, the most truncations one env can have in ``num_steps`` consecutive steps when its
    episodes are truncated only at ``time_limit`` steps; None where that does not pay
    (no declared limit, or k so large that evaluating every ``final_obs`` is as cheap)."""
    if not time_limit:
        return None
    k = math.ceil(num_steps / time_limit)
    return k if k < num_steps - 1 else None


def truncation_times(truncated: jax.Array, k: int) -> jax.Array:
    """truncated [T, B] bool -> [k, B] int32: the steps of each env's first k truncations in
    time order, T where an env has fewer."""
    t = truncated.shape[0]
    first_k = lambda column: jnp.nonzero(column, size=k, fill_value=t)[0]
    return jax.vmap(first_k, in_axes=1, out_axes=1)(truncated).astype(jnp.int32)


def critic_inputs(obs: jax.Array, final_obs: jax.Array, times: jax.Array) -> jax.Array:
    """The observations to evaluate: obs [T, B, *O], final_obs [T, B, *O], times [k, B] ->
    [T + 1 + k, B, *O]: every obs, the last step's final_obs, then the truncated final_obs
    (the last step's where an env has fewer than k)."""
    index = jnp.minimum(times, obs.shape[0] - 1).reshape(times.shape + (1,) * (obs.ndim - 2))
    truncated_obs = jnp.take_along_axis(final_obs, index, axis=0)
    return jnp.concatenate([obs, final_obs[-1:], truncated_obs])


def split_values(v: jax.Array, truncated: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The critic's values of :func:`critic_inputs`, v [T + 1 + k, B], truncated [T, B] ->
    (values [T, B], next_values [T, B]): V(obs[t]) and V(final_obs[t]).  Where an episode
    terminated, next_values holds V of the next episode's first observation, which GAE
    multiplies by 0."""
    t = truncated.shape[0]
    values, shifted, slots = v[:t], v[1:t + 1], v[t + 1:]
    # The n-th truncation of an env is its slot n - 1: a gather along time, per env, so an env
    # batch split over devices stays split (a scatter would gather it).
    slot = jnp.cumsum(truncated, axis=0, dtype=jnp.int32) - 1
    truncated_values = jnp.take_along_axis(slots, jnp.clip(slot, 0, slots.shape[0] - 1), axis=0)
    return values, jnp.where(truncated, truncated_values, shifted)


def overflow(truncated: jax.Array, k: int) -> jax.Array:
    """Whether some env truncated more than k times ([T, B] -> bool): its env's declared
    time limit was wrong, and :func:`split_values` missed a bootstrap value."""
    return jnp.any(truncated.sum(axis=0) > k)
