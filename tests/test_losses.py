"""Loss kernels of bpo_jax.losses against independent NumPy / closed-form references.

Spec: /work/shared/reference/bpo-paper.md, sections 1.5-1.6 (target ratio, median head),
3 (BPO divergences) and 4.1 (PPO as a one-sided hinge).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bpo_jax import losses

# ----------------------------------------------------------------------------- helpers


def np_sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def np_softplus(x):
    x = np.asarray(x, dtype=np.float64)
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def f64(x):
    return np.asarray(x, dtype=np.float64)


BOUNDS = [(0.2, 0.2), (0.3, 0.3), (0.1, 0.4), (0.5, 0.25), (1.0, 3.0)]  # (eps_low, eps_high)


# ----------------------------------------------------------------------------- bpo_target_ratio


@pytest.mark.parametrize("eps_low,eps_high", BOUNDS)
def test_target_ratio_small_lambda_is_sign_form(eps_low, eps_high):
    rng = np.random.default_rng(0)
    q = rng.normal(size=257) * 3.0
    base = rng.normal(size=257) * 3.0
    # keep |q - base| >= 1e-3 so that the logit at lambda = 1e-6 is >= 1e3 in magnitude
    gap = q - base
    gap = np.where(np.abs(gap) < 1e-3, np.sign(gap + 1e-12) * 1e-3, gap)
    q = base + gap
    out = np.asarray(
        losses.bpo_target_ratio(jnp.asarray(q, jnp.float32), jnp.asarray(base, jnp.float32), eps_low, eps_high, 1e-6)
    )
    c_l, c_h = 1.0 - eps_low, 1.0 + eps_high
    expected = np.where(q > base, c_h, c_l)
    assert np.any(q > base) and np.any(q < base)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("eps_low,eps_high", BOUNDS)
def test_target_ratio_large_lambda_is_midpoint(eps_low, eps_high):
    rng = np.random.default_rng(1)
    q = rng.normal(size=64) * 5.0
    base = rng.normal(size=64) * 5.0
    out = np.asarray(losses.bpo_target_ratio(jnp.asarray(q), jnp.asarray(base), eps_low, eps_high, 1e6))
    mid = ((1.0 - eps_low) + (1.0 + eps_high)) / 2.0
    # sigmoid(z) = 1/2 + z/4 + O(z^3): the deviation from the midpoint is (c_h - c_l) * logit / 4
    width = eps_low + eps_high
    tol = width * np.max(np.abs(q - base)) / 1e6 / 4.0 * 1.01 + 2e-6
    np.testing.assert_allclose(out, mid, rtol=0, atol=tol)
    if eps_low == eps_high:
        np.testing.assert_allclose(out, 1.0, rtol=0, atol=tol)


@pytest.mark.parametrize("eps_low,eps_high", BOUNDS)
def test_target_ratio_matches_numpy_sigmoid(eps_low, eps_high):
    rng = np.random.default_rng(2)
    q = rng.normal(size=300) * 4.0
    base = rng.normal(size=300)
    q32, b32 = f64(np.float32(q)), f64(np.float32(base))
    c_l, c_h = 1.0 - eps_low, 1.0 + eps_high
    for lam in (0.05, 1.0, 7.5):
        out = np.asarray(
            losses.bpo_target_ratio(jnp.asarray(q, jnp.float32), jnp.asarray(base, jnp.float32), eps_low, eps_high, lam)
        )
        ref = c_l + (c_h - c_l) * np_sigmoid((q32 - b32) / lam)
        np.testing.assert_allclose(out, ref, rtol=0, atol=5e-6)
        assert np.all(out >= c_l - 1e-6) and np.all(out <= c_h + 1e-6)
        # strictly inside the box for the moderate logits of lambda >= 1
        if lam >= 1.0:
            assert np.all(out > c_l) and np.all(out < c_h)


def test_target_ratio_logit_clamp():
    q = jnp.array([-1e3, -50.0, -0.7, 0.5, 0.9, 40.0, 1e3])
    base = jnp.zeros_like(q)
    eps_low, eps_high, lam, clamp = 0.3, 0.2, 0.1, 10.0
    out = np.asarray(losses.bpo_target_ratio(q, base, eps_low, eps_high, lam, logit_clamp=clamp))
    logit = np.clip(f64(q) / lam, -clamp, clamp)
    ref = 0.7 + 0.5 * np_sigmoid(logit)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # the clamp is active: the extreme entries stop at sigmoid(+-10), visibly inside the box
    assert abs(out[0] - (0.7 + 0.5 * np_sigmoid(-10.0))) < 1e-6
    assert out[0] - 0.7 > 1e-5 and 1.2 - out[-1] > 1e-5
    # and without the clamp they saturate to the bounds
    unclamped = np.asarray(losses.bpo_target_ratio(q, base, eps_low, eps_high, lam))
    np.testing.assert_allclose(unclamped[[0, -1]], [0.7, 1.2], atol=1e-6)
    # entries inside the clamp are unaffected
    np.testing.assert_allclose(out[2:5], unclamped[2:5], atol=1e-7)


def test_target_ratio_is_detached():
    q = jnp.array([0.3, -1.2, 2.0, 0.0])
    b = jnp.array([0.1, 0.4, -0.5, 0.2])

    def f(q_, b_):
        return jnp.sum(losses.bpo_target_ratio(q_, b_, 0.2, 0.2, 1.0) * jnp.arange(1.0, 5.0))

    gq, gb = jax.grad(f, argnums=(0, 1))(q, b)
    np.testing.assert_array_equal(np.asarray(gq), 0.0)
    np.testing.assert_array_equal(np.asarray(gb), 0.0)
    # sanity: the same expression without stop_gradient would have a non-zero gradient here
    g_live = jax.grad(lambda q_: jnp.sum(0.8 + 0.4 * jax.nn.sigmoid(q_ - b)))(q)
    assert np.all(np.abs(np.asarray(g_live)) > 1e-3)


# ----------------------------------------------------------------------------- bpo_divergence


def np_divergence(log_ratio, target, weight, loss_type):
    lr, t, w = f64(log_ratio), f64(target), f64(weight)
    rho = np.exp(lr)
    return {
        "adv_TV": np.abs(rho - t) * np.abs(w),
        "TV": np.abs(rho - t),
        "log_TV": np.abs(lr - np.log(t)),
        "MSE": (rho - t) ** 2,
        "RKL": t * (np.log(t) - lr),
        "FKL": rho * (lr - np.log(t)),
        "JS": 0.5 * (t * (np.log(t) - lr) + rho * (lr - np.log(t))),  # rsl_rl BPO's (RKL + FKL) / 2
    }[loss_type]


def test_loss_types_list():
    assert set(losses.LOSS_TYPES) == {"adv_TV", "TV", "log_TV", "MSE", "RKL", "FKL", "JS"}


@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_divergence_matches_numpy(loss_type):
    rng = np.random.default_rng(3)
    n = 500
    log_ratio = rng.normal(size=n) * 0.4
    target = rng.uniform(0.6, 1.4, size=n)
    weight = rng.normal(size=n) * 3.0
    with jax.enable_x64(True):
        out = np.asarray(
            losses.bpo_divergence(jnp.asarray(log_ratio), jnp.asarray(target), jnp.asarray(weight), loss_type)
        )
    assert out.dtype == np.float64
    ref = np_divergence(log_ratio, target, weight, loss_type)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    # float32 path too
    out32 = np.asarray(
        losses.bpo_divergence(
            jnp.asarray(log_ratio, jnp.float32), jnp.asarray(target, jnp.float32), jnp.asarray(weight, jnp.float32), loss_type
        )
    )
    np.testing.assert_allclose(out32, ref, rtol=1e-5, atol=1e-5)


def test_divergence_adv_tv_weight_sign_irrelevant():
    lr = jnp.array([0.1, -0.2, 0.3])
    t = jnp.array([1.2, 0.8, 1.0])
    w = jnp.array([2.0, -3.0, 0.5])
    a = losses.bpo_divergence(lr, t, w, "adv_TV")
    b = losses.bpo_divergence(lr, t, -w, "adv_TV")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=0)
    np.testing.assert_allclose(np.asarray(a), np.abs(np.exp(f64(lr)) - f64(t)) * np.abs(f64(w)), rtol=1e-5)


@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_divergence_zero_at_target(loss_type):
    target = jnp.array([0.7, 0.9, 1.0, 1.1, 1.3])
    weight = jnp.array([1.5, -2.0, 0.3, 4.0, -1.0])
    with jax.enable_x64(True):
        t64 = jnp.asarray(np.asarray(target), jnp.float64)
        w64 = jnp.asarray(np.asarray(weight), jnp.float64)
        val = np.asarray(losses.bpo_divergence(jnp.log(t64), t64, w64, loss_type))
    np.testing.assert_allclose(val, 0.0, atol=1e-14)


def test_divergence_mse_zero_gradient_at_target():
    target = jnp.array([0.7, 0.9, 1.0, 1.1, 1.3])
    w = jnp.ones_like(target)
    g = jax.grad(lambda lr: jnp.sum(losses.bpo_divergence(lr, target, w, "MSE")))(jnp.log(target))
    np.testing.assert_allclose(np.asarray(g), 0.0, atol=1e-6)
    # ... and non-zero away from the target (the test can fail)
    g2 = jax.grad(lambda lr: jnp.sum(losses.bpo_divergence(lr, target, w, "MSE")))(jnp.log(target) + 0.1)
    assert np.all(np.abs(np.asarray(g2)) > 1e-3)


@pytest.mark.parametrize("loss_type", ["adv_TV", "TV", "log_TV", "MSE"])
def test_divergence_per_sample_minimum_at_target(loss_type):
    """For the per-sample divergences the target is the strict minimiser on both sides."""
    target = jnp.array([0.7, 0.9, 1.0, 1.1, 1.3])
    w = jnp.array([1.5, -2.0, 0.3, 4.0, -1.0])
    at = np.asarray(losses.bpo_divergence(jnp.log(target), target, w, loss_type))
    for delta in (1e-3, 1e-2, 0.2):
        up = np.asarray(losses.bpo_divergence(jnp.log(target) + delta, target, w, loss_type))
        dn = np.asarray(losses.bpo_divergence(jnp.log(target) - delta, target, w, loss_type))
        assert np.all(up > at) and np.all(dn > at)


@pytest.mark.parametrize("loss_type", ["adv_TV", "TV", "log_TV"])
def test_divergence_l1_one_sided_derivatives(loss_type):
    """The L1 losses have a kink at the target: right derivative > 0 > left derivative."""
    target = np.array([0.7, 0.9, 1.0, 1.1, 1.3])
    w = np.array([1.5, -2.0, 0.3, 4.0, -1.0])
    h = 1e-4
    with jax.enable_x64(True):
        t, ww = jnp.asarray(target), jnp.asarray(w)
        lr0 = jnp.log(t)
        f = lambda lr: np.asarray(losses.bpo_divergence(lr, t, ww, loss_type))  # noqa: E731
        right = (f(lr0 + h) - f(lr0)) / h
        left = (f(lr0) - f(lr0 - h)) / h
        # autodiff just right / left of the kink
        g = jax.grad(lambda lr: jnp.sum(losses.bpo_divergence(lr, t, ww, loss_type)))
        g_right = np.asarray(g(lr0 + 1e-6))
        g_left = np.asarray(g(lr0 - 1e-6))
    assert np.all(right > 0) and np.all(left < 0)
    assert np.all(g_right > 0) and np.all(g_left < 0)
    # closed-form one-sided slopes w.r.t. log_ratio: rho* |w| (adv_TV), rho* (TV), 1 (log_TV)
    slope = {"adv_TV": target * np.abs(w), "TV": target, "log_TV": np.ones_like(target)}[loss_type]
    np.testing.assert_allclose(g_right, slope, rtol=1e-4)
    np.testing.assert_allclose(g_left, -slope, rtol=1e-4)


def _normalised_ratio_pair(rng, k):
    """pi0, rho, rho* on k actions with pi0*rho and pi0*rho* both normalised."""
    pi0 = rng.dirichlet(np.ones(k) * 2.0)
    pi = rng.dirichlet(np.ones(k) * 2.0)
    pi_star = rng.dirichlet(np.ones(k) * 2.0)
    return pi0, pi / pi0, pi_star / pi0, pi, pi_star


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rkl_fkl_are_true_kl_under_pi0(seed):
    rng = np.random.default_rng(seed)
    pi0, rho, rho_star, pi, pi_star = _normalised_ratio_pair(rng, 5)
    with jax.enable_x64(True):
        lr, t, w = jnp.asarray(np.log(rho)), jnp.asarray(rho_star), jnp.ones(5)
        rkl = float(jnp.sum(jnp.asarray(pi0) * losses.bpo_divergence(lr, t, w, "RKL")))
        fkl = float(jnp.sum(jnp.asarray(pi0) * losses.bpo_divergence(lr, t, w, "FKL")))
    kl_star_pi = np.sum(pi_star * np.log(pi_star / pi))  # KL(pi* || pi)
    kl_pi_star = np.sum(pi * np.log(pi / pi_star))  # KL(pi || pi*)
    np.testing.assert_allclose(rkl, kl_star_pi, rtol=1e-10)
    np.testing.assert_allclose(fkl, kl_pi_star, rtol=1e-10)
    assert rkl > 0 and fkl > 0
    assert abs(rkl - fkl) > 1e-6  # they are different divergences


@pytest.mark.parametrize("loss_type", ["RKL", "FKL"])
def test_kl_losses_stationary_at_target_on_the_simplex(loss_type):
    """RKL / FKL are stationary at pi = pi* as functions of the policy logits (pi normalised).

    Per sample these losses are not minimised at rho = rho* (their derivative w.r.t.
    log_ratio there is -rho* resp. +rho*); only the pi0-average over a normalised pi is.
    """
    rng = np.random.default_rng(7)
    k = 6
    pi0 = rng.dirichlet(np.ones(k) * 2.0)
    pi_star = rng.dirichlet(np.ones(k) * 2.0)
    with jax.enable_x64(True):
        log_pi0 = jnp.log(jnp.asarray(pi0))
        t = jnp.asarray(pi_star / pi0)
        w = jnp.ones(k)

        def avg_loss(logits):
            log_pi = jax.nn.log_softmax(logits)
            return jnp.sum(jnp.exp(log_pi0) * losses.bpo_divergence(log_pi - log_pi0, t, w, loss_type))

        logits_star = jnp.log(jnp.asarray(pi_star))
        g = np.asarray(jax.grad(avg_loss)(logits_star))
        v_star = float(avg_loss(logits_star))
        vals = [float(avg_loss(logits_star + 0.05 * jnp.asarray(rng.normal(size=k)))) for _ in range(20)]
    np.testing.assert_allclose(g, 0.0, atol=1e-12)
    assert abs(v_star) < 1e-14
    assert min(vals) > 0.0


def test_divergence_unknown_type_raises():
    with pytest.raises(ValueError):
        losses.bpo_divergence(jnp.zeros(3), jnp.ones(3), jnp.ones(3), "Hellinger")
    with pytest.raises(ValueError):
        losses.bpo_divergence(jnp.zeros(3), jnp.ones(3), jnp.ones(3), "adv_tv")


# ----------------------------------------------------------------------------- PPO


def hinge(rho, adv, eps_low, eps_high):
    """Digest section 4.1 one-sided hinge, generalised to asymmetric bounds."""
    rho, adv = f64(rho), f64(adv)
    s = np.sign(adv)
    tgt = np.where(adv > 0, 1.0 + eps_high, 1.0 - eps_low)
    return np.abs(adv) * np.maximum(0.0, s * (tgt - rho))


def hinge_grad_log_ratio(rho, adv, eps_low, eps_high):
    rho, adv = f64(rho), f64(adv)
    d_rho = np.where(adv > 0, np.where(rho < 1.0 + eps_high, -adv, 0.0), np.where(rho > 1.0 - eps_low, -adv, 0.0))
    return rho * d_rho


PPO_EPS = [(0.2, 0.2), (0.1, 0.3), (0.3, 0.1)]


def _rho_grid(eps_low, eps_high):
    """rho values on both sides of the box and inside it, at least 0.01 away from the kinks."""
    grid = np.concatenate([np.linspace(0.3, 2.0, 171)])
    kinks = np.array([1.0 - eps_low, 1.0 + eps_high])
    keep = np.min(np.abs(grid[:, None] - kinks[None, :]), axis=1) > 0.01
    grid = grid[keep]
    assert np.any(grid < kinks[0]) and np.any(grid > kinks[1]) and np.any((grid > kinks[0]) & (grid < kinks[1]))
    return grid


@pytest.mark.parametrize("eps_low,eps_high", PPO_EPS)
def test_ppo_matches_direct_formula(eps_low, eps_high):
    rng = np.random.default_rng(4)
    rho = np.exp(rng.normal(size=400) * 0.5)
    adv = rng.normal(size=400) * 2.0
    with jax.enable_x64(True):
        out = np.asarray(losses.ppo_policy_loss(jnp.log(jnp.asarray(rho)), jnp.asarray(adv), eps_low, eps_high))
    ref = -np.minimum(rho * adv, np.clip(rho, 1.0 - eps_low, 1.0 + eps_high) * adv)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eps_low,eps_high", PPO_EPS)
def test_ppo_equals_hinge_up_to_constant(eps_low, eps_high):
    rho = _rho_grid(eps_low, eps_high)
    for adv in (1.7, 0.4, -0.4, -2.3):
        a = np.full_like(rho, adv)
        with jax.enable_x64(True):
            lr = jnp.log(jnp.asarray(rho))
            ppo = np.asarray(losses.ppo_policy_loss(lr, jnp.asarray(a), eps_low, eps_high))
            g = np.asarray(jax.grad(lambda x: jnp.sum(losses.ppo_policy_loss(x, jnp.asarray(a), eps_low, eps_high)))(lr))
        h = hinge(rho, a, eps_low, eps_high)
        diff = ppo - h
        # constant in rho: all value differences agree
        np.testing.assert_allclose(diff, diff[0], atol=1e-12)
        np.testing.assert_allclose(ppo[:, None] - ppo[None, :], h[:, None] - h[None, :], atol=1e-12)
        # the constant itself: -(1+eps_high) A for A > 0, (1-eps_low)|A| for A < 0
        const = -(1.0 + eps_high) * adv if adv > 0 else (1.0 - eps_low) * abs(adv)
        np.testing.assert_allclose(diff[0], const, atol=1e-12)
        # gradient w.r.t. log_ratio = rho * dl'/drho
        np.testing.assert_allclose(g, hinge_grad_log_ratio(rho, a, eps_low, eps_high), rtol=1e-12, atol=1e-12)
        # the hinge pulls on the "wrong" side outside the box and is flat past the target
        if adv > 0:
            assert np.all(g[rho < 1.0 - eps_low] < 0) and np.all(g[rho > 1.0 + eps_high] == 0)
        else:
            assert np.all(g[rho > 1.0 + eps_high] > 0) and np.all(g[rho < 1.0 - eps_low] == 0)


# ----------------------------------------------------------------------------- median / quantile head


def test_median_loss_p_half_closed_form():
    x = np.concatenate([np.linspace(-60, 60, 241), [0.0, 1e-3, -1e-3]])
    with jax.enable_x64(True):
        out = np.asarray(losses.median_loss(jnp.asarray(x), jnp.zeros_like(jnp.asarray(x)), 0.5))
    ref = np_softplus(-np.abs(x)) + np.abs(x) / 2.0
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)
    # also log(2 cosh(x/2)), the identity quoted in the digest, for moderate x
    xm = x[np.abs(x) < 30]
    np.testing.assert_allclose(out[np.abs(x) < 30], np.log(2.0 * np.cosh(xm / 2.0)), rtol=1e-12)


def test_median_loss_naive_form():
    rng = np.random.default_rng(5)
    q = rng.normal(size=200) * 8.0
    u = rng.normal(size=200) * 3.0
    x = q - u
    for p in (0.1, 0.2, 0.5, 0.75, 0.9):
        with jax.enable_x64(True):
            out = np.asarray(losses.median_loss(jnp.asarray(q), jnp.asarray(u), p))
        ref = np.log1p(np.exp(x)) - p * x
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_median_loss_finite_for_huge_inputs(p):
    q = jnp.array([1e4, -1e4, 3e4, -3e4], jnp.float32)
    u = jnp.array([0.0, 0.0, -1e4, 1e4], jnp.float32)
    val = np.asarray(losses.median_loss(q, u, p))
    g = np.asarray(jax.grad(lambda uu: jnp.sum(losses.median_loss(q, uu, p)))(u))
    assert np.all(np.isfinite(val)) and np.all(np.isfinite(g))
    x = f64(q) - f64(u)
    np.testing.assert_allclose(val, np.maximum(x, 0.0) - p * x, rtol=1e-6)
    # d/du = p - sigmoid(x): p - 1 for x -> +inf, p for x -> -inf
    np.testing.assert_allclose(g, np.where(x > 0, p - 1.0, p), atol=1e-6)


def _fit_threshold(samples, p, steps=4000):
    q = jnp.asarray(samples, jnp.float32)
    sched = optax.exponential_decay(2.0, transition_steps=steps, decay_rate=1e-3)
    opt = optax.adam(sched)
    u0 = jnp.zeros(())
    loss_fn = lambda u: jnp.mean(losses.median_loss(q, u, p))  # noqa: E731

    @jax.jit
    def run(u):
        def step(carry, _):
            u, st = carry
            g = jax.grad(loss_fn)(u)
            upd, st = opt.update(g, st, u)
            return (optax.apply_updates(u, upd), st), None

        (u, _), _ = jax.lax.scan(step, (u, opt.init(u)), None, length=steps)
        return u

    return float(run(u0))


def test_median_loss_minimiser_is_sample_median():
    rng = np.random.default_rng(6)
    samples = rng.exponential(size=1001) * 100.0
    u = _fit_threshold(samples, 0.5)
    med = np.median(samples)
    assert abs(med - np.mean(samples)) > 10.0  # skewed: mean and median are far apart
    assert abs(u - med) < 1.0, (u, med)


def test_median_loss_minimiser_is_upper_quantile_for_p():
    rng = np.random.default_rng(8)
    samples = rng.exponential(size=1001) * 100.0
    p = 0.2
    u = _fit_threshold(samples, p)
    q_hi = np.quantile(samples, 1.0 - p)  # (1-p)-quantile: a fraction p of samples above u
    q_lo = np.quantile(samples, p)
    assert abs(q_hi - q_lo) > 50.0
    assert abs(u - q_hi) < 2.0, (u, q_hi)
    # the stationarity condition mean sigmoid(Q - u) = p of the docstring
    np.testing.assert_allclose(np.mean(np_sigmoid(samples - u)), p, atol=2e-3)


def test_quantile_level():
    assert float(losses.quantile_level(0.2, 0.2)) == pytest.approx(0.5, abs=1e-12)
    assert float(losses.quantile_level(0.37, 0.37)) == pytest.approx(0.5, abs=1e-12)
    # general formula p = (1 - c_l)/(c_h - c_l)
    for el, eh in [(0.3, 0.5), (0.1, 0.9), (0.25, 0.05)]:
        c_l, c_h = 1 - el, 1 + eh
        assert float(losses.quantile_level(el, eh)) == pytest.approx((1 - c_l) / (c_h - c_l), rel=1e-12)
    # CEM limit c_l = 0, c_h = 1/p_elite
    for p_elite in (0.05, 0.1, 0.25, 0.5):
        assert float(losses.quantile_level(1.0, 1.0 / p_elite - 1.0)) == pytest.approx(p_elite, rel=1e-12)


# ----------------------------------------------------------------------------- value loss


def test_value_loss_unclipped():
    rng = np.random.default_rng(9)
    v, vo, r = rng.normal(size=(3, 100))
    with jax.enable_x64(True):
        out = np.asarray(losses.value_loss(jnp.asarray(v), jnp.asarray(vo), jnp.asarray(r), None))
    np.testing.assert_allclose(out, (v - r) ** 2, rtol=1e-13)


@pytest.mark.parametrize("clip_eps", [0.05, 0.2, 1.0])
def test_value_loss_clipped(clip_eps):
    rng = np.random.default_rng(10)
    v, vo, r = rng.normal(size=(3, 400))
    with jax.enable_x64(True):
        out = np.asarray(losses.value_loss(jnp.asarray(v), jnp.asarray(vo), jnp.asarray(r), clip_eps))
    clipped = vo + np.clip(v - vo, -clip_eps, clip_eps)
    ref = np.maximum((v - r) ** 2, (clipped - r) ** 2)
    np.testing.assert_allclose(out, ref, rtol=1e-13)
    # the clip makes a difference on some samples
    assert np.sum(ref > (v - r) ** 2 + 1e-9) > 10
