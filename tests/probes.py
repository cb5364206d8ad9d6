"""Probe environments with known answers, registered as the ``probe`` suite for tests."""
import jax.numpy as jnp

from bpo_jax import envs


class ConstantReward(envs.FunctionalEnv):
    """Reward 1 every step, a constant observation, never terminal, cut after ``horizon`` steps.

    The time limit is not observable, so the only consistent value is the infinite-horizon
    one, 1 / (1 - gamma), and only if truncation bootstraps: treating the cut as terminal
    drags the learned value down to the average truncated return."""

    def __init__(self, num_envs, horizon=5, time_limit=None):
        super().__init__("probe/ConstantReward", num_envs, envs.ObsSpec((1,)), envs.Discrete(2))
        self.horizon = horizon
        self.time_limit = time_limit  # declared (True: the horizon; an int: a wrong declaration)
        if time_limit is True:
            self.time_limit = horizon

    def _reset_one(self, key):
        return jnp.zeros((), jnp.int32), jnp.ones(1)

    def _step_one(self, key, t, action):
        t = t + 1
        return t, jnp.ones(1), 1.0, False, t >= self.horizon



class NaNReward(ConstantReward):
    """ConstantReward whose reward turns NaN after ``nan_after`` steps of one episode-free counter."""

    def __init__(self, num_envs, horizon=5, nan_after=300):
        super().__init__(num_envs, horizon)
        self.nan_after = nan_after

    def _reset_one(self, key):
        return (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)), jnp.ones(1)

    def _step_one(self, key, inner, action):
        t, total = inner
        t, total = t + 1, total + 1
        reward = jnp.where(total > self.nan_after, jnp.nan, 1.0)
        return (t, total), jnp.ones(1), reward, False, t >= self.horizon

    def _restart_one(self, done, carry, pool):
        key, inner, obs = super()._restart_one(done, carry, pool)
        # The total step counter survives auto-resets; only the episode clock restarts.
        return key, (inner[0], carry[1][1]), obs


def register():
    if "probe" in envs.suites():
        return

    def build(name, num_envs, **kw):
        if name == "NaNReward":
            return NaNReward(num_envs, horizon=5, nan_after=kw.get("nan_after", 300))
        return ConstantReward(num_envs, **kw)

    envs.register_suite("probe", lambda: ["ConstantReward", "NaNReward"], build,
                        "test probes with known answers")
