"""rsl_rl's adaptive-KL learning-rate schedule, inside the compiled update.

Per minibatch, before its gradient step, the mean KL(pi_old || pi_current) over the minibatch
decides the learning rate that step (and every later one) uses:

* lr / 1.5 when KL > 2 * desired_kl, never below 1e-5;
* lr * 1.5 when 0 < KL < desired_kl / 2, never above 1e-2;
* unchanged otherwise.

pi_old is the policy that collected the rollout (the parameters the update started from), so
the KL is exact, not estimated from log-probabilities.  The learning rate lives in the
optimiser state (``optax.inject_hyperparams``), so it carries from one update to the next and
is saved with checkpoints; it is reported as the metric ``lr``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from bpo_jax.networks import Categorical, DiagGaussian

FACTOR = 1.5
MIN_LR = 1e-5
MAX_LR = 1e-2


def adapt_lr(lr: jax.Array, kl: jax.Array, desired_kl: float) -> jax.Array:
    """The learning rate after one minibatch whose mean KL(old || new) is ``kl``."""
    down = jnp.maximum(MIN_LR, lr / FACTOR)
    up = jnp.minimum(MAX_LR, lr * FACTOR)
    return jnp.where(kl > 2.0 * desired_kl, down, jnp.where((kl < 0.5 * desired_kl) & (kl > 0.0), up, lr))


def policy_kl(old, new) -> jax.Array:
    """KL(old || new) per state [N] for two distributions of the same kind (Gaussians summed over
    action dimensions, as rsl_rl; categoricals over the choices)."""
    if isinstance(old, DiagGaussian):
        var_ratio = jnp.square(old.std / new.std)
        per_dim = 0.5 * (var_ratio + jnp.square((old.mean - new.mean) / new.std) - 1.0) - jnp.log(old.std / new.std)
        return jnp.sum(jnp.broadcast_to(per_dim, old.mean.shape), axis=-1)
    if isinstance(old, Categorical):
        logp_old, logp_new = jax.nn.log_softmax(old.logits), jax.nn.log_softmax(new.logits)
        return jnp.sum(jnp.exp(logp_old) * (logp_old - logp_new), axis=-1)
    raise TypeError(f"no KL for {type(old).__name__}")


def adaptive_adam(lr, eps) -> optax.GradientTransformation:
    """Adam whose learning rate sits in its state (start: ``lr``), for :func:`set_lr`."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr, eps=eps)


def _inject_state(opt_state):
    """The InjectHyperparamsState inside a chain's state (the last element holding hyperparams)."""
    for i in reversed(range(len(opt_state))):
        if hasattr(opt_state[i], "hyperparams"):
            return i
    raise ValueError("the optimiser state has no injected learning rate")


def get_lr(opt_state) -> jax.Array:
    return opt_state[_inject_state(opt_state)].hyperparams["learning_rate"]


def set_lr(opt_state, lr: jax.Array):
    i = _inject_state(opt_state)
    inner = opt_state[i]
    hyper = dict(inner.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    return opt_state[:i] + (inner._replace(hyperparams=hyper),) + opt_state[i + 1:]
