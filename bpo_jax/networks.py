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

from bpo_jax.dense import Dense
from bpo_jax.envs.base import ActionSpace, Box, Discrete

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu}


@struct.dataclass
class Categorical:
    """Categorical distribution over the last axis of ``logits`` [..., n]."""

    logits: jax.Array

    @staticmethod
    def noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Standard Gumbel noise [..., n]: what ``sample_with`` turns into samples."""
        return jax.random.gumbel(key, shape)

    def sample_with(self, noise: jax.Array) -> jax.Array:
        """Gumbel-max: argmax(logits + noise) [...], exactly ``jax.random.categorical``."""
        return jnp.argmax(noise + self.logits, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_with(self.noise(key, self.logits.shape))

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        if self.logits.shape[-1] > _COLUMNS_MAX:
            logp = jax.nn.log_softmax(self.logits)
            return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        logp = _log_softmax_columns(self.logits)
        taken = logp[0]
        for i in range(1, len(logp)):
            taken = jnp.where(action == i, logp[i], taken)
        return taken

    def entropy(self) -> jax.Array:
        if self.logits.shape[-1] > _COLUMNS_MAX:
            logp = jax.nn.log_softmax(self.logits)
            return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
        logp = _log_softmax_columns(self.logits)
        total = jnp.exp(logp[0]) * logp[0]
        for column in logp[1:]:
            total = total + jnp.exp(column) * column
        return -total


# Up to this many choices, the categorical's log-softmax, log-prob and entropy are written column
# by column: elementwise operations that XLA:CPU fuses with their consumers into one kernel, where
# a reduction over the choices is a kernel of its own (and the log-prob's gather has a scatter
# for gradient).  3% of a CartPole PPO run on a 2-core CPU (benchmarks/RESULTS.md, 2026-12-05
# evening); the same values as ``jax.nn.log_softmax`` (bit for bit with two choices).
_COLUMNS_MAX = 32


def _log_softmax_columns(logits: jax.Array) -> list[jax.Array]:
    """``jax.nn.log_softmax(logits)`` [..., n] as n arrays [...], summed in index order."""
    columns = [logits[..., i] for i in range(logits.shape[-1])]
    top = columns[0]
    for column in columns[1:]:
        top = jnp.maximum(top, column)
    shifted = [column - jax.lax.stop_gradient(top) for column in columns]
    total = jnp.exp(shifted[0])
    for column in shifted[1:]:
        total = total + jnp.exp(column)
    log_total = jnp.log(total)
    return [column - log_total for column in shifted]


@struct.dataclass
class DiagGaussian:
    """Diagonal Gaussian with ``mean`` [..., A] and ``std`` [A] (or broadcastable)."""

    mean: jax.Array
    std: jax.Array

    @staticmethod
    def noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Standard normal noise [..., A]: what ``sample_with`` turns into samples."""
        return jax.random.normal(key, shape)

    def sample_with(self, noise: jax.Array) -> jax.Array:
        return self.mean + self.std * noise

    def sample(self, key: jax.Array) -> jax.Array:
        return self.sample_with(self.noise(key, self.mean.shape))

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, action: jax.Array) -> jax.Array:
        z = (action - self.mean) / self.std
        return jnp.sum(-0.5 * z**2 - jnp.log(self.std) - 0.5 * np.log(2 * np.pi), axis=-1)

    def entropy(self) -> jax.Array:
        per_dim = 0.5 + 0.5 * np.log(2 * np.pi) + jnp.log(self.std)
        return jnp.sum(jnp.broadcast_to(per_dim, self.mean.shape), axis=-1)


