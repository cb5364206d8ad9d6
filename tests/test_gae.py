"""bpo_jax.losses.gae against a plain NumPy backwards recursion.

Semantics (env guarantees truncated => not terminated):
  delta_t = r_t + gamma * next_values_t * (1 - terminated_t) - values_t
  A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},  done = terminated | truncated
  returns = A + values
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import losses


def gae_reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Per-environment backwards loop in float64."""
    rewards, values, next_values = (np.asarray(x, np.float64) for x in (rewards, values, next_values))
    terminated = np.asarray(terminated, bool)
    truncated = np.asarray(truncated, bool)
    T, B = rewards.shape
    adv = np.zeros((T, B))
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, b] else gamma * next_values[t, b]
            delta = rewards[t, b] + bootstrap - values[t, b]
            if terminated[t, b] or truncated[t, b]:
                running = delta  # the trace never crosses an episode boundary
            else:
                running = delta + gamma * lam * running
            adv[t, b] = running
    return adv, adv + values


def make_rollout(rng, T, B, p_term=0.08, p_trunc=0.06):
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    # consistent with an auto-resetting env: next_values_t = values_{t+1} except where the
    # episode ended (there the value of the true final observation differs from the reset one)
    next_values = np.concatenate([values[1:], rng.normal(size=(1, B))], axis=0)
    u = rng.uniform(size=(T, B))
    terminated = u < p_term
    truncated = (u >= p_term) & (u < p_term + p_trunc)  # disjoint: truncated => not terminated
    ended = terminated | truncated
    next_values = np.where(ended, rng.normal(size=(T, B)) * 3.0, next_values)
    # make sure flags appear mid-rollout in every test rollout
    terminated[T // 3, 0] = True
    truncated[T // 3, 0] = False
    truncated[T // 2, B - 1] = True
    terminated[T // 2, B - 1] = False
    assert not np.any(terminated & truncated)
    return rewards, values, next_values, terminated, truncated


_gae_jit = jax.jit(losses.gae)  # one compile per shape/dtype; gamma, lambda are traced


def run_gae(rewards, values, next_values, terminated, truncated, gamma, lam, jit=True):
    fn = _gae_jit if jit else losses.gae
    adv, ret = fn(
        jnp.asarray(rewards),
        jnp.asarray(values),
        jnp.asarray(next_values),
        jnp.asarray(terminated),
        jnp.asarray(truncated),
        gamma,
        lam,
    )
    return np.asarray(adv), np.asarray(ret)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (0.8, 1.0), (1.0, 0.9), (0.999, 0.5)])
def test_gae_matches_numpy_loop_float64(gamma, lam):
    rng = np.random.default_rng(int(gamma * 1000) + int(lam * 10))
    T, B = 37, 5
    ro = make_rollout(rng, T, B)
    with jax.enable_x64(True):
        adv, ret = run_gae(*ro, gamma, lam)
        if gamma == 0.99:  # the un-jitted (eager) path once
            adv_e, ret_e = run_gae(*ro, gamma, lam, jit=False)
            np.testing.assert_allclose(adv_e, adv, rtol=1e-12, atol=1e-12)
    assert adv.dtype == np.float64 and adv.shape == (T, B) and ret.shape == (T, B)
    ref_adv, ref_ret = gae_reference(*ro, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-12, atol=1e-12)


def test_gae_matches_numpy_loop_float32():
    rng = np.random.default_rng(123)
    ro = make_rollout(rng, 64, 8)
    ro32 = tuple(np.asarray(x, np.float32) if x.dtype != bool else x for x in ro)
    adv, ret = run_gae(*ro32, 0.99, 0.95)
    assert adv.dtype == np.float32
    ref_adv, ref_ret = gae_reference(*ro32, 0.99, 0.95)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-4, atol=1e-4)


def test_gae_lambda_limits():
    """lambda = 0 gives one-step TD errors; lambda = 1, no dones, gives discounted MC returns minus V."""
    rng = np.random.default_rng(5)
    T, B = 37, 5
    r = rng.normal(size=(T, B))
    v = rng.normal(size=(T, B))
    nv = np.concatenate([v[1:], rng.normal(size=(1, B))], axis=0)
    no = np.zeros((T, B), bool)
    gamma = 0.9
    with jax.enable_x64(True):
        adv0, _ = run_gae(r, v, nv, no, no, gamma, 0.0)
        adv1, ret1 = run_gae(r, v, nv, no, no, gamma, 1.0)
    np.testing.assert_allclose(adv0, r + gamma * nv - v, rtol=1e-12)
    mc = np.zeros((T, B))
    g = nv[-1]
    for t in reversed(range(T)):
        g = r[t] + gamma * g
        mc[t] = g
    np.testing.assert_allclose(ret1, mc, rtol=1e-10, atol=1e-12)


def test_truncation_bootstraps_from_final_observation_value():
    """On a truncated step the bootstrap is next_values[t] (true final obs), not values[t+1] (reset obs)."""
    gamma, lam = 0.9, 0.8
    T = 4
    rewards = np.array([[1.0], [2.0], [0.5], [-1.0]])
    values = np.array([[0.3], [0.7], [-7.0], [0.2]])  # values[2] is V(reset observation)
    next_values = np.array([[0.7], [5.0], [0.2], [0.4]])  # next_values[1] is V(true final observation)
    terminated = np.zeros((T, 1), bool)
    truncated = np.zeros((T, 1), bool)
    truncated[1, 0] = True
    with jax.enable_x64(True):
        adv, ret = run_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # the truncated step: bootstrap with 5.0, and no trace from the next episode
    a1 = 2.0 + gamma * 5.0 - 0.7
    assert adv[1, 0] == pytest.approx(a1, abs=1e-12)
    wrong = 2.0 + gamma * (-7.0) - 0.7
    assert abs(adv[1, 0] - wrong) > 1.0
    # the step before still flows into the truncated step's advantage
    d0 = 1.0 + gamma * 0.7 - 0.3
    assert adv[0, 0] == pytest.approx(d0 + gamma * lam * a1, abs=1e-12)
    # the next episode is unaffected by what came before
    d3 = -1.0 + gamma * 0.4 - 0.2
    d2 = 0.5 + gamma * 0.2 - (-7.0)
    assert adv[3, 0] == pytest.approx(d3, abs=1e-12)
    assert adv[2, 0] == pytest.approx(d2 + gamma * lam * d3, abs=1e-12)
    np.testing.assert_allclose(ret, adv + values, atol=1e-12)


def test_termination_does_not_bootstrap():
    gamma, lam = 0.95, 0.9
    rewards = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    values = np.array([[0.5, 0.5], [0.25, 0.25], [9.0, 9.0]])
    next_values = np.array([[0.25, 0.25], [100.0, 100.0], [1.0, 1.0]])
    terminated = np.array([[False, False], [True, False], [False, False]])
    truncated = np.array([[False, False], [False, True], [False, False]])
    with jax.enable_x64(True):
        adv, _ = run_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # env 0 terminated at t=1: next value ignored; env 1 truncated at t=1: next value used
    assert adv[1, 0] == pytest.approx(2.0 - 0.25, abs=1e-12)
    assert adv[1, 1] == pytest.approx(2.0 + gamma * 100.0 - 0.25, abs=1e-12)
    # in both cases the t=0 advantage chains into t=1 (same episode)
    for b in range(2):
        assert adv[0, b] == pytest.approx(1.0 + gamma * 0.25 - 0.5 + gamma * lam * adv[1, b], abs=1e-12)
    # and t=2 (new episode) is identical for both envs
    assert adv[2, 0] == pytest.approx(adv[2, 1], abs=1e-12)


def test_gae_jit_with_traced_gamma_lambda():
    rng = np.random.default_rng(77)
    ro = make_rollout(rng, 20, 4)
    ro32 = tuple(np.asarray(x, np.float32) if x.dtype != bool else x for x in ro)
    jitted = jax.jit(losses.gae)
    for gamma, lam in [(0.99, 0.95), (0.9, 0.5)]:
        adv, ret = jitted(*(jnp.asarray(x) for x in ro32), jnp.float32(gamma), jnp.float32(lam))
        ref_adv, ref_ret = gae_reference(*ro32, gamma, lam)
        np.testing.assert_allclose(np.asarray(adv), ref_adv, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(ret), ref_ret, rtol=1e-4, atol=1e-4)
    # gradients flow through traced gamma / lambda (they are genuinely used)
    g = jax.jit(
        jax.grad(lambda gm, lm: jnp.sum(losses.gae(*(jnp.asarray(x) for x in ro32), gm, lm)[0]), argnums=(0, 1))
    )(jnp.float32(0.9), jnp.float32(0.5))
    assert all(np.isfinite(float(x)) and abs(float(x)) > 1e-6 for x in g)
    # vmapped over gamma
    gammas = jnp.array([0.9, 0.99], jnp.float32)
    advs, _ = jax.jit(jax.vmap(lambda gm: losses.gae(*(jnp.asarray(x) for x in ro32), gm, jnp.float32(0.95))))(gammas)
    for i, gm in enumerate([0.9, 0.99]):
        np.testing.assert_allclose(np.asarray(advs[i]), gae_reference(*ro32, gm, 0.95)[0], rtol=1e-4, atol=1e-4)
