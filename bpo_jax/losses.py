"""Pure loss kernels: GAE, the PPO surrogate, the BPO target and divergences, the median head.

Every function is a small pure function of arrays.  Shapes: T = rollout length,
B = number of environments, N = any flat batch of samples.  Bounds are written as
ratio bounds c_l = 1 - eps_low and c_h = 1 + eps_high (symmetric by default).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LOSS_TYPES = ("adv_TV", "TV", "log_TV", "MSE", "RKL", "FKL", "JS")


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation that keeps termination and truncation apart.

    Args:
      rewards: [T, B] reward of transition t.
      values: [T, B] V(s_t) of the observation acted on at t.
      next_values: [T, B] V of the observation the transition reached, *before* any
        auto-reset (the env's ``final_obs``).  On a truncated step this is the value of
        the true last observation, never of the reset observation.
      terminated: [T, B] bool, s_{t+1} is terminal (its value counts as 0).
      truncated: [T, B] bool, the episode was cut after t (bootstrap, but do not let the
        advantage trace flow into the next, unrelated episode).
      gamma, gae_lambda: discount and GAE trace parameter (scalars, may be traced).

    Returns:
      advantages: [T, B] A_t.
      returns: [T, B] Q_hat_t = A_t + V(s_t), the value targets.
    """
    not_terminal = 1.0 - terminated.astype(values.dtype)
    episode_continues = 1.0 - jnp.logical_or(terminated, truncated).astype(values.dtype)
    deltas = rewards + gamma * next_values * not_terminal - values

    def backward(carry, xs):
        delta, cont = xs
        carry = delta + gamma * gae_lambda * cont * carry
        return carry, carry

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(values[0]), (deltas, episode_continues), reverse=True
    )
    return advantages, advantages + values


def ppo_policy_loss(
    log_ratio: jax.Array, advantages: jax.Array, eps_low: float, eps_high: float
) -> jax.Array:
    """PPO clipped surrogate, -min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), per sample.

    Args:
      log_ratio: [N] log pi(a|s) - log pi_old(a|s).
      advantages: [N] (already normalised if the caller wants that).

    Returns:
      [N] per-sample loss.
    """
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return -jnp.minimum(ratio * advantages, clipped * advantages)


def bpo_target_ratio(
    q_hat: jax.Array,
    baseline: jax.Array,
    eps_low: float,
    eps_high: float,
    temperature: float,
    logit_clamp: float | None = None,
) -> jax.Array:
    """Analytic BRRL target rho* = c_l + (c_h - c_l) * sigmoid((Q_hat - baseline) / lambda).

    ``baseline`` is the median head u(s) (default) or V(s) for the ``use_median=False``
    ablation.  As lambda -> 0 this is c_h above the baseline and c_l below it (the sign
    form of Theorem 4.1); as lambda grows it tends to the midpoint of the bounds (1 when
    symmetric).  The target is detached: it is a regression target, not a path for gradients.

    Args:
      q_hat: [N] return estimates.  baseline: [N].
      eps_low, eps_high: ratio bounds c_l = 1 - eps_low, c_h = 1 + eps_high.
      temperature: lambda > 0, on the (unnormalised) return scale.
      logit_clamp: if given, clamp (Q_hat - baseline) / lambda to [-clamp, clamp] (rsl_rl uses 10).

    Returns:
      [N] target ratio in [c_l, c_h].
    """
    logit = (q_hat - baseline) / temperature
    if logit_clamp is not None:
        logit = jnp.clip(logit, -logit_clamp, logit_clamp)
    c_low, c_high = 1.0 - eps_low, 1.0 + eps_high
    return jax.lax.stop_gradient(c_low + (c_high - c_low) * jax.nn.sigmoid(logit))


