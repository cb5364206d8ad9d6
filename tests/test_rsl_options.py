"""rsl_rl training features on the JAX suites: adaptive-KL lr, BPO's rsl options (no torch needed)."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import losses, lr_schedule
from bpo_jax.config import Config, ConfigError
from bpo_jax.networks import Categorical, DiagGaussian, make_network
from bpo_jax.train import make_trainer


def _numpy_rule(lr, kl, desired):
    """rsl_rl's PPO.update: the adaptive-KL rule, one minibatch."""
    if kl > desired * 2.0:
        return max(1e-5, lr / 1.5)
    if desired / 2.0 > kl > 0.0:
        return min(1e-2, lr * 1.5)
    return lr


def test_adapt_lr_matches_the_numpy_rule():
    rng = np.random.default_rng(0)
    lr = 1e-3
    for kl in np.concatenate([rng.exponential(0.01, 300), [0.0, 0.005, 0.02, 0.0200001, 0.0049999]]):
        expected = _numpy_rule(lr, float(kl), 0.01)
        got = float(lr_schedule.adapt_lr(jnp.float32(lr), jnp.float32(kl), 0.01))
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        lr = expected


def test_policy_kl_gaussian_and_categorical():
    rng = np.random.default_rng(1)
    m0, m1 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    s0, s1 = np.exp(rng.normal(size=3) * 0.3), np.exp(rng.normal(size=3) * 0.3)
    got = lr_schedule.policy_kl(DiagGaussian(jnp.asarray(m0), jnp.asarray(s0)), DiagGaussian(jnp.asarray(m1), jnp.asarray(s1)))
    ref = np.sum(np.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5, axis=-1)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    l0, l1 = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    p0, p1 = np.exp(l0) / np.exp(l0).sum(-1, keepdims=True), np.exp(l1) / np.exp(l1).sum(-1, keepdims=True)
    got = lr_schedule.policy_kl(Categorical(jnp.asarray(l0)), Categorical(jnp.asarray(l1)))
    np.testing.assert_allclose(got, np.sum(p0 * np.log(p0 / p1), -1), rtol=1e-5)


@pytest.mark.parametrize("algo,desired", [("ppo", 1e-9), ("bpo", 1e3)])
def test_adaptive_lr_moves_down_and_up_inside_the_update(algo, desired):
    """One update of E x M minibatches: the first sees KL = 0 (lr kept), each later one divides
    (desired_kl tiny) or multiplies (desired_kl huge) the lr by 1.5, within [1e-5, 1e-2]."""
    base = Config(algo=algo, num_envs=4, num_steps=16, num_epochs=2, num_minibatches=2, total_steps=64 * 3,
                  lr=1e-3, lr_schedule="adaptive", desired_kl=desired)
    steps = base.num_epochs * base.num_minibatches
    expected = max(1e-5, 1e-3 / 1.5 ** (steps - 1)) if desired < 1 else min(1e-2, 1e-3 * 1.5 ** (steps - 1))
    trainer = make_trainer(base)
    state, metrics = jax.jit(trainer.train)(jax.random.key(0))
    lr = np.asarray(metrics["lr"])
    np.testing.assert_allclose(lr[0], expected, rtol=1e-5)
    assert np.all(np.isfinite(metrics["policy_kl"]))
    if desired > 1:
        assert lr[-1] == pytest.approx(1e-2)  # clamped at the upper bound
    else:
        assert lr[-1] < lr[0]


def test_js_and_tv_terms():
    lr = jnp.array([0.1, -0.2, 0.05])
    tgt = jnp.array([1.1, 0.9, 1.0])
    w = jnp.ones(3)
    js = losses.bpo_divergence(lr, tgt, w, "JS")
    np.testing.assert_allclose(js, 0.5 * (losses.bpo_divergence(lr, tgt, w, "RKL") + losses.bpo_divergence(lr, tgt, w, "FKL")))
    with pytest.raises(ConfigError, match="needs `eps_low` < 1"):
        Config(loss_type="JS", eps_low=1.0).validate()
    with pytest.raises(ConfigError, match="tv_loss_coef"):
        Config(tv_loss_coef=-1.0).validate()
    with pytest.raises(ConfigError, match="applies only to `algo` bpo"):
        Config(algo="ppo", recompute_returns=True).validate()
    with pytest.raises(ConfigError, match="lr_schedule"):
        Config(lr_schedule="cosine").validate()


def test_schedule_defaults_follow_anneal_lr():
    assert Config().schedule == "linear" and Config(anneal_lr=False).schedule == "constant"
    assert Config(lr_schedule="constant").schedule == "constant"


def test_separate_median_and_asymmetric_split_shapes():
    from bpo_jax.envs.base import Box
    cfg = Config(separate_median=True, policy_obs_dim=3, hidden_sizes=(8,))
    net = make_network(cfg, Box(-1.0, 1.0, (2,)))
    params = net.init(jax.random.key(0), jnp.zeros((1, 7)))["params"]
    assert params["actor"]["MLP_0"]["Dense_0"]["kernel"].shape == (3, 8)
    assert params["critic"]["MLP_0"]["Dense_0"]["kernel"].shape == (4, 8)
    assert params["critic"]["median_net"]["Dense_0"]["kernel"].shape == (4, 8)
    assert "median_trunk" not in params["critic"]


def test_bpo_rsl_options_train_finite():
    """recompute_returns, adv_TV + tv term, separate median, adaptive lr together on CartPole
    (4 minibatches: the refresh inside the epoch's minibatch scan)."""
    cfg = Config(algo="bpo", num_envs=4, num_steps=32, total_steps=128 * 3, recompute_returns=True, loss_type="adv_TV",
                 tv_loss_coef=0.5, separate_median=True, lr_schedule="adaptive", logit_clamp=10.0)
    state, metrics = jax.jit(make_trainer(cfg).train)(jax.random.key(1))
    assert all(np.all(np.isfinite(np.asarray(metrics[k]))) for k in ("loss", "median_loss", "lr", "policy_kl"))
