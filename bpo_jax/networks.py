"""Actor-critic networks and the action distributions they produce.

The actor and the critic are separate MLP trunks (as PureJaxRL and the reference's sb3
policy); the critic trunk feeds a value head and BPO's median head u(s).  The rollout only
needs the actor, and the critic runs once over the whole rollout afterwards, batched.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bpo_jax.envs.base import ActionSpace, Box, Discrete

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu}


@struct.dataclass
class Categorical:
    """Categorical distribution over the last axis of ``logits`` [..., n]."""

    logits: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        logp = jax.nn.log_softmax(self.logits)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        logp = jax.nn.log_softmax(self.logits)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


@struct.dataclass
class DiagGaussian:
    """Diagonal Gaussian with ``mean`` [..., A] and ``std`` [A] (or broadcastable)."""

    mean: jax.Array
    std: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return self.mean + self.std * jax.random.normal(key, self.mean.shape)

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) / self.std
        return jnp.sum(-0.5 * z**2 - jnp.log(self.std) - 0.5 * np.log(2 * np.pi), axis=-1)

    def entropy(self) -> jax.Array:
        per_dim = 0.5 + 0.5 * np.log(2 * np.pi) + jnp.log(self.std)
        return jnp.sum(jnp.broadcast_to(per_dim, self.mean.shape), axis=-1)


def orthogonal(scale: float = 1.0):
    """Orthogonal initializer (Saxe et al.), the reference's init, via Gram-Schmidt in plain jnp.

    Same distribution as ``flax.linen.initializers.orthogonal`` (the orthonormal factor of a
    Gaussian matrix with a positive-diagonal R), but without LAPACK: jaxlib 0.10's CPU QR
    kernels deadlock when several of them run vmapped in one program (seen with 9 layers
    under ``vmap`` over seeds), and initialisation must run inside the vmapped ``train``.
    """
    def init(key, shape, dtype=jnp.float32):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        m, n = max(rows, cols), min(rows, cols)
        q = jax.random.normal(key, (m, n), jnp.float32)

        def orthonormalise_column(j, q):
            earlier = (jnp.arange(n) < j).astype(q.dtype)
            v = q[:, j]
            for _ in range(2):  # twice is enough for float32 orthogonality ("twice is enough", Kahan)
                v = v - q @ ((q.T @ v) * earlier)
            return q.at[:, j].set(v / jnp.linalg.norm(v))

        q = jax.lax.fori_loop(0, n, orthonormalise_column, q)
        q = q.T if rows < cols else q
        return (scale * q).reshape(shape).astype(dtype)

    return init


class MLP(nn.Module):
    """Dense layers with orthogonal init (gain sqrt 2) and the chosen activation; [N, *O] -> [N, H]."""

    sizes: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        act = _ACTIVATIONS[self.activation]
        for size in self.sizes:
            x = act(nn.Dense(size, kernel_init=orthogonal(np.sqrt(2)))(x))
        return x


def _head(features: int, gain: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros)


class Actor(nn.Module):
    """obs [N, *O] -> action distribution over N states.  Output-layer gain 0.01 keeps the
    initial policy near uniform / near zero mean, as in the reference."""

    action_space: ActionSpace
    hidden_sizes: Sequence[int]
    activation: str
    init_std: float = 1.0
    min_std: float = 1e-3

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden_sizes, self.activation)(obs)
        if isinstance(self.action_space, Discrete):
            return Categorical(_head(self.action_space.n, 0.01)(h))
        (dim,) = self.action_space.shape
        mean = _head(dim, 0.01)(h)
        # std = min_std + softplus(raw): smooth, state-independent, bounded away from 0 so
        # log-probs and entropies never become -inf or NaN however hard the loss pushes.
        raw_init = float(np.log(np.expm1(self.init_std - self.min_std)))
        raw = self.param("std_raw", nn.initializers.constant(raw_init), (dim,))
        return DiagGaussian(mean, self.min_std + jax.nn.softplus(raw))


class Critic(nn.Module):
    """obs [N, *O] -> (value [N], median u [N]).  The median head is an MLP on the critic
    trunk's features (sharing the trunk, as the reference's sb3 BPOPolicy)."""

    hidden_sizes: Sequence[int]
    activation: str
    median_hidden_sizes: Sequence[int] = ()
    with_median: bool = True

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden_sizes, self.activation)(obs)
        value = _head(1, 1.0)(h)[:, 0]
        if not self.with_median:
            return value, jnp.zeros_like(value)
        u = _head(1, 1.0)(MLP(self.median_hidden_sizes, self.activation, name="median_trunk")(h))[:, 0]
        return value, u


class ActorCritic(nn.Module):
    """Both networks under one parameter tree {'actor': ..., 'critic': ...}."""

    action_space: ActionSpace
    hidden_sizes: Sequence[int]
    activation: str
    median_hidden_sizes: Sequence[int]
    with_median: bool
    init_std: float
    min_std: float

    def setup(self):
        self.actor = Actor(self.action_space, self.hidden_sizes, self.activation, self.init_std, self.min_std)
        self.critic = Critic(self.hidden_sizes, self.activation, self.median_hidden_sizes, self.with_median)

    def __call__(self, obs):
        return self.actor(obs), self.critic(obs)

    def policy(self, obs):
        return self.actor(obs)

    def values(self, obs):
        return self.critic(obs)


def make_network(config, action_space: ActionSpace) -> ActorCritic:
    """The actor-critic a :class:`~bpo_jax.config.Config` describes."""
    return ActorCritic(
        action_space=action_space,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        median_hidden_sizes=tuple(config.median_hidden_sizes),
        with_median=config.algo == "bpo" and config.use_median,
        init_std=config.init_std,
        min_std=config.min_std,
    )


SQUASHES = ("clip", "tanh")


def action_to_env(action_space: ActionSpace, action: jax.Array, squash: str = "clip") -> jax.Array:
    """Map a sampled Gaussian action [..., A] to the env's bounds.

    * ``clip`` (default): clip to [low, high], as SB3 (the paper's code) and PureJaxRL.
      The log-prob stays that of the unclipped sample; every sample beyond a bound acts
      like the bound.
    * ``tanh``: low + (tanh(a) + 1)(high - low)/2, a smooth bijection onto the box.  The
      learner keeps the Gaussian's log-prob: the tanh Jacobian depends only on the sample,
      so it cancels in every ratio pi/pi_old that PPO and BPO use (the entropy bonus is then
      the Gaussian's, a documented approximation).

    Discrete actions pass through."""
    if not isinstance(action_space, Box):
        return action
    if squash == "tanh":
        return action_space.low + (jnp.tanh(action) + 1.0) * 0.5 * (action_space.high - action_space.low)
    return jnp.clip(action, action_space.low, action_space.high)
