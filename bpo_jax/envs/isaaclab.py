"""IsaacLab adapter: any rsl_rl ``VecEnv``-like torch environment, driven from the host.

IsaacLab's ``RslRlVecEnvWrapper`` (and any environment written for rsl_rl) is a batch of
``num_envs`` torch environments with

* ``get_observations()``: either a TensorDict / mapping of observation groups (rsl-rl-lib >= 3,
  IsaacLab >= 2.2) or the older ``(policy_obs, extras)`` pair with the groups in
  ``extras["observations"]`` (rsl-rl-lib 2.x, pinned by IsaacLab 2.1);
* ``step(actions) -> (obs, rewards, dones, extras)`` with ``extras["time_outs"]`` and
  ``extras["log"]``, where finished environments are reset *inside* ``step``.

:class:`IsaacLabEnv` turns those into JAX arrays (DLPack, zero-copy when torch and JAX share a
device) for :mod:`bpo_jax.host_loop`, which samples actions with the compiled policy and trains
with the same compiled update as the JAX suites.  torch, rsl-rl-lib and IsaacLab are optional:
this module imports torch only when an environment is wrapped.

Time-outs: a reset inside ``step`` leaves no terminal observation to bootstrap from, so, as
rsl_rl does, a time-out bootstraps from the observation the action was taken in: the step is a
*truncation* whose ``final_obs`` is s_t, and GAE then adds gamma * V(s_t) (rsl_rl adds
``gamma * V(s_t)`` to the reward on time-outs and stops the trace; the two are the same sum).
A ``done`` that is not a time-out is a termination (no bootstrap).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax.envs.base import Box, EnvState, ObsSpec

SUITE = "isaaclab"
INSTALL_HINT = ("install Isaac Sim and IsaacLab (https://isaac-sim.github.io/IsaacLab), then pip install 'bpo-jax[isaaclab]' "
                "(torch, rsl-rl-lib); or train your own rsl_rl VecEnv: bpo_jax.host_loop.train(config, env)")
# IsaacLab's rough-terrain velocity tasks the paper trained on (digest section 6.3).
PAPER_TASKS = ("Isaac-Velocity-Rough-Anymal-C-v0", "Isaac-Velocity-Rough-G1-v0",
               "Isaac-Velocity-Rough-Unitree-Go1-v0", "Isaac-Velocity-Rough-H1-v0")


def require(*modules: str, hint: str = INSTALL_HINT) -> None:
    """Raise :class:`~bpo_jax.envs.registry.MissingDependencyError`, one line with the install
    ``hint``, for the first of ``modules`` (torch, rsl_rl, isaaclab) that is not installed."""
    from bpo_jax.envs.registry import MissingDependencyError, installed

    for module in modules:
        if not installed(module):
            raise MissingDependencyError(f"the {SUITE}/ suite needs {module!r}, which is not installed: {hint}")


# What the adapter calls on an rsl_rl VecEnv handed to it.
_VEC_ENV = ("num_envs", "num_actions", "get_observations", "step")


# ------------------------------------------------------------------ torch <-> JAX
def to_jax(tensor) -> jax.Array:
    """A torch tensor as a JAX array through DLPack (zero-copy on a shared device); a tensor on
    a device JAX does not use goes through host memory."""
    tensor = tensor.detach()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    try:
        return jax.dlpack.from_dlpack(tensor)
    except Exception:  # e.g. a CUDA tensor with a CPU-only JAX; committed like DLPack's arrays
        return jax.device_put(tensor.cpu().numpy(), jax.devices()[0])


def to_torch(array: jax.Array, device=None):
    """A JAX array as a torch tensor through DLPack, moved to ``device`` if it is elsewhere.
    The tensor shares the JAX buffer: treat it as read-only."""
    import torch

    try:
        tensor = torch.from_dlpack(array)
    except Exception:
        tensor = torch.from_numpy(np.asarray(array))
    if device is not None and tensor.device != torch.device(device):
        tensor = tensor.to(device)
    return tensor


# ------------------------------------------------------------------ observation APIs
def observation_groups(observations: Any, extras: Optional[Mapping] = None) -> dict[str, Any]:
    """{group: [B, D] tensor} from whatever an rsl_rl env returned: a TensorDict or mapping of
    groups (current API), a ``(policy_obs, extras)`` pair (IsaacLab 2.1's API, groups in
    ``extras["observations"]``), or a bare policy tensor (with ``extras`` from ``step``)."""
    if isinstance(observations, tuple) and len(observations) == 2:
        observations, extras = observations
    groups: dict[str, Any] = {}
    if hasattr(observations, "keys") and hasattr(observations, "__getitem__"):
        groups = {str(k): observations[k] for k in observations.keys()}
    else:
        groups["policy"] = observations
        if extras is not None and "observations" in extras:
            for k, v in extras["observations"].items():
                groups.setdefault(str(k), v)
    if "policy" not in groups:
        raise ValueError(f"the environment's observations have no 'policy' group (groups: {sorted(groups)})")
    return {k: (v if v.ndim == 2 else v.reshape(v.shape[0], -1)) for k, v in groups.items()
            if hasattr(v, "ndim") and v.ndim >= 1 and k in ("policy", "critic")}


class EnvDataError(ValueError):
    """The env returned a batch the run cannot use: a reward or observation of the wrong shape,
    or one holding NaN or Inf.  Checked at each step, so that the message names the env's data
    instead of a network shape error, or a NaN loss some updates later."""


def unpack(frame: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """A packed frame [..., D + 3] -> (obs [..., D], reward [...], terminated [...], truncated [...])."""
    return frame[..., :-3], frame[..., -3], frame[..., -2] > 0.5, frame[..., -1] > 0.5


@dataclass
class HostStep:
    """One host step of the batch.  ``frame`` [B, D + 3] float32 packs the observation to act on
    next (after any reset inside ``step``), the reward, terminated and truncated: one DLPack
    transfer per step instead of four (each costs about 100 us on a CPU).  The host loop slices it
    inside its compiled programs; the properties slice it here."""

    frame: jax.Array
    log: dict[str, float]  # extras["log"] as floats (empty when the env logged nothing this step)

    obs = property(lambda self: unpack(self.frame)[0])
    reward = property(lambda self: unpack(self.frame)[1])
    terminated = property(lambda self: unpack(self.frame)[2])
    truncated = property(lambda self: unpack(self.frame)[3])


class IsaacLabEnv:
    """An rsl_rl ``VecEnv``-like torch environment seen from JAX.

    ``asymmetric_critic``: append the ``critic`` group to every observation, so the networks'
    critic and median read it (``policy_obs_dim`` says where the actor's part ends); an env
    without that group is refused, not trained symmetric while its config says asymmetric.
    Otherwise only the ``policy`` group is used.

    Actions go to the env as sampled (rsl_rl's convention; IsaacLab's wrapper clips them if its
    ``clip_actions`` is set), so the action space is an unbounded Box."""

    def __init__(self, env: Any, name: str = f"{SUITE}/custom", asymmetric_critic: bool = False):
        # An env of one's own needs no Isaac Sim: only the torch it speaks.
        require("torch", hint="pip install 'bpo-jax[isaaclab]' (torch, rsl-rl-lib)")
        missing = [a for a in _VEC_ENV if not hasattr(env, a)]
        if missing:
            raise TypeError(f"the env must be an rsl_rl VecEnv (num_envs, num_actions, get_observations(), "
                            f"step(actions)) or an IsaacLabEnv; {type(env).__name__} has no {', '.join(missing)}")
        self.env = env
        self.name = name
        self.num_envs = int(env.num_envs)
        self.num_actions = int(env.num_actions)
        self.device = getattr(env, "device", "cpu")
        groups = observation_groups(env.get_observations())
        self.policy_obs_dim = int(groups["policy"].shape[-1])
        self.critic_obs_dim = int(groups["critic"].shape[-1]) if "critic" in groups else 0
        if asymmetric_critic and not self.critic_obs_dim:
            raise ValueError(f"`asymmetric_critic` needs a 'critic' observation group, which {name}'s observations "
                             f"lack (groups: {', '.join(sorted(groups))}); drop `asymmetric_critic`")
        self.asymmetric = bool(asymmetric_critic)
        dim = self.policy_obs_dim + (self.critic_obs_dim if self.asymmetric else 0)
        self.obs_spec = ObsSpec((dim,))
        self.action_space = Box(low=-jnp.inf, high=jnp.inf, shape=(self.num_actions,))
        self.max_episode_length = getattr(env, "max_episode_length", None)

    # -------------------------------------------------------------- host side
    def _obs(self, observations: Any, extras: Optional[Mapping] = None):
        """[B, obs_dim] float32 torch: the policy group, then the critic group if asymmetric."""
        import torch

        groups = observation_groups(observations, extras)
        if not self.asymmetric:
            return groups["policy"].float()
        return torch.cat([groups["policy"].float(), groups["critic"].float()], dim=-1)

    def observe(self) -> jax.Array:
        """[B, obs_dim] the current observation; :class:`EnvDataError` where it is of the wrong
        shape or not finite (before any action is computed from it)."""
        obs, _ = self._checked(self._obs(self.env.get_observations()))
        return to_jax(obs)

    def step(self, action: jax.Array) -> HostStep:
        """Apply ``action`` [B, A] (JAX) and return the step as one packed JAX frame.  Raises
        :class:`EnvDataError` where the env's reward or observation is of the wrong shape or not
        finite."""
        import torch

        obs, rewards, dones, extras = self.env.step(to_torch(action, self.device))
        obs, rewards = self._checked(self._obs(obs, extras), rewards)
        dones = self._flags("dones", dones, obs.device)
        time_outs = extras.get("time_outs")
        time_outs = torch.zeros_like(dones) if time_outs is None else self._flags("time_outs", time_outs, obs.device) & dones
        columns = torch.stack([rewards, (dones & ~time_outs).float(), time_outs.float()], -1)
        frame = torch.cat([obs, columns], dim=-1)
        log = extras.get("log")  # a TensorDict has no truth value: no `or` between the two
        return HostStep(frame=to_jax(frame), log=_floats(extras.get("episode", {}) if log is None else log))

    def _flags(self, what: str, flags, device):
        """[B] bool torch tensor on ``device`` from the env's ``dones`` or ``time_outs`` (any
        dtype, [B] or [B, 1], a tensor or an array), or :class:`EnvDataError`."""
        import torch

        flags = torch.as_tensor(flags, device=device)
        if flags.numel() != self.num_envs:
            raise EnvDataError(f"the env's {what} has shape {tuple(flags.shape)}, not ({self.num_envs},): one per env")
        return flags.reshape(-1).to(torch.bool)

    def _checked(self, obs, rewards=None):
        """(obs [B, obs_dim], rewards [B] float32 or None) as ``step`` packs them, or
        :class:`EnvDataError`: a width other than ``obs_spec``'s would meet the networks as a
        parameter shape error, and a NaN or Inf as a NaN loss later (the finite check costs one
        reduction per step)."""
        import torch

        b, dim = self.num_envs, self.obs_spec.shape[-1]
        if tuple(obs.shape) != (b, dim):
            raise EnvDataError(f"the env's observation has shape {tuple(obs.shape)}, not ({b}, {dim}) as at the start "
                               "(num_envs, obs_spec width): its observation groups must keep their widths")
        if rewards is None:
            rewards = torch.zeros(b)
        rewards = torch.as_tensor(rewards)
        if rewards.numel() != b:
            raise EnvDataError(f"the env's reward has shape {tuple(rewards.shape)}, not ({b},): one reward per env")
        rewards = rewards.reshape(-1).float().to(obs.device)
        if not bool(torch.isfinite(rewards).all() & torch.isfinite(obs).all()):  # one host sync per step
            for what, x in (("reward", rewards), ("observation", obs)):
                bad = ~torch.isfinite(x)
                if bool(bad.any()):
                    env = int(bad.reshape(b, -1).any(-1).nonzero()[0, 0])
                    raise EnvDataError(f"the env's {what} is not finite (NaN or Inf; first in env {env})")
        return obs, rewards

    def randomize_episode_lengths(self, seed: int = 0) -> None:
        """rsl_rl's ``init_at_random_ep_len``: start every env at a random point of its episode
        so that time-outs spread over iterations instead of all landing together."""
        import torch

        if self.max_episode_length is None or not hasattr(self.env, "episode_length_buf"):
            raise ValueError("init_at_random_ep_len needs the env's max_episode_length and episode_length_buf")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        buf = self.env.episode_length_buf
        self.env.episode_length_buf = torch.randint(
            0, int(self.max_episode_length), tuple(buf.shape), generator=gen).to(buf.device, buf.dtype)

    # ------------------------------------------------- what make_trainer needs
    def reset(self, key: jax.Array) -> EnvState:
        """A placeholder state of zeros with the right shapes (pure, jittable): the trainer's
        ``init`` only reads the observation shape; the real env state lives in torch."""
        del key
        b = self.num_envs
        zeros_obs = jnp.zeros((b,) + self.obs_spec.shape, jnp.float32)
        zf, zi, fb = jnp.zeros(b), jnp.zeros(b, jnp.int32), jnp.zeros(b, bool)
        return EnvState(obs=zeros_obs, reward=zf, terminated=fb, truncated=fb, final_obs=zeros_obs,
                        episode_return=zf, episode_length=zi, done_return=zf, done_length=zi,
                        inner=(), key=jnp.zeros((b, 2), jnp.uint32))

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()


def _floats(log: Mapping) -> dict[str, float]:
    out = {}
    for k, v in log.items():
        try:
            out[str(k)] = float(v.float().mean()) if hasattr(v, "float") else float(np.mean(v))
        except (TypeError, ValueError):
            continue
    return out


# ------------------------------------------------------------------ registry
def names() -> list[str]:
    """The paper's tasks (any registered IsaacLab task builds through :func:`make`); without
    IsaacLab a one-line :class:`MissingDependencyError`, so ``bpo-jax envs`` shows the hint."""
    require("torch", "rsl_rl", "isaaclab")
    return list(PAPER_TASKS)


# make()'s simulator options, with their defaults: AppLauncher's (headless, device) and
# parse_env_cfg's use_fabric (left out: the task's own setting, on unless it says otherwise).
OPTIONS = {"headless": True, "device": "cuda:0", "use_fabric": True}


def make(name: str, num_envs: int = 1, reset_pool: int = 0, headless: bool = True, device: str = "cuda:0",
         asymmetric_critic: bool = False, **options) -> IsaacLabEnv:
    """Build IsaacLab task ``name`` (e.g. ``Isaac-Velocity-Rough-G1-v0``) with ``num_envs`` copies,
    wrapped for rsl_rl and then for JAX; ``headless``, ``device`` and ``options`` (``use_fabric``)
    are :data:`OPTIONS`, checked before Isaac Sim starts.  Needs Isaac Sim and IsaacLab."""
    from bpo_jax.envs.options import check_options, refuse_unknown
    from bpo_jax.envs.registry import UnknownEnvError
    from bpo_jax.errors import unknown_name

    if reset_pool:
        raise ValueError("reset_pool does not apply to isaaclab/ tasks (IsaacLab resets inside its step)")
    refuse_unknown(f"isaaclab/{name}", options, ["use_fabric"], listed=OPTIONS)
    options = check_options(f"isaaclab/{name}", {"headless": headless, "device": device, **options}, OPTIONS)
    device = options["device"]
    require("torch", "rsl_rl", "isaaclab")
    from isaaclab.app import AppLauncher

    # Isaac Sim must start before the task modules import, so a task's name is checked after it.
    AppLauncher(headless=options["headless"], device=device)
    import gymnasium as gym
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* tasks)
    from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper
    from isaaclab_tasks.utils import parse_env_cfg

    if name not in gym.registry:
        raise UnknownEnvError(unknown_name("isaaclab environment", name, [t for t in gym.registry if t.startswith("Isaac-")]))
    cfg = parse_env_cfg(name, device=device, num_envs=num_envs, use_fabric=options.get("use_fabric"))
    env = RslRlVecEnvWrapper(gym.make(name, cfg=cfg))
    return IsaacLabEnv(env, name=f"{SUITE}/{name}", asymmetric_critic=asymmetric_critic)
