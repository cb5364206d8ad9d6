"""BPO: regress the ratio onto the analytic bounded-ratio target, weighted by |Q_hat - V|,
with a median (quantile) head u(s) as the target's threshold (digest sections 1 and 3)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bpo_jax import losses
from bpo_jax.algorithms.base import Algorithm, Batch, LossInputs, as_metric, normalize

# Divergences that take log rho*: with c_l = 0 (eps_low = 1, the CEM limit) the target can be 0.
_LOG_TARGET_LOSSES = ("log_TV", "FKL", "JS")


class BPO(Algorithm):
    name = "bpo"
    description = "Bounded Policy Optimization (the paper's algorithm)"
    # No entropy bonus, as the reference's MuJoCo settings; lr 1e-3 tuned on CartPole.
    # The reference's value loss: vf_coef 0.5 on an unclipped MSE.
    defaults = {"lr": 1e-3, "ent_coef": 0.0, "vf_coef": 0.5, "value_clip": 0.0}
    own_fields = ("bpo_lambda", "u_coef", "use_median", "loss_type", "online_adv", "logit_clamp",
                  "median_hidden_sizes", "recompute_returns", "tv_loss_coef", "separate_median")
    metrics = {
        "median_loss": "losses/median_loss",
        "target_up_fraction": "losses/target_up_fraction",
        "ratio_target_gap": "losses/ratio_target_gap",
    }

    def uses_median(self, config) -> bool:
        return config.use_median

    def validate(self, config) -> None:
        from bpo_jax.config import ConfigError
        from bpo_jax.errors import unknown_name

        if config.loss_type not in losses.LOSS_TYPES:
            raise ConfigError(unknown_name("`loss_type`", config.loss_type, losses.LOSS_TYPES))
        if config.bpo_lambda <= 0:
            raise ConfigError(f"`bpo_lambda` must be > 0, got {config.bpo_lambda}")
        if config.tv_loss_coef < 0:
            raise ConfigError(f"`tv_loss_coef` must be >= 0, got {config.tv_loss_coef}")
        if config.separate_median and not config.use_median:
            raise ConfigError("`separate_median` needs `use_median` (there is no median network to separate)")
        if config.logit_clamp is not None and config.logit_clamp <= 0:
            raise ConfigError(f"`logit_clamp` must be > 0, got {config.logit_clamp}")
        if config.loss_type in _LOG_TARGET_LOSSES and config.bounds[0] >= 1.0:
            raise ConfigError(
                f"`loss_type` {config.loss_type} needs `eps_low` < 1: at eps_low = 1 (c_l = 0) the target ratio "
                f"can be 0, where log rho* is -inf; use adv_TV, TV, MSE or RKL for the CEM limit")

    def prepare(self, config, batch: Batch) -> Batch:
        if config.online_adv:
            return batch
        # rsl_rl's offline weight: GAE advantages normalised over the whole batch.
        return batch.replace(advantage=normalize(batch.advantage, config.adv_std_ddof))

    def loss(self, config, hp, x: LossInputs):
        mb = x.batch
        baseline = x.median if config.use_median else x.value
        target = losses.bpo_target_ratio(
            mb.q_hat, jax.lax.stop_gradient(baseline), hp.eps_low, hp.eps_high, hp.bpo_lambda, config.logit_clamp)
        # Weight |Q_hat - V|: V is detached so the policy loss never trains the critic.
        weight = jax.lax.stop_gradient(mb.q_hat - x.value) if config.online_adv else mb.advantage
        pi_loss = losses.bpo_divergence(x.log_ratio, target, weight, config.loss_type).mean()
        if config.tv_loss_coef and config.loss_type == "adv_TV":  # rsl_rl BPO's extra TV term, in that branch only
            pi_loss = pi_loss + config.tv_loss_coef * jnp.mean(jnp.abs(x.ratio - target))
        if config.use_median:
            # The quantile level follows the bounds of *this* configuration (traced), so a vmapped
            # sweep over asymmetric eps_low/eps_high fits each member's own (1-p)-quantile.
            p = losses.quantile_level(hp.eps_low, hp.eps_high)
            u_loss = losses.median_loss(mb.q_hat, x.median, p).mean()
        else:
            u_loss = 0.0
        metrics = {
            "median_loss": as_metric(u_loss),
            "target_up_fraction": jnp.mean(target > 1.0),
            "ratio_target_gap": jnp.mean(jnp.abs(x.ratio - target)),
        }
        return pi_loss, hp.u_coef * u_loss, metrics
