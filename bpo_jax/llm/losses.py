"""Token-level policy losses for language models: GBPO and GRPO, a KL penalty to a reference
policy, the entropy bonus, and the reduction over a response mask (digest sections 5.1, 5.3).

Shapes: B = responses in the (mini)batch, T = response length (padded).  Per-token arrays are
[B, T]; per-response signals (advantage, target logit) are [B] and broadcast over the tokens,
as the reference broadcasts them with ``response_mask``.  Bounds are ratio offsets: the box is
[1 - clip_low, 1 + clip_high].
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
KL_TYPES = ("k1", "low_var_kl")
ALGOS = ("gbpo", "grpo")
# The reference clamps log pi - log pi_old to this range before exponentiating.
LOG_RATIO_CLAMP = 20.0


def aggregate(loss: jax.Array, mask: jax.Array, mode: str = "token-mean") -> jax.Array:
    """Reduce a per-token loss to a scalar over the tokens where ``mask`` is 1.

    * token-mean: sum of all masked tokens / number of masked tokens (long answers weigh more).
    * seq-mean-token-mean: mean over responses of each response's token mean.
    * seq-mean-token-sum: mean over responses of each response's token sum.

    Responses with no token (empty mask row) add 0 and, in the sequence modes, still count in
    the mean over responses, so no division by zero can occur.

    Args:
      loss: [B, T] per-token values.  mask: [B, T] 1 on response tokens, 0 on padding.

    Returns:
      scalar.
    """
    mask = mask.astype(loss.dtype)
    masked = loss * mask
    if mode == "token-mean":
        return masked.sum() / jnp.maximum(mask.sum(), 1.0)
    if mode == "seq-mean-token-mean":
        return (masked.sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)).mean()
    if mode == "seq-mean-token-sum":
        return masked.sum(axis=1).mean()
    raise ValueError(f"unknown aggregation mode {mode!r}; valid: {', '.join(AGG_MODES)}")


def clamped_log_ratio(log_probs: jax.Array, old_log_probs: jax.Array) -> jax.Array:
    """log pi - log pi_old clamped to [-20, 20] (the reference's guard against exp overflow): [B, T]."""
    return jnp.clip(log_probs - old_log_probs, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def gbpo_target_ratio(target_logits: jax.Array, clip_low: float, clip_high: float) -> jax.Array:
    """rho* = 1 - c_low + (c_low + c_high) * sigmoid(logit), in [1 - c_low, 1 + c_high]: [B] -> [B]."""
    return 1.0 - clip_low + (clip_low + clip_high) * jax.nn.sigmoid(target_logits)


def gbpo_token_loss(
    log_probs: jax.Array,
    old_log_probs: jax.Array,
    advantages: jax.Array,
    target_logits: jax.Array,
    clip_low: float,
    clip_high: float,
) -> jax.Array:
    """GBPO: |rho - rho*| * |z| per token, a two-sided L1 pull of the ratio to a target inside
    the box, so an overshoot is pulled back (GRPO's clipped surrogate only stops pushing).

    Args:
      log_probs: [B, T] current log pi of the response tokens (differentiable).
      old_log_probs: [B, T] log pi_old (the sampling policy, fixed over the epochs).
      advantages: [B] group-normalised advantage z (its magnitude is the weight).
      target_logits: [B] (r - median) / (std + eps) / tau.

    Returns:
      [B, T] per-token loss (unmasked).
    """
    ratio = jnp.exp(clamped_log_ratio(log_probs, old_log_probs))
    target = jax.lax.stop_gradient(gbpo_target_ratio(target_logits, clip_low, clip_high))
    return jnp.abs(ratio - target[:, None]) * jnp.abs(jax.lax.stop_gradient(advantages))[:, None]


def grpo_token_loss(
    log_probs: jax.Array,
    old_log_probs: jax.Array,
    advantages: jax.Array,
    clip_low: float,
    clip_high: float,
    dual_clip: float = 3.0,
) -> jax.Array:
    """GRPO (verl's vanilla PPO loss): -min(rho z, clip(rho) z), and for z < 0 the dual clip
    bounds the loss by -dual_clip * z, so a huge ratio on a bad response has bounded weight.

    Args:
      log_probs, old_log_probs: [B, T].  advantages: [B].
      dual_clip: the reference's ``clip_ratio_c`` (3.0).

    Returns:
      [B, T] per-token loss (unmasked).
    """
    ratio = jnp.exp(clamped_log_ratio(log_probs, old_log_probs))
    adv = jax.lax.stop_gradient(advantages)[:, None]
    clipped = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high))
    dual = jnp.minimum(-adv * dual_clip, clipped)
    return jnp.where(adv < 0, dual, clipped)


