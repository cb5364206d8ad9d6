"""PPO: the clipped surrogate on GAE advantages, normalised per minibatch or over the batch."""
from __future__ import annotations

from bpo_jax import losses
from bpo_jax.algorithms.base import Algorithm, Batch, LossInputs, normalize


class PPO(Algorithm):
    name = "ppo"
    description = "PPO, the clipped-surrogate baseline"
    # PureJaxRL's ppo.py: its value loss is 0.5 * VF_COEF(0.5) * clipped MSE, clipped at CLIP_EPS.
    defaults = {"lr": 2.5e-4, "ent_coef": 0.01, "vf_coef": 0.25, "value_clip": 0.2}
    own_fields = ("normalize_advantages", "normalize_advantages_per_minibatch")

    def prepare(self, config, batch: Batch) -> Batch:
        if config.normalize_advantages and not config.normalize_advantages_per_minibatch:
            # rsl_rl's default: once over the whole batch, before the epochs.
            return batch.replace(advantage=normalize(batch.advantage, config.adv_std_ddof))
        return batch

    def loss(self, config, hp, x: LossInputs):
        adv = x.batch.advantage
        if config.normalize_advantages and config.normalize_advantages_per_minibatch:
            adv = normalize(adv, config.adv_std_ddof)
        pi_loss = losses.ppo_policy_loss(x.log_ratio, adv, hp.eps_low, hp.eps_high).mean()
        return pi_loss, 0.0, {}