def bpo_divergence(
    log_ratio: jax.Array, target: jax.Array, weight: jax.Array, loss_type: str = "adv_TV"
) -> jax.Array:
    """Per-sample divergence between the ratio rho = pi/pi_old and the target rho*.

    adv_TV, TV, log_TV and MSE are zero with their minimum exactly at rho = rho*.  RKL and FKL
    are per-sample estimators of KL divergences: only their average under pi_old (over
    normalised pi and pi*) is minimised at pi = pi*.  The ratio is never clipped: an overshoot
    past the bounds is pulled back by the two-sided loss.

    * ``adv_TV`` (paper, default): |rho - rho*| * |weight|, the advantage-weighted total variation.
    * ``TV``: |rho - rho*|.      * ``log_TV``: |log rho - log rho*|.     * ``MSE``: (rho - rho*)^2.
    * ``RKL``: rho* (log rho* - log rho), i.e. KL(pi* || pi) estimated under pi_old (finite at
      rho* = 0).  log_TV and FKL take log rho*, so they need c_l > 0 (the config refuses eps_low = 1).
    * ``FKL``: rho (log rho - log rho*), i.e. KL(pi || pi*) under pi_old, without the stray
      -log pi_old term of the reference code.
    * ``JS``: (RKL + FKL) / 2, rsl_rl BPO's "JS" (a symmetrised KL, not the Jensen-Shannon
      divergence), with this FKL (no -log pi_old term).

    Args:
      log_ratio: [N] log rho.  target: [N] rho* (detached).  weight: [N], e.g. Q_hat - V (detached).

    Returns:
      [N] per-sample loss.
    """
    ratio = jnp.exp(log_ratio)
    if loss_type == "adv_TV":
        return jnp.abs(ratio - target) * jnp.abs(weight)
    if loss_type == "TV":
        return jnp.abs(ratio - target)
    if loss_type == "log_TV":
        return jnp.abs(log_ratio - jnp.log(target))
    if loss_type == "MSE":
        return jnp.square(ratio - target)
    if loss_type == "RKL":
        # xlogy: 0 log 0 = 0, so a zero target (c_l = 0, the CEM limit) contributes nothing.
        return jax.scipy.special.xlogy(target, target) - target * log_ratio
    if loss_type == "FKL":
        return ratio * (log_ratio - jnp.log(target))
    if loss_type == "JS":
        return 0.5 * (bpo_divergence(log_ratio, target, weight, "RKL") + bpo_divergence(log_ratio, target, weight, "FKL"))
    raise ValueError(f"unknown BPO loss_type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")


def quantile_level(eps_low: float, eps_high: float) -> jax.Array:
    """p = (1 - c_l) / (c_h - c_l): the fraction of actions the BRRL solution pushes up.

    The threshold u(s) of the analytic solution is the (1 - p)-quantile of Q under pi_old;
    p = 1/2 (the median) for symmetric bounds, p_elite for the CEM limit c_l = 0, c_h = 1/p_elite.
    """
    return eps_low / (eps_low + eps_high)


def median_loss(q_hat: jax.Array, u: jax.Array, p: float = 0.5) -> jax.Array:
    """Logistic quantile loss for the threshold head u(s), per sample.

    softplus(x) - p*x with x = Q_hat - u; its minimiser over u satisfies
    E[sigmoid(Q_hat - u)] = p, so u is a smoothed (1-p)-quantile of Q_hat (the median for
    p = 1/2, the reference code's case, where it equals softplus(-|x|) + |x|/2).  Written as
    softplus(-|x|) + relu(x) - p*x, which never overflows.

    Args:
      q_hat: [N] return targets.  u: [N] head output.  p: quantile level from ``quantile_level``.

    Returns:
      [N] per-sample loss, finite for any finite input.
    """
    x = q_hat - u
    return jax.nn.softplus(-jnp.abs(x)) + jax.nn.relu(x) - p * x


def value_loss(
    values: jax.Array, old_values: jax.Array, returns: jax.Array, clip_eps: float | None
) -> jax.Array:
    """Per-sample value loss (V - Q_hat)^2, optionally PPO-style clipped around V_old.

    No factor 1/2, as in both reference implementations (their vf_coef multiplies a plain MSE).

    Args:
      values: [N] current V(s).  old_values: [N] V(s) at rollout time.  returns: [N] targets.
      clip_eps: None for the plain MSE (BPO reference), else the clipping range.

    Returns:
      [N] per-sample loss.
    """
    loss = jnp.square(values - returns)
    if clip_eps is not None:
        clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        loss = jnp.maximum(loss, jnp.square(clipped - returns))
    return loss
