"""Nature-CNN actor-critic for image observations (Atari frames, uint8 [H, W, C]).

As the reference's SB3 policies (digest section 3.2): one shared torso (Mnih et al. 2015:
conv 32 8x8/4, 64 4x4/2, 64 3x3/1, dense 512, ReLU), then per head an MLP of
``hidden_sizes`` (BPO's ``BPOCnnPolicy``: pi [256], vf [256]; PPO's ``CnnPolicy``: none, linear
heads), a policy head (gain 0.01), a value head (gain 1) and, for BPO, the median head u(s)
on the value latent through ``median_hidden_sizes`` (reference 256 -> 256 -> 1).  Orthogonal
init (gain sqrt 2 in torso and MLPs, 1 in every layer of the median head's) as :func:`bpo_jax.networks.init_params` does for every
kernel, convolutions included.  Frames stay uint8 everywhere outside the network and are
scaled by 1/255 in its first operation; running observation normalisation does not apply
(:func:`make_cnn_network` refuses it).

The torso is shared: ``__call__`` (the learner's loss) runs it once for both heads;
``policy`` and ``values`` alone (acting, rollout values) each run it.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bpo_jax.dense import Dense, weight_gradient
from bpo_jax.envs.base import ActionSpace, Discrete
from bpo_jax.networks import MEDIAN_GAIN, MLP, Categorical, _gain, _head


_DIMS = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _valid_conv(x, kernel, strides):
    """VALID convolution, x [N, H, W, C], kernel [kh, kw, C, O] -> [N, H', W', O].

    The same function as ``lax.conv_general_dilated``, with the kernel gradient computed as a
    matmul of image patches: inside the learner's epoch and minibatch loops (XLA while loops)
    XLA:CPU runs the convolution it otherwise emits for that gradient 10-25x slower than at
    top level (0.94 s against 0.04 s for the first layer on 64 frames, one core), which made
    a Nature-CNN update ~12x slower than its arithmetic.  The patches form equals the
    convolution to float rounding (tests/test_cnn.py)."""
    return lax.conv_general_dilated(x, kernel, strides, "VALID", dimension_numbers=_DIMS)


def _valid_conv_fwd(x, kernel, strides):
    return _valid_conv(x, kernel, strides), (x, kernel)


def _valid_conv_bwd(strides, residuals, dy):
    x, kernel = residuals
    kh, kw, c, o = kernel.shape
    # Patches' features are ordered (C, kh, kw), channel-major.
    patches = lax.conv_general_dilated_patches(x, (kh, kw), strides, "VALID", dimension_numbers=_DIMS)
    dkernel = weight_gradient(patches.reshape(-1, c * kh * kw), dy.reshape(-1, o)).reshape(c, kh, kw, o).transpose(1, 2, 0, 3)
    # The input gradient keeps XLA's own transpose (not slow in loops); for the first layer
    # (frames, not differentiated) the compiler drops it.
    _, input_vjp = jax.vjp(lambda x: lax.conv_general_dilated(x, kernel, strides, "VALID", dimension_numbers=_DIMS), x)
    return input_vjp(dy)[0], dkernel


_valid_conv.defvjp(_valid_conv_fwd, _valid_conv_bwd)


def _conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                          dimension_numbers=None, feature_group_count=1, precision=None):
    """``lax.conv_general_dilated``'s signature as ``nn.Conv`` calls it, for the only case the
    Nature CNN uses (VALID, no dilation or groups, NHWC/HWIO) -> :func:`_valid_conv`."""
    plain = all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))) and feature_group_count == 1
    if padding not in ("VALID", ((0, 0), (0, 0)), [(0, 0), (0, 0)]) or not plain:
        raise NotImplementedError("the Nature CNN's convolution supports VALID padding without dilation or groups")
    return _valid_conv(lhs, rhs, tuple(window_strides))


class NatureCNN(nn.Module):
    """uint8 frames [N, H, W, C] -> features [N, 512]."""

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32) * (1.0 / 255.0)
        for features, size, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            x = nn.relu(nn.Conv(features, (size, size), (stride, stride), padding="VALID",
                                kernel_init=_gain(np.sqrt(2)), conv_general_dilated=_conv_general_dilated)(x))
        x = x.reshape((x.shape[0], -1))
        return nn.relu(Dense(512, kernel_init=_gain(np.sqrt(2)))(x))


class CNNActorCritic(nn.Module):
    """Shared Nature-CNN torso; ``policy(obs)`` -> Categorical, ``values(obs)`` -> (V [N], u [N])."""

    action_space: ActionSpace
    hidden_sizes: Sequence[int]
    activation: str
    median_hidden_sizes: Sequence[int]
    with_median: bool

    def setup(self):
        self.torso = NatureCNN()
        self.pi_mlp = MLP(self.hidden_sizes, self.activation)
        self.vf_mlp = MLP(self.hidden_sizes, self.activation)
        self.pi_head = _head(self.action_space.n, 0.01)
        self.vf_head = _head(1, 1.0)
        if self.with_median:
            self.median_trunk = MLP(self.median_hidden_sizes, self.activation, MEDIAN_GAIN)
            self.median_head = _head(1, 1.0)

    def __call__(self, obs):
        """(policy, (V, u)) with the torso run once: the learner's loss calls this."""
        features = self.torso(obs)
        return self._policy(features), self._values(features)

    def policy(self, obs):
        return self._policy(self.torso(obs))

    def values(self, obs):
        return self._values(self.torso(obs))

    def _policy(self, features):
        return Categorical(self.pi_head(self.pi_mlp(features)))

    def _values(self, features):
        latent = self.vf_mlp(features)
        value = self.vf_head(latent)[:, 0]
        if not self.with_median:
            return value, jnp.zeros_like(value)
        return value, self.median_head(self.median_trunk(latent))[:, 0]


def make_cnn_network(config, action_space: ActionSpace) -> CNNActorCritic:
    """The Nature-CNN actor-critic for ``config``: ``hidden_sizes`` are the policy and value
    MLPs after the torso (empty: linear heads)."""
    if not isinstance(action_space, Discrete):
        raise ValueError(f"{config.env}: the Nature-CNN policy supports discrete actions only")
    if config.normalize_obs:
        raise ValueError(f"`normalize_obs` does not apply to image observations ({config.env}): the network scales "
                         "uint8 frames by 1/255; turn `normalize_obs` off")
    if config.separate_median:  # the median reads the shared CNN's latent, through median_hidden_sizes
        raise ValueError(f"`separate_median` does not apply to image observations ({config.env}): the median head "
                         "reads the CNN's value latent; turn `separate_median` off")
    return CNNActorCritic(
        action_space=action_space,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        median_hidden_sizes=tuple(config.median_hidden_sizes),
        with_median=config.algorithm.uses_median(config),
    )
