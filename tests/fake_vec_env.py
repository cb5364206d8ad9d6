"""A small torch environment that subclasses rsl_rl's ``VecEnv`` exactly as IsaacLab's
``RslRlVecEnvWrapper`` does, for the isaaclab/ adapter's tests and benchmarks.

Task ("point goal"): a point mass moved by a 2-D velocity command towards a random goal in
[-1, 1]^2.  The command's effect is scaled by a hidden per-env gain in [0.5, 1.5].
* ``policy`` group: goal - position (noisy) and the last action (6 values);
* ``critic`` group: the same without noise, plus the hidden gain and the time left (8 values).
Reward terms (IsaacLab style, summed per step): ``tracking`` exp(-|goal - pos|^2 / 0.25),
``action_l2`` -0.01 |a|^2, ``termination`` -2 on leaving the box [-2, 2]^2.
Episodes time out after ``max_episode_length`` steps (``extras["time_outs"]``) and terminate
on leaving the box; finished envs are reset inside ``step`` (same-step reset) and their
per-term episode sums are logged in ``extras["log"]`` as IsaacLab does.

A random policy scores about 10-20 per 100-step episode; steering to the goal scores about 90.
"""
from __future__ import annotations

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

TERMS = ("tracking", "action_l2", "termination")


class PointGoalEnv(VecEnv):
    """rsl-rl-lib's current API: ``get_observations()`` and ``step`` return a TensorDict of groups."""

    def __init__(self, num_envs: int = 64, max_episode_length: int = 100, seed: int = 0, device: str = "cpu",
                 noise: float = 0.05):
        self.num_envs = num_envs
        self.num_actions = 2
        self.max_episode_length = max_episode_length
        self.device = device
        self.cfg = {"task": "point-goal"}
        self.noise = noise
        self.dt = 0.1
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        b = num_envs
        self.pos = torch.zeros(b, 2)
        self.goal = torch.zeros(b, 2)
        self.gain = torch.ones(b)
        self.last_action = torch.zeros(b, 2)
        self.episode_length_buf = torch.zeros(b, dtype=torch.long)
        self.episode_sums = {k: torch.zeros(b) for k in TERMS}
        self._reset(torch.ones(b, dtype=torch.bool))

    # ------------------------------------------------------------------ helpers
    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.gen)

    def _reset(self, mask: torch.Tensor) -> None:
        n = int(mask.sum())
        if n == 0:
            return
        self.pos[mask] = (self._rand(n, 2) - 0.5)
        self.goal[mask] = self._rand(n, 2) * 2 - 1
        self.gain[mask] = 0.5 + self._rand(n)
        self.last_action[mask] = 0.0
        self.episode_length_buf[mask] = 0
        for k in TERMS:
            self.episode_sums[k][mask] = 0.0

    def _groups(self) -> dict[str, torch.Tensor]:
        delta = self.goal - self.pos
        noisy = delta + self.noise * torch.randn(delta.shape, generator=self.gen)
        policy = torch.cat([noisy, self.last_action], dim=-1)
        left = (1.0 - self.episode_length_buf.float() / self.max_episode_length)[:, None]
        critic = torch.cat([delta, self.last_action, self.gain[:, None], left], dim=-1)
        return {"policy": policy, "critic": critic}

    def _observations(self):
        return TensorDict(self._groups(), batch_size=[self.num_envs])

    # ------------------------------------------------------------------ VecEnv
    def get_observations(self):
        return self._observations()

    def step(self, actions: torch.Tensor):
        a = actions.clamp(-1.0, 1.0)
        self.pos = self.pos + self.dt * self.gain[:, None] * a
        self.last_action = a.clone()
        self.episode_length_buf += 1
        dist2 = ((self.goal - self.pos) ** 2).sum(-1)
        out = (self.pos.abs() > 2.0).any(-1)
        terms = {
            "tracking": torch.exp(-dist2 / 0.25),
            "action_l2": -0.01 * (actions ** 2).sum(-1),
            "termination": -2.0 * out.float(),
        }
        reward = sum(terms.values())
        for k in TERMS:
            self.episode_sums[k] += terms[k]
        time_outs = (self.episode_length_buf >= self.max_episode_length) & ~out
        dones = out | time_outs
        extras: dict = {"time_outs": time_outs}
        if dones.any():
            extras["log"] = {f"Episode_Reward/{k}": self.episode_sums[k][dones].mean() for k in TERMS}
            extras["log"]["Episode_Termination/time_out"] = time_outs.float().sum()
            extras["log"]["Episode_Termination/out_of_bounds"] = out.float().sum()
        self._reset(dones)
        return self._observations(), reward, dones.long(), extras


class LegacyPointGoalEnv(PointGoalEnv):
    """The same task with the older API IsaacLab 2.1 pinned (rsl-rl-lib 2.x): observations are the
    ``policy`` tensor, the groups travel in ``extras["observations"]``."""

    def get_observations(self):
        groups = self._groups()
        return groups["policy"], {"observations": groups}

    def step(self, actions: torch.Tensor):
        obs, reward, dones, extras = super().step(actions)
        extras["observations"] = {k: obs[k] for k in obs.keys()}
        return obs["policy"], reward, dones, extras


class FaultyPointGoalEnv(PointGoalEnv):
    """The same task with one fault from step ``at`` on (counted over the env's life): ``"nan"``
    a NaN reward in env 0, ``"huge"`` rewards of 1e30 (finite, but the loss overflows),
    ``"width"`` a policy group one value wider, ``"batch"`` half the rewards, ``"dones"`` half
    the dones, ``"nan_obs"`` a NaN observation in env 0 (``at=0``: from the first one on).
    ``"numpy"`` is no fault: time-outs as a NumPy array and the log as a TensorDict."""

    def __init__(self, *args, fault: str = "nan", at: int = 17, **kwargs):
        self.fault, self.at, self.steps = fault, at, 0
        super().__init__(*args, **kwargs)

    def _groups(self) -> dict[str, torch.Tensor]:
        groups = super()._groups()
        if self.fault == "width" and self.steps >= self.at:
            groups["policy"] = torch.cat([groups["policy"], groups["policy"][:, :1]], dim=-1)
        if self.fault == "nan_obs" and self.steps >= self.at:
            groups["policy"][0, 0] = float("nan")
        return groups

    def step(self, actions: torch.Tensor):
        self.steps += 1
        obs, reward, dones, extras = super().step(actions)
        if self.steps >= self.at:
            if self.fault == "nan":
                reward[0] = float("nan")
            elif self.fault == "huge":
                reward = torch.full_like(reward, 1e30)
            elif self.fault == "batch":
                reward = reward[: self.num_envs // 2]
            elif self.fault == "dones":
                dones = dones[: self.num_envs // 2]
            elif self.fault == "numpy":
                extras["time_outs"] = extras["time_outs"].numpy()
                extras["log"] = TensorDict(extras.get("log", {}), batch_size=[])
        return obs, reward, dones, extras