def policy_noise(action_space: ActionSpace, key: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
    """The noise for sampling the policy's actions over ``batch_shape`` states at once,
    [*batch_shape, n] (Discrete(n)) or [*batch_shape, *A] (Box); ``dist.sample_with(noise[i])``
    then samples with no random call of its own.  Drawing a whole rollout's noise [T, B, ...]
    in one call saves T small threefry calls, each a loop of kernels on a CPU."""
    if isinstance(action_space, Discrete):
        return Categorical.noise(key, (*batch_shape, action_space.n))
    return DiagGaussian.noise(key, (*batch_shape, *action_space.shape))


def orthogonal_kernels(key: jax.Array, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
    """Independent orthogonal matrices (Saxe et al.), one per kernel shape [*in, out], from ONE
    Gaussian draw.

    Each kernel is the orthonormal factor Q (R with a positive diagonal) of its own Gaussian
    matrix, flattened to [prod(in), out] and transposed when wide: the distribution of
    ``flax.linen.initializers.orthogonal``.  Q comes from Gram-Schmidt in plain jnp, not LAPACK:
    jaxlib 0.10's CPU QR kernels deadlock when several run vmapped in one program, and
    initialisation runs inside the seed-vmapped ``train``.  Kernels whose long side is equal are
    orthonormalised together, zero-padded to their group's widest short side (zero columns stay
    zero, and earlier columns never see later ones).  One draw and a loop per group instead of a
    draw and a loop per layer: the default networks' init, vmapped over 3 seeds, compiles in 0.14 s
    instead of 3.8 s on a 2-core CPU, in every training program.
    """
    dims = [(math.prod(s[:-1]), s[-1]) for s in shapes]  # (rows, cols)
    groups: dict[int, list[int]] = {}  # long side -> kernel indices
    for i, (rows, cols) in enumerate(dims):
        groups.setdefault(max(rows, cols), []).append(i)
    widths = {m: max(min(dims[i]) for i in idx) for m, idx in groups.items()}  # padded short side
    draw = jax.random.normal(key, (sum(len(idx) * m * widths[m] for m, idx in groups.items()),), jnp.float32)
    out: list[jax.Array] = [None] * len(shapes)  # type: ignore[list-item]
    offset = 0
    for m, idx in groups.items():
        n = widths[m]
        z = draw[offset:offset + len(idx) * m * n].reshape(len(idx), m, n)
        offset += len(idx) * m * n
        used = np.array([np.arange(n) < min(dims[i]) for i in idx], np.float32)  # [L, n]
        q = _gram_schmidt(z * used[:, None, :])
        for k, i in enumerate(idx):
            rows, cols = dims[i]
            w = q[k, :, :min(rows, cols)]
            out[i] = (w.T if rows < cols else w).reshape(shapes[i])
    return out


def _gram_schmidt(q: jax.Array) -> jax.Array:
    """Orthonormalise the columns of every matrix in q [L, M, N] (M >= N), left to right; an
    all-zero column stays zero."""
    n = q.shape[-1]

    def column(j, q):
        earlier = (jnp.arange(n) < j).astype(q.dtype)
        v = q[:, :, j]  # [L, M]
        for _ in range(2):  # twice is enough for float32 orthogonality ("twice is enough", Kahan)
            v = v - jnp.einsum("lmn,ln->lm", q, jnp.einsum("lmn,lm->ln", q, v) * earlier)
        norm = jnp.linalg.norm(v, axis=1, keepdims=True)
        return q.at[:, :, j].set(v / jnp.where(norm > 0, norm, 1.0))

    return jax.lax.fori_loop(0, n, column, q)


def _gain(value: float):
    """Kernel placeholder filled with the layer's init gain; :func:`init_params` multiplies it by
    an orthogonal matrix."""
    return nn.initializers.constant(value)


def init_params(network: nn.Module, key: jax.Array, obs: jax.Array):
    """Initial parameters of ``network`` for observations ``obs`` [N, *O]: every Dense kernel
    gain x orthogonal (the reference's init: gain sqrt 2 in the trunks, 0.01 on the policy
    head, 1 on the value head and on every layer of the median head), all drawn by :func:`orthogonal_kernels` at once;
    biases 0, the Gaussian's std at ``init_std``."""
    template = network.init(jax.random.key(0), obs)  # no random initialiser: kernels hold their gain
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    kernels = [i for i, (path, _) in enumerate(leaves) if getattr(path[-1], "key", None) == "kernel"]
    orth = orthogonal_kernels(key, [leaves[i][1].shape for i in kernels])
    values = [leaf for _, leaf in leaves]
    for i, q in zip(kernels, orth):
        values[i] = values[i] * q
    return jax.tree_util.tree_unflatten(treedef, values)


class MLP(nn.Module):
    """Dense layers (orthogonal init, gain sqrt 2 unless ``gain``) and the chosen activation;
    [N, *O] -> [N, H]."""

    sizes: Sequence[int]
    activation: str
    gain: float = float(np.sqrt(2))

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        act = _ACTIVATIONS[self.activation]
        for size in self.sizes:
            x = act(Dense(size, kernel_init=_gain(self.gain))(x))
        return x


# The authors' SB3 BPOPolicy initialises every layer of its u net with gain 1, hidden ones too
# (where the actor and critic trunks take sqrt 2).
MEDIAN_GAIN = 1.0


def _head(features: int, gain: float) -> nn.Dense:
    return Dense(features, kernel_init=_gain(gain), bias_init=nn.initializers.zeros)


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
    separate_median: bool = False  # u(s) from its own MLP (hidden_sizes) on obs, as rsl_rl BPO's m_critic

    @nn.compact
    def __call__(self, obs):
        h = MLP(self.hidden_sizes, self.activation)(obs)
        value = _head(1, 1.0)(h)[:, 0]
        if not self.with_median:
            return value, jnp.zeros_like(value)
        if self.separate_median:
            return value, _head(1, 1.0)(MLP(self.hidden_sizes, self.activation, name="median_net")(obs))[:, 0]
        u = _head(1, 1.0)(MLP(self.median_hidden_sizes, self.activation, MEDIAN_GAIN, name="median_trunk")(h))[:, 0]
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
    separate_median: bool = False
    policy_obs_dim: int = 0  # asymmetric critic: actor reads obs[..., :d], critic and median obs[..., d:]; 0 = all

    def setup(self):
        self.actor = Actor(self.action_space, self.hidden_sizes, self.activation, self.init_std, self.min_std)
        self.critic = Critic(self.hidden_sizes, self.activation, self.median_hidden_sizes, self.with_median,
                             self.separate_median)

    def _actor_obs(self, obs):
        return obs[..., :self.policy_obs_dim] if self.policy_obs_dim else obs

    def _critic_obs(self, obs):
        return obs[..., self.policy_obs_dim:] if self.policy_obs_dim else obs

    def __call__(self, obs):
        return self.actor(self._actor_obs(obs)), self.critic(self._critic_obs(obs))

    def policy(self, obs):
        return self.actor(self._actor_obs(obs))

    def values(self, obs):
        return self.critic(self._critic_obs(obs))


def make_network(config, action_space: ActionSpace, obs_spec=None) -> nn.Module:
    """The actor-critic a :class:`~bpo_jax.config.Config` describes; for image observations
    (``obs_spec`` rank-3 uint8, e.g. Atari frames) the Nature-CNN one, :mod:`bpo_jax.cnn`."""
    if obs_spec is not None and len(obs_spec.shape) == 3 and np.dtype(obs_spec.dtype) == np.uint8:
        from bpo_jax.cnn import make_cnn_network

        return make_cnn_network(config, action_space)
    return ActorCritic(
        action_space=action_space,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        median_hidden_sizes=tuple(config.median_hidden_sizes),
        with_median=config.algorithm.uses_median(config),
        init_std=config.init_std,
        min_std=config.min_std,
        separate_median=config.separate_median,
        policy_obs_dim=config.policy_obs_dim,
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
    low, high = jnp.asarray(action_space.low, jnp.float32), jnp.asarray(action_space.high, jnp.float32)
    if squash == "tanh":
        return low + (jnp.tanh(action) + 1.0) * 0.5 * (high - low)
    return jnp.clip(action, low, high)
