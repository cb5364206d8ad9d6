"""The BRRL theorems on small random tabular MDPs, computed exactly with NumPy (no sampling).

Spec: /work/shared/reference/bpo-paper.md sections 1.5 (analytic optimum), 2.1 (Theorem 4.2),
2.2 (asymmetric and regularised improvement) and 4.2 (CEM limit).  d_pi is the
UNNORMALISED discounted state visitation sum_t gamma^t P(s_t = s) from d0, and
eta(pi) = E_{s~d0}[V_pi(s)].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import losses

GAMMA = 0.9
N_S, N_A = 5, 4


# ----------------------------------------------------------------------------- tabular helpers


def random_mdp(seed, n_s=N_S, n_a=N_A):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_s), size=(n_s, n_a))  # P[s, a, s']
    R = rng.normal(size=(n_s, n_a))
    d0 = rng.dirichlet(np.ones(n_s))
    return P, R, d0, rng


def policy_eval(P, R, pi, gamma=GAMMA):
    """Exact V_pi, Q_pi by a linear solve."""
    n_s = R.shape[0]
    P_pi = np.einsum("sa,sat->st", pi, P)
    r_pi = np.sum(pi * R, axis=1)
    V = np.linalg.solve(np.eye(n_s) - gamma * P_pi, r_pi)
    Q = R + gamma * np.einsum("sat,t->sa", P, V)
    return V, Q


def visitation(P, pi, d0, gamma=GAMMA):
    """Unnormalised discounted visitation d_pi(s) = sum_t gamma^t P(s_t = s | d0, pi)."""
    n_s = d0.shape[0]
    P_pi = np.einsum("sa,sat->st", pi, P)
    return np.linalg.solve((np.eye(n_s) - gamma * P_pi).T, d0)


def eta(P, R, pi, d0, gamma=GAMMA):
    V, _ = policy_eval(P, R, pi, gamma)
    return float(d0 @ V)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def threshold_solution(Q, pi0, c_l, c_h):
    """lambda -> 0 solution of max E_pi0[rho Q] s.t. c_l <= rho <= c_h, E_pi0[rho] = 1, per state.

    u(s) is the (1-p)-quantile of Q(s, .) under pi0, p = (1 - c_l)/(c_h - c_l): rho = c_h
    above u, c_l below, and the one action sitting at the quantile (an atom of pi0) gets the
    ratio in [c_l, c_h] that makes E_pi0[rho] = 1 exactly.
    """
    p = (1.0 - c_l) / (c_h - c_l)
    n_s, n_a = Q.shape
    rho = np.empty_like(Q)
    u = np.empty(n_s)
    for s in range(n_s):
        order = np.argsort(-Q[s])  # descending
        mass_above = 0.0
        for a in order:
            if mass_above + pi0[s, a] >= p:
                u[s] = Q[s, a]
                break
            mass_above += pi0[s, a]
        above = Q[s] > u[s]
        below = Q[s] < u[s]
        tie = ~(above | below)
        assert tie.sum() == 1
        rho[s, above] = c_h
        rho[s, below] = c_l
        m_above, m_below, m_tie = pi0[s, above].sum(), pi0[s, below].sum(), pi0[s, tie].sum()
        rho[s, tie] = (1.0 - c_h * m_above - c_l * m_below) / m_tie
        assert c_l - 1e-12 <= rho[s, tie][0] <= c_h + 1e-12
    return u, rho


def regularised_threshold(Q, pi0, lam, p, iters=200):
    """u(s) solving E_pi0[sigmoid((Q - u)/lambda)] = p by bisection (float64)."""
    lo = Q.min(axis=1) - 60.0 * lam
    hi = Q.max(axis=1) + 60.0 * lam
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        f = np.sum(pi0 * sigmoid((Q - mid[:, None]) / lam), axis=1) - p  # decreasing in u
        lo = np.where(f > 0, mid, lo)
        hi = np.where(f > 0, hi, mid)
    return 0.5 * (lo + hi)


def random_feasible_ratios(rng, pi0_s, c_l, c_h, n):
    """n random ratio vectors for one state with c_l <= rho <= c_h and E_pi0[rho] = 1."""
    out = []
    for _ in range(n):
        v = rng.normal(size=pi0_s.shape)
        v -= pi0_s @ v
        scale = min(
            (c_h - 1.0) / v[v > 0].max() if np.any(v > 0) else np.inf,
            (1.0 - c_l) / (-v[v < 0]).max() if np.any(v < 0) else np.inf,
        )
        out.append(1.0 + v * scale * rng.uniform(0.1, 1.0))
    return np.array(out)


def assert_normalised_in_box(pi0, rho, c_l, c_h, strict=False):
    pi_star = pi0 * rho
    np.testing.assert_allclose(pi_star.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(pi_star >= 0)
    if strict:
        assert np.all(rho > c_l) and np.all(rho < c_h)
    else:
        assert np.all(rho >= c_l - 1e-12) and np.all(rho <= c_h + 1e-12)
    return pi_star


# ----------------------------------------------------------------------------- helper sanity


@pytest.mark.parametrize("seed", [0, 1])
def test_helpers_performance_difference_lemma(seed):
    """eta(pi') - eta(pi) = E_{d_pi'} E_{pi'}[A_pi] with the unnormalised visitation (checks the helpers)."""
    P, R, d0, rng = random_mdp(seed)
    pi = rng.dirichlet(np.ones(N_A), size=N_S)
    pi2 = rng.dirichlet(np.ones(N_A), size=N_S)
    V, Q = policy_eval(P, R, pi)
    A = Q - V[:, None]
    d2 = visitation(P, pi2, d0)
    np.testing.assert_allclose(d2.sum(), 1.0 / (1.0 - GAMMA), rtol=1e-12)
    lhs = eta(P, R, pi2, d0) - eta(P, R, pi, d0)
    rhs = float(d2 @ np.sum(pi2 * A, axis=1))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-12)
    # Monte-Carlo-free cross-check of V by value iteration style fixed point
    V_it = np.zeros(N_S)
    for _ in range(400):
        V_it = np.sum(pi * (R + GAMMA * np.einsum("sat,t->sa", P, V_it)), axis=1)
    np.testing.assert_allclose(V_it, V, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- Theorem 4.2


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("eps", [0.1, 0.3, 0.8])
def test_theorem_4_2_sign_solution_uniform_pi0(seed, eps):
    P, R, d0, _ = random_mdp(100 + seed)
    pi0 = np.full((N_S, N_A), 1.0 / N_A)
    V, Q = policy_eval(P, R, pi0)
    qs = np.sort(Q, axis=1)
    assert np.all(qs[:, 2] - qs[:, 1] > 1e-6)  # a proper gap between the 2nd and 3rd values
    mu = 0.5 * (qs[:, 1] + qs[:, 2])  # a median with P(Q > mu) = P(Q < mu) = 1/2, no atom
    adv_med = Q - mu[:, None]
    rho_star = 1.0 + eps * np.sign(adv_med)
    pi_star = assert_normalised_in_box(pi0, rho_star, 1.0 - eps, 1.0 + eps)

    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    B = float(d_star @ np.sum(pi0 * np.abs(adv_med), axis=1))
    assert B > 0
    np.testing.assert_allclose(gain, eps * B, rtol=1e-8, atol=1e-12)
    assert gain > 0

    # the library's target with lambda -> 0 and baseline = median is the same sign solution
    rho_lib = np.asarray(
        losses.bpo_target_ratio(
            jnp.asarray(Q.ravel(), jnp.float32), jnp.asarray(np.repeat(mu, N_A), jnp.float32), eps, eps, 1e-9
        )
    ).reshape(N_S, N_A)
    np.testing.assert_allclose(rho_lib, rho_star, atol=1e-6)



@pytest.mark.parametrize("seed", [10, 11, 12])
@pytest.mark.parametrize("eps", [0.2, 0.5])
def test_theorem_4_2_general_pi0_weighted_median(seed, eps):
    """Random pi0 on 5 actions: weighted median, the median atom gets the normalising ratio."""
    n_a = 5
    P, R, d0, rng = random_mdp(seed, n_a=n_a)
    pi0 = rng.dirichlet(np.ones(n_a) * 1.5, size=N_S)
    V, Q = policy_eval(P, R, pi0)
    mu, rho_star = threshold_solution(Q, pi0, 1.0 - eps, 1.0 + eps)
    pi_star = assert_normalised_in_box(pi0, rho_star, 1.0 - eps, 1.0 + eps)
    # mu is a weighted median: at most half the mass strictly above / below
    assert np.all(np.sum(pi0 * (Q > mu[:, None]), axis=1) <= 0.5 + 1e-12)
    assert np.all(np.sum(pi0 * (Q < mu[:, None]), axis=1) <= 0.5 + 1e-12)

    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    B = float(d_star @ np.sum(pi0 * np.abs(Q - mu[:, None]), axis=1))
    np.testing.assert_allclose(gain, eps * B, rtol=1e-8, atol=1e-12)
    assert gain > 0

    # Theorem 4.1: rho* maximises E_pi0[rho A] over the box per state (LP optimality)
    A = Q - V[:, None]
    for s in range(N_S):
        best = pi0[s] @ (rho_star[s] * A[s])
        others = random_feasible_ratios(rng, pi0[s], 1.0 - eps, 1.0 + eps, 200)
        assert np.all(others @ (pi0[s] * A[s]) <= best + 1e-12)


# ----------------------------------------------------------------------------- regularised, symmetric


@pytest.mark.parametrize("seed", [20, 21, 22])
@pytest.mark.parametrize("eps,lam_scale", [(0.2, 0.3), (0.3, 1.0), (0.5, 3.0)])
def test_regularised_symmetric_solution_improves(seed, eps, lam_scale):
    P, R, d0, rng = random_mdp(seed)
    pi0 = rng.dirichlet(np.ones(N_A) * 2.0, size=N_S)
    V, Q = policy_eval(P, R, pi0)
    lam = lam_scale * float(np.std(Q))
    u = regularised_threshold(Q, pi0, lam, 0.5)
    sig = sigmoid((Q - u[:, None]) / lam)
    np.testing.assert_allclose(np.sum(pi0 * sig, axis=1), 0.5, atol=1e-13)
    rho_np = 1.0 - eps + 2.0 * eps * sig

    # the library's target matches the float64 formula (float32 and x64 runs)
    q_flat, u_flat = Q.ravel(), np.repeat(u, N_A)
    rho_lib32 = np.asarray(
        losses.bpo_target_ratio(jnp.asarray(q_flat, jnp.float32), jnp.asarray(u_flat, jnp.float32), eps, eps, lam)
    ).reshape(N_S, N_A)
    np.testing.assert_allclose(rho_lib32, rho_np, atol=1e-6)
    with jax.enable_x64(True):
        rho_lib64 = np.asarray(losses.bpo_target_ratio(jnp.asarray(q_flat), jnp.asarray(u_flat), eps, eps, lam))
    np.testing.assert_allclose(rho_lib64.reshape(N_S, N_A), rho_np, rtol=0, atol=1e-13)

    pi_star = assert_normalised_in_box(pi0, rho_np, 1.0 - eps, 1.0 + eps, strict=True)
    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    terms = (2.0 * sig - 1.0) * (Q - u[:, None])
    assert np.all(terms >= 0)
    predicted = eps * float(d_star @ np.sum(pi0 * terms, axis=1))
    np.testing.assert_allclose(gain, predicted, rtol=1e-8, atol=1e-12)
    assert gain > 0

    # the target is the optimum of the box-entropy regularised problem (digest 1.4):
    # max E[rho A] - lam E[(rho-c_l)log(rho-c_l) + (c_h-rho)log(c_h-rho)], E[rho] = 1
    c_l, c_h = 1.0 - eps, 1.0 + eps
    A = Q - V[:, None]

    def objective(s, rho):
        pen = (rho - c_l) * np.log(rho - c_l) + (c_h - rho) * np.log(c_h - rho)
        return rho @ (pi0[s] * A[s]) - lam * (pen @ pi0[s])

    for s in range(N_S):
        best = objective(s, rho_np[s])
        for _ in range(30):
            v = rng.normal(size=N_A)
            v -= pi0[s] @ v  # keeps E_pi0[rho] = 1
            step_max = min(
                np.min(np.where(v > 0, (c_h - rho_np[s]) / np.where(v > 0, v, 1.0), np.inf)),
                np.min(np.where(v < 0, (c_l - rho_np[s]) / np.where(v < 0, v, 1.0), np.inf)),
            )
            other = rho_np[s] + 0.9 * step_max * rng.uniform(0.05, 1.0) * v
            assert np.all(other > c_l) and np.all(other < c_h)
            assert objective(s, other) < best


# ----------------------------------------------------------------------------- asymmetric bounds


@pytest.mark.parametrize("seed", [30, 31, 32, 33])
@pytest.mark.parametrize("c_l,c_h", [(0.7, 1.5), (0.9, 1.2), (0.5, 1.1)])
def test_asymmetric_sign_solution_improves(seed, c_l, c_h):
    n_a = 5
    P, R, d0, rng = random_mdp(seed, n_a=n_a)
    pi0 = rng.dirichlet(np.ones(n_a) * 1.5, size=N_S)
    V, Q = policy_eval(P, R, pi0)
    eps_low, eps_high = 1.0 - c_l, c_h - 1.0
    p = float(losses.quantile_level(eps_low, eps_high))
    np.testing.assert_allclose(p, (1.0 - c_l) / (c_h - c_l), rtol=1e-6)
    u, rho_star = threshold_solution(Q, pi0, c_l, c_h)
    # u is the (1-p)-quantile of Q under pi0: mass above <= p <= mass at-or-above
    m_above = np.sum(pi0 * (Q > u[:, None]), axis=1)
    m_at_or_above = np.sum(pi0 * (Q >= u[:, None]), axis=1)
    assert np.all(m_above <= p + 1e-12) and np.all(m_at_or_above >= p - 1e-12)

    pi_star = assert_normalised_in_box(pi0, rho_star, c_l, c_h)
    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    pinball = (c_h - 1.0) * np.maximum(Q - u[:, None], 0.0) + (1.0 - c_l) * np.maximum(u[:, None] - Q, 0.0)
    predicted = float(d_star @ np.sum(pi0 * pinball, axis=1))
    np.testing.assert_allclose(gain, predicted, rtol=1e-8, atol=1e-12)
    assert gain > 0

    # away from the atom, the library's lambda -> 0 target with baseline u is c_h / c_l
    rho_lib = np.asarray(
        losses.bpo_target_ratio(
            jnp.asarray(Q.ravel(), jnp.float32), jnp.asarray(np.repeat(u, n_a), jnp.float32), eps_low, eps_high, 1e-9
        )
    ).reshape(N_S, n_a)
    off_atom = Q != u[:, None]
    np.testing.assert_allclose(rho_lib[off_atom], rho_star[off_atom], atol=1e-6)

    # LP optimality per state (Theorem 4.1 with asymmetric bounds)
    A = Q - V[:, None]
    for s in range(N_S):
        best = pi0[s] @ (rho_star[s] * A[s])
        others = random_feasible_ratios(rng, pi0[s], c_l, c_h, 200)
        assert np.all(others @ (pi0[s] * A[s]) <= best + 1e-12)


@pytest.mark.parametrize("seed", [40, 41])
def test_asymmetric_uniform_pi0_no_atom(seed):
    """Uniform pi0 on 4 actions, p = 1/4 (c_l = 0.8, c_h = 1.6): any u strictly between the top two Q values."""
    c_l, c_h = 0.8, 1.6
    P, R, d0, _ = random_mdp(seed)
    pi0 = np.full((N_S, N_A), 0.25)
    V, Q = policy_eval(P, R, pi0)
    p = float(losses.quantile_level(1.0 - c_l, c_h - 1.0))
    assert p == pytest.approx(0.25, abs=1e-6)
    qs = np.sort(Q, axis=1)
    u = 0.5 * (qs[:, 2] + qs[:, 3])
    rho_lib = np.asarray(
        losses.bpo_target_ratio(
            jnp.asarray(Q.ravel(), jnp.float32), jnp.asarray(np.repeat(u, N_A), jnp.float32), 1.0 - c_l, c_h - 1.0, 1e-9
        )
    ).reshape(N_S, N_A)
    rho_star = np.where(Q > u[:, None], c_h, c_l)  # float64 sign form, for the exact eta computation
    np.testing.assert_allclose(rho_lib, rho_star, atol=1e-6)
    pi_star = assert_normalised_in_box(pi0, rho_star, c_l, c_h)
    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    pinball = (c_h - 1.0) * np.maximum(Q - u[:, None], 0.0) + (1.0 - c_l) * np.maximum(u[:, None] - Q, 0.0)
    np.testing.assert_allclose(gain, float(d_star @ np.sum(pi0 * pinball, axis=1)), rtol=1e-8, atol=1e-12)
    assert gain > 0


# ----------------------------------------------------------------------------- CEM limit


@pytest.mark.parametrize("seed", [50, 51, 52])
def test_cem_limit_uniform_pi0_is_greedy_elite(seed):
    p_elite = 0.25
    eps_low, eps_high = 1.0, 1.0 / p_elite - 1.0  # c_l = 0, c_h = 4
    P, R, d0, _ = random_mdp(seed)
    pi0 = np.full((N_S, N_A), 0.25)
    V, Q = policy_eval(P, R, pi0)
    assert float(losses.quantile_level(eps_low, eps_high)) == pytest.approx(p_elite, rel=1e-6)
    qs = np.sort(Q, axis=1)
    u = 0.5 * (qs[:, 2] + qs[:, 3])  # the (1 - p_elite) = 0.75 quantile, no atom
    rho_lib = np.asarray(
        losses.bpo_target_ratio(
            jnp.asarray(Q.ravel(), jnp.float32), jnp.asarray(np.repeat(u, N_A), jnp.float32), eps_low, eps_high, 1e-9
        )
    ).reshape(N_S, N_A)
    elite = np.zeros((N_S, N_A))
    elite[np.arange(N_S), np.argmax(Q, axis=1)] = 1.0  # pi0 restricted to the best action, renormalised
    np.testing.assert_allclose(pi0 * rho_lib, elite, atol=1e-6)

    pi_star = elite
    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    pinball = 3.0 * np.maximum(Q - u[:, None], 0.0) + 1.0 * np.maximum(u[:, None] - Q, 0.0)
    np.testing.assert_allclose(gain, float(d_star @ np.sum(pi0 * pinball, axis=1)), rtol=1e-8, atol=1e-12)
    # it is the greedy policy-improvement step: gain = E_{d_pi*}[max_a Q - V] >= 0
    np.testing.assert_allclose(gain, float(d_star @ (Q.max(axis=1) - V)), rtol=1e-8, atol=1e-12)
    assert gain > 0


@pytest.mark.parametrize("seed", [60, 61])
@pytest.mark.parametrize("p_elite", [0.3, 0.5])
def test_cem_limit_general_pi0_is_top_fraction_renormalised(seed, p_elite):
    n_a = 6
    P, R, d0, rng = random_mdp(seed, n_a=n_a)
    pi0 = rng.dirichlet(np.ones(n_a) * 1.5, size=N_S)
    V, Q = policy_eval(P, R, pi0)
    c_l, c_h = 0.0, 1.0 / p_elite
    u, rho_star = threshold_solution(Q, pi0, c_l, c_h)
    pi_star = assert_normalised_in_box(pi0, rho_star, c_l, c_h)

    # independent construction of the CEM elite distribution: take the top p_elite of pi0-mass by Q
    elite = np.zeros_like(pi0)
    for s in range(N_S):
        remaining = p_elite
        for a in np.argsort(-Q[s]):
            take = min(pi0[s, a], remaining)
            elite[s, a] = take
            remaining -= take
            if remaining <= 0:
                break
    elite /= p_elite
    np.testing.assert_allclose(pi_star, elite, atol=1e-12)

    gain = eta(P, R, pi_star, d0) - eta(P, R, pi0, d0)
    d_star = visitation(P, pi_star, d0)
    pinball = (c_h - 1.0) * np.maximum(Q - u[:, None], 0.0) + (1.0 - c_l) * np.maximum(u[:, None] - Q, 0.0)
    np.testing.assert_allclose(gain, float(d_star @ np.sum(pi0 * pinball, axis=1)), rtol=1e-8, atol=1e-12)
    assert gain > 0
