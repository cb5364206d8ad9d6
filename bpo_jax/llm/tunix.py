"""Optional adapter: GBPO as an advantage estimator and a policy loss in google-tunix's GRPO
learner.  Never imported by ``bpo_jax`` itself; importing it without tunix works (the pure
functions below need only JAX), and :func:`register` explains what is missing.

Tunix's registry (``tunix.rl.function_registry``) maps names to functions in two categories
used here:

* advantage estimators, called as ``fn(rewards, num_generations)`` on a flat [B] reward array
  whose groups are the contiguous blocks of ``num_generations`` samples;
* policy losses, called as ``fn(model, train_example, algo_config, pad_id, eos_id, **kwargs)``,
  where ``train_example`` carries prompt_ids, completion_ids, completion_mask, advantages,
  old_per_token_logps and ref_per_token_logps, and ``algo_config`` the clip range
  (``epsilon``, optional ``epsilon_high``), the KL weight ``beta`` and the loss aggregation.

GBPO needs two numbers per response (the weight z and the target logit), while tunix's
learner carries one ``advantages`` array.  The estimator registered here therefore returns a
packed [B, 2] array (z, target logit), see :func:`pack`; the loss unpacks it.  A 1-D
advantages array (another estimator's output) is also accepted: the target then uses the
group mean instead of the median, i.e. logit z / tau.

Status: written against the registry API as read from tunix's sources (function_registry.py,
grpo_learner.py); google-tunix was not installed where this was written, so only the pure
functions are tested.  Tunix versions differ in how a loss computes per-token log-probs and in
what it returns; :func:`_per_token_logps` and :func:`_loss_output` absorb the two known forms.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bpo_jax.llm import groups, losses

NAME = "gbpo"
MISSING = ("google-tunix is not installed: `pip install google-tunix` to register GBPO in Tunix's GRPO "
           "learner (bpo_jax.llm itself does not need it)")


def pack(advantages: jax.Array, target_logits: jax.Array) -> jax.Array:
    """[B], [B] -> [B, 2]: what the registered estimator returns in place of advantages."""
    return jnp.stack([advantages, target_logits], axis=-1)


def unpack(packed: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """[B, 2] -> (z [B], target logit [B]); a 1-D array is z, with logit z / temperature."""
    packed = jnp.asarray(packed, jnp.float32)
    if packed.ndim == 1:
        return packed, packed / temperature
    return packed[..., 0], packed[..., 1]


def gbpo_advantages(rewards, num_generations: int, temperature: float = 1e-4) -> jax.Array:
    """Tunix-style estimator: contiguous groups of ``num_generations`` -> packed [B, 2]."""
    if not isinstance(num_generations, int) or isinstance(num_generations, bool) or num_generations < 1:
        raise ValueError(f"num_generations must be a positive integer, got {num_generations!r}")
    rewards = jnp.asarray(rewards, jnp.float32)
    if rewards.shape[0] % num_generations:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {num_generations}")
    group_ids = jnp.arange(rewards.shape[0]) // num_generations
    return pack(groups.grpo_advantages(rewards, group_ids),
                groups.gbpo_target_logits(rewards, group_ids, temperature))


def gbpo_loss_from_logps(per_token_logps, old_per_token_logps, ref_per_token_logps, completion_mask, packed,
                         clip_low: float, clip_high: float, beta: float = 0.0, temperature: float = 1e-4,
                         agg_mode: str = "token-mean") -> tuple[jax.Array, dict]:
    """The GBPO loss on tunix's arrays ([B, T] log-probs and mask, packed [B, 2] advantages):
    token-aggregated |rho - rho*| |z| plus beta times the low-variance KL to the reference."""
    z, logit = unpack(packed, temperature)
    old = jax.lax.stop_gradient(per_token_logps) if old_per_token_logps is None else old_per_token_logps
    ref = old if ref_per_token_logps is None else ref_per_token_logps
    inputs = losses.LossInputs(per_token_logps, old, ref, jnp.zeros_like(per_token_logps),
                               completion_mask, z, logit)
    cfg = losses.LossConfig(algo="gbpo", clip_low=clip_low, clip_high=clip_high, kl_coef=float(beta or 0.0),
                            agg_mode=agg_mode)
    return losses.policy_loss(inputs, cfg)


def _per_token_logps(model, ex, pad_id, eos_id):
    from tunix.rl import common

    kwargs = dict(prompt_tokens=ex.prompt_ids, completion_tokens=ex.completion_ids, pad_id=pad_id, eos_id=eos_id,
                  stop_gradient=False)
    try:  # newer tunix: (graphdef, state, ...)
        from flax import nnx

        graphdef, state = nnx.split(model)
        out = common.compute_per_token_logps(graphdef, state, **kwargs)
    except TypeError:  # older tunix: (model, ...)
        out = common.compute_per_token_logps(model, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _loss_output(loss, aux):
    try:
        from tunix.sft import utils as sft_utils

        if hasattr(sft_utils, "LossOutput"):
            return sft_utils.LossOutput(primary_loss=loss, aux_metrics=aux)
    except ImportError:
        pass
    return loss, aux


def gbpo_policy_loss(model, train_example, algo_config, pad_id, eos_id, **kwargs):
    """Tunix policy-loss signature.  Reads epsilon / epsilon_high / beta from ``algo_config``,
    and ``gbpo_temperature`` and ``loss_agg_mode`` when present (defaults 1e-4, token-mean)."""
    eps_low = _given(algo_config, "epsilon_low", _given(algo_config, "epsilon", 0.2))
    eps_high = _given(algo_config, "epsilon_high", eps_low)
    logps = _per_token_logps(model, train_example, pad_id, eos_id)
    loss, aux = gbpo_loss_from_logps(
        logps, train_example.old_per_token_logps, getattr(train_example, "ref_per_token_logps", None),
        train_example.completion_mask, train_example.advantages, eps_low, eps_high,
        beta=getattr(algo_config, "beta", 0.0), temperature=getattr(algo_config, "gbpo_temperature", 1e-4),
        agg_mode=getattr(algo_config, "loss_agg_mode", "token-mean"))
    return _loss_output(loss, aux)


def available() -> bool:
    try:
        from tunix.rl import function_registry  # noqa: F401
    except ImportError:
        return False
    return True


def register(name: str = NAME, temperature: float = 1e-4) -> str:
    """Register GBPO's estimator and loss under ``name`` in tunix's default registry; select
    them in the GRPO learner's algorithm config (advantage estimator and policy loss ``name``).
    Raises ImportError with an installation hint when tunix is missing."""
    try:
        from tunix.rl import function_registry
    except ImportError as e:
        raise ImportError(MISSING) from e
    function_registry.register_advantage_estimator(name)(
        lambda rewards, num_generations, **_: gbpo_advantages(rewards, num_generations, temperature))
    function_registry.register_policy_loss_fn(name)(gbpo_policy_loss)
    return name


def _given(algo_config, name: str, default: float) -> float:
    """``algo_config.name`` where set (0 included: an explicit clip of 0), else ``default``."""
    value = getattr(algo_config, name, None)
    return float(default if value is None else value)
