"""PPO: the clipped surrogate on (per-minibatch normalised) GAE advantages."""
from __future__ import annotations

from bpo_jax import losses
from bpo_jax.algorithms.base import Algorithm, LossInputs, normalize


class PPO(Algorithm):
    name = "ppo"
    description = "PPO, the clipped-surrogate baseline"
    # PureJaxRL's ppo.py: its value loss is 0.5 * VF_COEF(0.5) * clipped MSE, clipped at CLIP_EPS.
    defaults = {"lr": 2.5e-4, "ent_coef": 0.01, "vf_coef": 0.25, "value_clip": 0.2}
    own_fields = ("normalize_advantages",)

    def loss(self, config, hp, x: LossInputs):
        adv = x.batch.advantage
        if config.normalize_advantages:
            adv = normalize(adv)
        pi_loss = losses.ppo_policy_loss(x.log_ratio, adv, hp.eps_low, hp.eps_high).mean()
        return pi_loss, 0.0, {}