def kl_penalty(log_probs: jax.Array, ref_log_probs: jax.Array, kind: str = "low_var_kl") -> jax.Array:
    """Per-token estimate of KL(pi || pi_ref) from the sampled tokens: [B, T].

    * k1: log pi - log pi_ref (unbiased, high variance, can be negative).
    * low_var_kl (k3): exp(d) - d - 1 with d = log pi_ref - log pi, non-negative, clamped to
      [-10, 10] as the reference does.
    """
    if kind == "k1":
        return log_probs - ref_log_probs
    if kind == "low_var_kl":
        d = ref_log_probs - log_probs
        return jnp.clip(jnp.exp(d) - d - 1.0, -10.0, 10.0)
    raise ValueError(f"unknown KL type {kind!r}; valid: {', '.join(KL_TYPES)}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Hyperparameters of :func:`policy_loss` (hashable: a static argument under jit)."""

    algo: str = "gbpo"
    """'gbpo' (bounded-ratio L1 to a target) or 'grpo' (clipped surrogate)."""
    clip_low: float = 0.2
    """c_low: the box's lower edge is 1 - c_low."""
    clip_high: float = 0.2
    """c_high: the box's upper edge is 1 + c_high."""
    dual_clip: float = 3.0
    """GRPO only: the dual-clip constant for negative advantages."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the reference policy (0: off; the paper's scripts use 0.001)."""
    kl_type: str = "low_var_kl"
    """'k1' or 'low_var_kl' (k3)."""
    ent_coef: float = 0.0
    """Entropy bonus weight (subtracted from the loss)."""
    agg_mode: str = "token-mean"
    """How per-token values become a scalar: one of AGG_MODES."""

    def validate(self) -> "LossConfig":
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; valid: {', '.join(ALGOS)}")
        if self.agg_mode not in AGG_MODES:
            raise ValueError(f"unknown aggregation mode {self.agg_mode!r}; valid: {', '.join(AGG_MODES)}")
        if self.kl_type not in KL_TYPES:
            raise ValueError(f"unknown KL type {self.kl_type!r}; valid: {', '.join(KL_TYPES)}")
        for name in ("clip_low", "clip_high", "dual_clip", "kl_coef", "ent_coef"):  # NaN passes the comparisons
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if not (0.0 <= self.clip_low < 1.0) or self.clip_high < 0.0:
            raise ValueError(f"clip bounds need 0 <= clip_low < 1 and clip_high >= 0, got "
                             f"{self.clip_low}, {self.clip_high}")
        if self.dual_clip <= 1.0:  # the bound on a negative advantage's loss, c * |A|, must lie past the clip's
            raise ValueError(f"dual_clip must be > 1, got {self.dual_clip}")
        if self.kl_coef < 0 or self.ent_coef < 0:
            raise ValueError(f"kl_coef and ent_coef must be >= 0, got {self.kl_coef} and {self.ent_coef}")
        return self


class LossInputs(NamedTuple):
    """One minibatch as the loss sees it: per-token [B, T] and per-response [B] arrays."""

    log_probs: jax.Array  # [B, T] current policy (differentiable)
    old_log_probs: jax.Array  # [B, T] sampling policy
    ref_log_probs: jax.Array  # [B, T] reference policy (ignored when kl_coef == 0)
    entropy: jax.Array  # [B, T] entropy of the current policy's next-token distribution
    mask: jax.Array  # [B, T] 1 on response tokens
    advantages: jax.Array  # [B] group-normalised advantage z
    target_logits: jax.Array  # [B] GBPO target logit (ignored by GRPO)


def ratio_bound_fractions(log_probs, old_log_probs, mask, clip_low, clip_high) -> dict[str, jax.Array]:
    """Fractions of masked tokens whose ratio is below 1 - c_low, above 1 + c_high, or either
    (the reference's ``pg_clipfrac`` for GBPO): how far the update has left the trust box."""
    ratio = jnp.exp(clamped_log_ratio(log_probs, old_log_probs))
    low = (ratio < 1.0 - clip_low).astype(jnp.float32)
    high = (ratio > 1.0 + clip_high).astype(jnp.float32)
    mean = lambda x: aggregate(x, mask, "token-mean")
    return {"ratio_out_frac": mean(jnp.maximum(low, high)), "ratio_out_low_frac": mean(low),
            "ratio_out_high_frac": mean(high)}


def policy_loss(inputs: LossInputs, cfg: LossConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total loss = pg_loss - ent_coef * entropy + kl_coef * KL, each aggregated with agg_mode.

    Returns:
      (scalar loss, metrics): pg_loss, entropy, kl, ratio_mean, ratio_max, and the ratio
      bound fractions of :func:`ratio_bound_fractions`.
    """
    x = inputs
    if cfg.algo == "gbpo":
        per_token = gbpo_token_loss(x.log_probs, x.old_log_probs, x.advantages, x.target_logits,
                                    cfg.clip_low, cfg.clip_high)
    else:
        per_token = grpo_token_loss(x.log_probs, x.old_log_probs, x.advantages, cfg.clip_low,
                                    cfg.clip_high, cfg.dual_clip)
    pg_loss = aggregate(per_token, x.mask, cfg.agg_mode)
    entropy = aggregate(x.entropy, x.mask, cfg.agg_mode)
    loss = pg_loss - cfg.ent_coef * entropy
    kl = jnp.zeros(())
    if cfg.kl_coef:
        kl = aggregate(kl_penalty(x.log_probs, x.ref_log_probs, cfg.kl_type), x.mask, cfg.agg_mode)
        loss = loss + cfg.kl_coef * kl
    ratio = jnp.exp(clamped_log_ratio(x.log_probs, x.old_log_probs))
    maskf = x.mask.astype(ratio.dtype)
    metrics = {"pg_loss": pg_loss, "entropy": entropy, "kl": kl,
               "ratio_mean": aggregate(ratio, x.mask, "token-mean"),
               "ratio_max": jnp.max(jnp.where(maskf > 0, ratio, 0.0)),
               **ratio_bound_fractions(x.log_probs, x.old_log_probs, x.mask, cfg.clip_low, cfg.clip_high)}
    return loss, jax.tree.map(jax.lax.stop_gradient, metrics)
