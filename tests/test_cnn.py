"""The Nature-CNN actor-critic (bpo_jax/cnn.py): its convolution against XLA's own, the torso's
size against Mnih et al. (2015), heads, and the settings it refuses."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from bpo_jax import Config
from bpo_jax.cnn import NatureCNN, _valid_conv, make_cnn_network
from bpo_jax.envs.base import Box, Discrete
from bpo_jax.networks import init_params

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("channels,size,features,kernel,stride", [(4, 84, 32, 8, 4), (32, 20, 64, 4, 2), (64, 9, 64, 3, 1)])
def test_convolution_and_both_gradients_equal_xlas(channels, size, features, kernel, stride):
    """The patches-matmul kernel gradient (and the whole VJP) equals autodiff of
    lax.conv_general_dilated on the Nature CNN's three layer shapes."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, size, size, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, features)) / kernel, jnp.float32)
    dy = jnp.asarray(rng.normal(size=(3, (size - kernel) // stride + 1, (size - kernel) // stride + 1, features)),
                     jnp.float32)

    def reference(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), "VALID", dimension_numbers=DIMS)

    ours, ours_vjp = jax.vjp(lambda x, w: _valid_conv(x, w, (stride, stride)), x, w)
    theirs, theirs_vjp = jax.vjp(reference, x, w)
    np.testing.assert_array_equal(ours, theirs)
    for a, b in zip(ours_vjp(dy), theirs_vjp(dy)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_torso_is_the_nature_cnn_on_frames_scaled_by_1_over_255():
    """Mnih et al. (2015)'s torso, checked against a forward pass written out with NumPy
    (im2col + matmul) from the same parameters."""
    frames = np.random.default_rng(1).integers(0, 256, (2, 84, 84, 4)).astype(np.uint8)
    torso = NatureCNN()
    params = init_params(torso, jax.random.key(0), jnp.asarray(frames))
    p = jax.tree.map(np.asarray, params)["params"]
    # conv 32 8x8/4, 64 4x4/2, 64 3x3/1, dense 3136 -> 512, all with biases
    assert [p[f"Conv_{i}"]["kernel"].shape for i in range(3)] == [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64)]
    assert p["Dense_0"]["kernel"].shape == (7 * 7 * 64, 512)

    def conv(x, kernel, bias, stride):
        n, h, w, _ = x.shape
        k = kernel.shape[0]
        oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        cols = np.stack([x[:, i * stride:i * stride + k, j * stride:j * stride + k, :].reshape(n, -1)
                         for i in range(oh) for j in range(ow)], axis=1)  # [N, oh*ow, k*k*C]
        return (cols @ kernel.reshape(-1, kernel.shape[-1]) + bias).reshape(n, oh, ow, -1)

    x = frames.astype(np.float64) / 255.0
    for i, stride in enumerate((4, 2, 1)):
        x = np.maximum(conv(x, p[f"Conv_{i}"]["kernel"], p[f"Conv_{i}"]["bias"], stride), 0.0)
    expected = np.maximum(x.reshape(2, -1) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0.0)
    features = torso.apply(params, jnp.asarray(frames))
    assert features.shape == (2, 512) and features.dtype == jnp.float32
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algo", ["bpo", "ppo"])
def test_heads_shapes_and_the_median_head_only_for_bpo(algo):
    config = Config(env="atari/Pong-v5", algo=algo, hidden_sizes=(16,),
                    median_hidden_sizes=(8,) if algo == "bpo" else ())
    net = make_cnn_network(config, Discrete(6))
    frames = jnp.zeros((5, 84, 84, 4), jnp.uint8)
    params = net.init(jax.random.key(0), frames)
    policy, (value, median) = net.apply(params, frames)
    assert policy.logits.shape == (5, 6) and value.shape == (5,) and median.shape == (5,)
    has_median = "median_head" in params["params"]
    assert has_median == (algo == "bpo")
    if algo == "ppo":
        assert not np.any(np.asarray(median))
    # The shared-torso call equals the separate acting and value calls.
    np.testing.assert_allclose(net.apply(params, frames, method="policy").logits, policy.logits, rtol=1e-6)
    np.testing.assert_allclose(net.apply(params, frames, method="values")[0], value, rtol=1e-6)


def test_init_gains_are_the_references():
    """Digest 3.2's gains: sqrt 2 in the torso and the pi/vf MLPs, 0.01 on the action head, 1 on
    the value head and on every layer of the u net (its hidden layer too)."""
    config = Config(env="atari/Pong-v5", algo="bpo", hidden_sizes=(16,), median_hidden_sizes=(8,))
    net = make_cnn_network(config, Discrete(6))
    params = init_params(net, jax.random.key(1), jnp.zeros((1, 84, 84, 4), jnp.uint8))["params"]
    gains = {("pi_mlp", "Dense_0"): np.sqrt(2), ("vf_mlp", "Dense_0"): np.sqrt(2), ("median_trunk", "Dense_0"): 1.0,
             ("median_head",): 1.0, ("pi_head",): 0.01, ("vf_head",): 1.0, ("torso", "Dense_0"): np.sqrt(2),
             ("torso", "Conv_1"): np.sqrt(2)}
    kernels = {tuple(k.key for k in path[:-1]): np.asarray(leaf, np.float64)
               for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "kernel"}
    for path, gain in gains.items():
        w = kernels[path].reshape(-1, kernels[path].shape[-1])
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(min(w.shape)), atol=1e-4 * gain**2, err_msg=str(path))


def test_settings_the_cnn_cannot_take_are_refused():
    config = Config(env="atari/Pong-v5")
    with pytest.raises(ValueError, match="discrete actions only"):
        make_cnn_network(config, Box(low=-1.0, high=1.0, shape=(2,)))
    with pytest.raises(ValueError, match="normalize_obs"):
        make_cnn_network(config.replace(normalize_obs=True), Discrete(6))
    with pytest.raises(ValueError, match="`separate_median` does not apply to image observations"):  # it was ignored
        make_cnn_network(config.replace(separate_median=True), Discrete(6))
