"""The mjx/ suite's tasks: Gymnasium's MuJoCo locomotion tasks, ``step`` and ``reset_model``
reimplemented in JAX on MJX (package docstring: what matches Gymnasium and what cannot).

Per task: the XML model Gymnasium ships, the constructor options and defaults of each version,
observations, reward terms, healthy ranges, termination and ``info``.  The physics call is
:func:`bpo_jax.envs.mjx.physics.mj_step` (MuJoCo's integrator and contact frames on MJX-JAX) or
MJX's own step on MuJoCo Warp (:mod:`bpo_jax.envs.mjx.warp`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bpo_jax.envs.base import Box, EnvState, FunctionalEnv, ObsSpec
from bpo_jax.envs.mjx import warp
from bpo_jax.envs.mjx.physics import mj_step, mujoco_contact_frames
from bpo_jax.envs.options import check_option, is_int, refuse_unknown
from bpo_jax.envs.registry import require

INF = float("inf")

# Per family: v4 and v5 XML asset names, v4's fixed frame skip, qvel reset noise kind.
_FAMILIES: dict[str, dict[str, Any]] = {
    "Ant": dict(xml=("ant.xml", "ant.xml"), frame_skip=5, qvel_noise="normal"),
    "HalfCheetah": dict(xml=("half_cheetah.xml", "half_cheetah.xml"), frame_skip=5, qvel_noise="normal"),
    "Hopper": dict(xml=("hopper.xml", "hopper.xml"), frame_skip=4, qvel_noise="uniform"),
    "Humanoid": dict(xml=("humanoid.xml", "humanoid.xml"), frame_skip=5, qvel_noise="uniform"),
    "Swimmer": dict(xml=("swimmer.xml", "swimmer.xml"), frame_skip=4, qvel_noise="uniform"),
    "Walker2d": dict(xml=("walker2d.xml", "walker2d_v5.xml"), frame_skip=4, qvel_noise="uniform"),
}

# Gymnasium constructor defaults per (family, version), from gymnasium/envs/mujoco/*_v{4,5}.py.
_HOPPER = dict(
    forward_reward_weight=1.0, ctrl_cost_weight=1e-3, healthy_reward=1.0, terminate_when_unhealthy=True,
    healthy_state_range=(-100.0, 100.0), healthy_z_range=(0.7, INF), healthy_angle_range=(-0.2, 0.2),
    reset_noise_scale=5e-3, exclude_current_positions_from_observation=True,
)
_WALKER = dict(
    forward_reward_weight=1.0, ctrl_cost_weight=1e-3, healthy_reward=1.0, terminate_when_unhealthy=True,
    healthy_z_range=(0.8, 2.0), healthy_angle_range=(-1.0, 1.0), reset_noise_scale=5e-3,
    exclude_current_positions_from_observation=True,
)
_CHEETAH = dict(forward_reward_weight=1.0, ctrl_cost_weight=0.1, reset_noise_scale=0.1,
                exclude_current_positions_from_observation=True)
_SWIMMER = dict(forward_reward_weight=1.0, ctrl_cost_weight=1e-4, reset_noise_scale=0.1,
                exclude_current_positions_from_observation=True)
_ANT_V4 = dict(
    ctrl_cost_weight=0.5, use_contact_forces=False, contact_cost_weight=5e-4, healthy_reward=1.0,
    terminate_when_unhealthy=True, healthy_z_range=(0.2, 1.0), contact_force_range=(-1.0, 1.0),
    reset_noise_scale=0.1, exclude_current_positions_from_observation=True,
)
_ANT_V5 = dict(
    frame_skip=5, forward_reward_weight=1.0, ctrl_cost_weight=0.5, contact_cost_weight=5e-4,
    healthy_reward=1.0, main_body=1, terminate_when_unhealthy=True, healthy_z_range=(0.2, 1.0),
    contact_force_range=(-1.0, 1.0), reset_noise_scale=0.1, exclude_current_positions_from_observation=True,
    include_cfrc_ext_in_observation=True,
)
_HUMANOID_V4 = dict(
    forward_reward_weight=1.25, ctrl_cost_weight=0.1, healthy_reward=5.0, terminate_when_unhealthy=True,
    healthy_z_range=(1.0, 2.0), reset_noise_scale=1e-2, exclude_current_positions_from_observation=True,
)
_HUMANOID_V5 = dict(
    frame_skip=5, forward_reward_weight=1.25, ctrl_cost_weight=0.1, contact_cost_weight=5e-7,
    contact_cost_range=(-INF, 10.0), healthy_reward=5.0, terminate_when_unhealthy=True,
    healthy_z_range=(1.0, 2.0), reset_noise_scale=1e-2, exclude_current_positions_from_observation=True,
    include_cinert_in_observation=True, include_cvel_in_observation=True,
    include_qfrc_actuator_in_observation=True, include_cfrc_ext_in_observation=True,
)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Ant-v4": _ANT_V4, "Ant-v5": _ANT_V5,
    "HalfCheetah-v4": _CHEETAH, "HalfCheetah-v5": dict(frame_skip=5, **_CHEETAH),
    "Hopper-v4": _HOPPER, "Hopper-v5": dict(frame_skip=4, **_HOPPER),
    "Humanoid-v4": _HUMANOID_V4, "Humanoid-v5": _HUMANOID_V5,
    "Swimmer-v4": _SWIMMER, "Swimmer-v5": dict(frame_skip=4, **_SWIMMER),
    "Walker2d-v4": _WALKER, "Walker2d-v5": dict(frame_skip=4, **_WALKER),
}
LS_ITERATIONS = 8  # MJX line-search cap, see load_model
# Options of this suite, not of the Gymnasium constructor (TimeLimit wrapper and auto-reset).
_SUITE_DEFAULTS = dict(max_episode_steps=1000, reset="fresh", impl="jax", naconmax=0)


def _require(load: bool = True) -> None:
    for module in ("mujoco", "mujoco.mjx", "gymnasium"):
        require(module, "mjx", "mujoco", load)


def names() -> list[str]:
    """The task table's ids; checks the packages are installed without importing them (seconds)."""
    _require(load=False)
    return list(_DEFAULTS)


def make(name: str, num_envs: int, **kwargs) -> "MjxEnv":
    _require()
    return MjxEnv(name, num_envs, **kwargs)


def asset_path(xml: str) -> str:
    """Path of a model XML shipped by the installed gymnasium (never copied into this repo)."""
    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", xml)


def load_model(name: str):
    """The host ``mujoco.MjModel`` of task ``name`` as MJX runs it.  Two solver settings differ
    from Gymnasium's model, neither in the physics it describes:

    * PGS (Humanoid's XML) -> Newton, since MJX has no PGS (same convex problem, same limit);
    * line-search iterations capped at ``LS_ITERATIONS``.  MJX runs its line search as a
      fixed-length ``scan`` that under ``vmap`` evaluates every one of the ``ls_iterations`` (50)
      steps even after convergence; on all of the parity test's states (contacts included) it
      converges within 4, and results with a cap of 4, 8 or 50 are bitwise identical.  The cap
      doubles throughput.
    """
    import mujoco

    family, version = name.rsplit("-", 1)
    model = mujoco.MjModel.from_xml_path(asset_path(_FAMILIES[family]["xml"][version == "v5"]))
    if model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
    model.opt.ls_iterations = min(model.opt.ls_iterations, LS_ITERATIONS)
    return model


@struct.dataclass
class MjxState:
    """One environment's simulator state (no batch axis); everything MuJoCo would carry over.

    qpos [nq], qvel [nv], qacc_warmstart [nv]: the mjData state these models depend on.
    xy [2]: the position the next step's velocity is measured from, exactly as Gymnasium reads it
        before ``do_simulation`` (qpos[0:2] for the planar tasks; Ant's body ``xpos`` and
        Humanoid's mass centre from ``xipos``, which after a step belong to the last RK stage).
    steps []: int32 steps taken in this episode (time limit).
    """

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array
    xy: jax.Array
    steps: jax.Array


@dataclass(frozen=True)
class _Config:
    family: str  # "Ant", "HalfCheetah", ...
    v5: bool  # version 5 (else 4)


class MjxEnv(FunctionalEnv):
    """A batch of ``num_envs`` copies of one Gymnasium MuJoCo task, stepped with MJX.

    Public pure functions (no batch axis, jittable):

    * :meth:`transition` ``(inner, action) -> (inner, obs, reward, terminated, terms)``:
      one Gymnasium ``step`` without time limit or reset; ``terms`` holds Gymnasium's ``info``.
    * :meth:`simulate` / :meth:`outcome`: the two halves of :meth:`transition` (physics, then
      reward/observation), so models can share one physics call (tests do).
    * :meth:`initial` ``(qpos, qvel) -> (inner, obs)``: the state Gymnasium's reset gives.
    """

    step_uses_key = False  # MuJoCo's dynamics are deterministic; only resets draw

    def __init__(self, name: str, num_envs: int, **kwargs):
        import mujoco
        from mujoco import mjx

        if name not in _DEFAULTS:
            raise ValueError(f"unknown mjx task {name!r}; valid: {', '.join(_DEFAULTS)}")
        family, version = name.rsplit("-", 1)
        defaults = {**_DEFAULTS[name], **_SUITE_DEFAULTS}
        refuse_unknown(f"mjx/{name}", kwargs, defaults)
        opts = {**defaults, **_check_types(name, kwargs, defaults)}
        _check_options(name, opts)
        self.options = opts
        self._cfg = _Config(family, version == "v5")
        self.max_episode_steps = self.time_limit = int(opts["max_episode_steps"])
        self.frame_skip = int(opts.get("frame_skip", _FAMILIES[family]["frame_skip"]))

        self.mj_model = load_model(name)
        m = self.mj_model
        self.impl = opts["impl"]
        if self.impl == "warp":
            warp.require_installed(f"mjx/{name}")
        self.mjx_model = mjx.put_model(m, impl=self.impl)
        if self.impl == "warp":
            humanoid_v4 = family == "Humanoid" and version == "v4"
            warp.check_supported(f"mjx/{name}", self.uses_cfrc_ext(), always=humanoid_v4)
            self._naconmax, self._njmax = warp.buffer_sizes(m, num_envs, opts["naconmax"])
            self.skip_idle_resets = warp.SKIP_IDLE_RESETS
        self.dt = float(m.opt.timestep) * self.frame_skip
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        self.init_qpos = np.asarray(m.qpos0, np.float32)  # MjData(model).qpos: Gymnasium's init_qpos
        self._body_mass = np.asarray(m.body_mass, np.float32)
        if family == "Ant":
            self._main_body = _body_id(name, m, opts.get("main_body", "torso"))  # v4 reads get_body_com("torso")
        # Reset observations use qfrc_actuator = 0: true for ctrl = 0 when no actuator has a bias.
        if family == "Humanoid" and np.any(m.actuator_biastype != mujoco.mjtBias.mjBIAS_NONE):
            raise ValueError("Humanoid model with biased actuators: reset qfrc_actuator would not be 0")

        low, high = np.asarray(m.actuator_ctrlrange, np.float32).T
        obs_dim = int(jax.eval_shape(self.initial, jnp.asarray(self.init_qpos), jnp.zeros(self.nv))[1].shape[0])
        super().__init__(f"mjx/{name}", num_envs, ObsSpec((obs_dim,), jnp.float32),
                         Box(low=jnp.asarray(low), high=jnp.asarray(high), shape=(self.nu,)))

    # ------------------------------------------------------------------ physics

    def _make_data(self, m):
        """Fresh ``mjx.Data`` for model ``m`` (Warp: for the host model, see :func:`warp.make_data`)."""
        from mujoco import mjx

        if self.impl == "warp":
            return warp.make_data(self.mj_model, self._naconmax, self._njmax)
        return mjx.make_data(m)

    def uses_cfrc_ext(self) -> bool:
        """Whether reward or observation read ``cfrc_ext`` (needs mj_rnePostConstraint)."""
        o, c = self.options, self._cfg
        if c.family == "Ant":
            if c.v5:
                return o["include_cfrc_ext_in_observation"] or o["contact_cost_weight"] != 0
            return o["use_contact_forces"]
        if c.family == "Humanoid":
            return (not c.v5) or o["include_cfrc_ext_in_observation"] or o["contact_cost_weight"] != 0
        return False

    def simulate(self, inner: MjxState, action: jax.Array, model=None, post_constraint: bool | None = None):
        """``do_simulation``: ctrl = action [nu], ``frame_skip`` x :func:`mj_step`, then
        ``mjx.rne_postconstraint`` if cfrc_ext is used.  Returns the final ``mjx.Data`` (its
        derived fields belong to the last RK stage, as in MuJoCo).

        ``model`` (default: this task's ``mjx.Model``) lets models with the same structure (e.g.
        Walker2d v4/v5, which differ only in a friction) share one compiled program."""
        from mujoco import mjx

        m = self.mjx_model if model is None else model
        d = self._make_data(m).replace(
            qpos=inner.qpos, qvel=inner.qvel, qacc_warmstart=inner.qacc_warmstart,
            ctrl=jnp.asarray(action, jnp.float32),
        )
        if self.impl == "warp":  # MuJoCo Warp follows MuJoCo's C engine, none of the JAX fixes apply
            return jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(m, d), d)
        with mujoco_contact_frames():
            d = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mj_step(m, d), d)
        if self.uses_cfrc_ext() if post_constraint is None else post_constraint:
            d = mjx.rne_postconstraint(m, d)
        return d

    def transition(self, inner: MjxState, action: jax.Array):
        """One Gymnasium ``step`` of one environment (no time limit, no reset).

        inner: MjxState; action: [nu] float32.
        Returns (inner', obs [O] float32, reward [] float32, terminated [] bool, terms): ``terms``
        has exactly the keys of Gymnasium's ``info`` for this version and options, float32 scalars
        (Humanoid-v5's ``tendon_length``/``tendon_velocity``: [2])."""
        return self.outcome(inner, action, self.simulate(inner, action))

    def outcome(self, inner: MjxState, action: jax.Array, data):
        """Reward, termination, observation and info of a step, from the ``mjx.Data`` after it."""
        xy = self._position(data)
        velocity = (xy - inner.xy) / self.dt
        reward, terminated, terms = _REWARDS[self._cfg.family](self, inner, action, data, xy, velocity)
        new = MjxState(qpos=data.qpos, qvel=data.qvel, qacc_warmstart=data.qacc_warmstart, xy=xy,
                       steps=inner.steps + 1)
        terms = {k: jnp.asarray(v, jnp.float32) for k, v in terms.items()}
        return new, self._observe(data), jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool), terms

    # ------------------------------------------------------------------ reset

    def initial(self, qpos: jax.Array, qvel: jax.Array):
        """Gymnasium's state after ``mj_resetData`` + ``set_state(qpos, qvel)``: qpos [nq], qvel [nv]
        -> (MjxState, obs [O])."""
        return self.initial_from(self.set_state(qpos, qvel))

    def set_state(self, qpos: jax.Array, qvel: jax.Array, model=None):
        """``mjx.Data`` after ``mj_resetData`` + ``set_state(qpos, qvel)``, with the kinematics this
        task observes (ctrl, forces and cfrc_ext are zero).  ``model``: as in :meth:`simulate`."""
        from mujoco import mjx

        m = self.mjx_model if model is None else model
        qpos = jnp.asarray(qpos, jnp.float32)
        d = self._make_data(m).replace(qpos=qpos, qvel=jnp.asarray(qvel, jnp.float32))
        if self._cfg.family == "Humanoid":
            # MJX-Warp has no com_vel on its own; its forward computes the same observed terms.
            d = mjx.forward(m, d) if self.impl == "warp" else mjx.com_vel(m, mjx.com_pos(m, mjx.kinematics(m, d)))
        elif self._cfg.family == "Ant":
            d = mjx.kinematics(m, d)
        # mjx.kinematics normalizes free-joint quaternions in qpos; MuJoCo leaves qpos as set (a
        # reset's noisy quaternion is in the first observation) and normalizes when integrating.
        return d.replace(qpos=qpos)

    def initial_from(self, d):
        """(MjxState, obs [O]) of the episode starting at ``d`` from :meth:`set_state`."""
        inner = MjxState(qpos=d.qpos, qvel=d.qvel, qacc_warmstart=jnp.zeros(self.nv, jnp.float32),
                         xy=self._position(d), steps=jnp.zeros((), jnp.int32))
        return inner, self._observe(d)

    def _reset_one(self, key):
        """``reset_model``: init_qpos + U(-s, s); init_qvel (zero) + U(-s, s) or s * N(0, 1)."""
        s = float(self.options["reset_noise_scale"])
        kq, kv = jax.random.split(key)
        qpos = self.init_qpos + jax.random.uniform(kq, (self.nq,), minval=-s, maxval=s)
        if _FAMILIES[self._cfg.family]["qvel_noise"] == "normal":
            qvel = s * jax.random.normal(kv, (self.nv,))
        else:
            qvel = jax.random.uniform(kv, (self.nv,), minval=-s, maxval=s)
        return self.initial(qpos, qvel)

    def _step_one(self, key, inner, action):
        inner, obs, reward, terminated, _ = self.transition(inner, action)
        return inner, obs, reward, terminated, inner.steps >= self.max_episode_steps

    def reset_to(self, qpos: jax.Array, qvel: jax.Array, key: jax.Array | None = None) -> EnvState:
        """A batch freshly reset into given states: qpos [num_envs, nq] or [nq] (broadcast), qvel
        [num_envs, nv] or [nv]; ``key`` seeds the per-environment keys (default ``jax.random.key(0)``).
        Same as Gymnasium's ``reset()`` with ``reset_model`` returning these states.  Jittable."""
        qpos = jnp.broadcast_to(jnp.asarray(qpos, jnp.float32), (self.num_envs, self.nq))
        qvel = jnp.broadcast_to(jnp.asarray(qvel, jnp.float32), (self.num_envs, self.nv))
        inner, obs = jax.vmap(self.initial)(qpos, qvel)
        keys = jax.random.split(jax.random.key(0) if key is None else key, self.num_envs)
        return self.state_from(inner, obs, keys)

    # ------------------------------------------------------------------ task terms

    def _position(self, d) -> jax.Array:
        """[2] position whose change is the reported velocity (Gymnasium's ``*_position_before``)."""
        family = self._cfg.family
        if family == "Ant":
            return d.xpos[self._main_body, :2]
        if family == "Humanoid":  # mass_center(): body_mass-weighted xipos
            return (self._body_mass @ d.xipos / self._body_mass.sum())[:2]
        return d.qpos[:2]  # planar tasks use qpos[0] (Swimmer also qpos[1])

    def _observe(self, d) -> jax.Array:
        """[O] float32 observation of ``mjx.Data`` d (Gymnasium's ``_get_obs``)."""
        o, family = self.options, self._cfg.family
        skip = 2 if family in ("Ant", "Humanoid", "Swimmer") else 1
        qpos = d.qpos[skip:] if o["exclude_current_positions_from_observation"] else d.qpos
        qvel = jnp.clip(d.qvel, -10, 10) if family in ("Hopper", "Walker2d") else d.qvel
        parts = [qpos, qvel]
        if family == "Ant" and (o.get("use_contact_forces") or o.get("include_cfrc_ext_in_observation")):
            forces = self._clipped_contact_forces(d)
            parts.append((forces[1:] if self._cfg.v5 else forces).ravel())  # v4: all bodies
        if family == "Humanoid":
            first = 1 if self._cfg.v5 else 0  # v5 drops the world body's rows
            include = (lambda k: o[f"include_{k}_in_observation"]) if self._cfg.v5 else (lambda k: True)
            if include("cinert"):
                parts.append(d._impl.cinert[first:].ravel())
            if include("cvel"):
                parts.append(d.cvel[first:].ravel())
            if include("qfrc_actuator"):
                parts.append(d.qfrc_actuator[6 if self._cfg.v5 else 0:])
            if include("cfrc_ext"):
                parts.append(d._impl.cfrc_ext[first:].ravel())
        return jnp.concatenate(parts).astype(jnp.float32)

    def _clipped_contact_forces(self, d) -> jax.Array:
        """[nbody, 6] Ant's ``contact_forces``: cfrc_ext clipped to contact_force_range."""
        low, high = self.options["contact_force_range"]
        return jnp.clip(d._impl.cfrc_ext, low, high)

    def _healthy_reward(self, healthy: jax.Array) -> jax.Array:
        """v4: paid unless (unhealthy and not terminating); v5: paid only while healthy."""
        o = self.options
        paid = healthy if self._cfg.v5 else jnp.logical_or(healthy, o["terminate_when_unhealthy"])
        return paid.astype(jnp.float32) * o["healthy_reward"]

    def _ctrl_cost(self, action: jax.Array) -> jax.Array:
        return self.options["ctrl_cost_weight"] * jnp.sum(jnp.square(action))


def _in(x: jax.Array, bounds, inclusive: bool = False) -> jax.Array:
    """Elementwise low < x < high (or <= when inclusive)."""
    low, high = bounds
    if inclusive:
        return jnp.logical_and(low <= x, x <= high)
    return jnp.logical_and(low < x, x < high)


def _planar_rewards(env: MjxEnv, inner, action, d, xy, velocity):
    """Hopper and Walker2d: forward + healthy - ctrl; terminate when unhealthy."""
    o, v5 = env.options, env._cfg.v5
    z, angle = d.qpos[1], d.qpos[2]
    healthy = jnp.logical_and(_in(z, o["healthy_z_range"]), _in(angle, o["healthy_angle_range"]))
    if env._cfg.family == "Hopper":  # also every state entry but x, z within healthy_state_range
        state = jnp.concatenate([d.qpos[2:], d.qvel])
        healthy = jnp.logical_and(healthy, jnp.all(_in(state, o["healthy_state_range"])))
    forward = o["forward_reward_weight"] * velocity[0]
    survive = env._healthy_reward(healthy)
    ctrl = env._ctrl_cost(action)
    terminated = jnp.logical_and(~healthy, o["terminate_when_unhealthy"])
    terms = dict(x_position=d.qpos[0], x_velocity=velocity[0])
    if v5:
        terms.update(z_distance_from_origin=d.qpos[1] - env.init_qpos[1], reward_forward=forward,
                     reward_ctrl=-ctrl, reward_survive=survive)
    return forward + survive - ctrl, terminated, terms


def _cheetah_rewards(env: MjxEnv, inner, action, d, xy, velocity):
    """HalfCheetah: forward - ctrl, never terminates."""
    forward = env.options["forward_reward_weight"] * velocity[0]
    ctrl = env._ctrl_cost(action)
    terms = dict(x_position=d.qpos[0], x_velocity=velocity[0], reward_ctrl=-ctrl)
    terms["reward_forward" if env._cfg.v5 else "reward_run"] = forward
    return forward - ctrl, False, terms


def _swimmer_rewards(env: MjxEnv, inner, action, d, xy, velocity):
    """Swimmer: forward - ctrl, never terminates."""
    forward = env.options["forward_reward_weight"] * velocity[0]
    ctrl = env._ctrl_cost(action)
    terms = dict(x_position=xy[0], y_position=xy[1], distance_from_origin=jnp.linalg.norm(xy),
                 x_velocity=velocity[0], y_velocity=velocity[1], reward_ctrl=-ctrl)
    if env._cfg.v5:
        terms.update(reward_forward=forward)
    else:
        terms.update(reward_fwd=forward, forward_reward=forward)
    return forward - ctrl, False, terms


def _ant_rewards(env: MjxEnv, inner, action, d, xy, velocity):
    """Ant: forward + healthy - ctrl - contact (v5 always, v4 with use_contact_forces)."""
    o, v5 = env.options, env._cfg.v5
    finite = jnp.logical_and(jnp.all(jnp.isfinite(d.qpos)), jnp.all(jnp.isfinite(d.qvel)))
    healthy = jnp.logical_and(finite, _in(d.qpos[2], o["healthy_z_range"], inclusive=True))
    forward = velocity[0] * (o["forward_reward_weight"] if v5 else 1.0)
    survive = env._healthy_reward(healthy)
    ctrl = env._ctrl_cost(action)
    terminated = jnp.logical_and(~healthy, o["terminate_when_unhealthy"])
    with_contact = v5 or o["use_contact_forces"]
    contact = (o["contact_cost_weight"] * jnp.sum(jnp.square(env._clipped_contact_forces(d)))
               if with_contact else 0.0)
    reward = forward + survive - ctrl - contact
    if v5:
        position = d.qpos[:2]  # v5 reports qpos, not the body position the velocity uses
        terms = dict(reward_forward=forward, reward_ctrl=-ctrl, reward_contact=-contact, reward_survive=survive)
    else:
        position = xy
        # Gymnasium v4 overwrites reward_ctrl with the contact cost when contact forces are used.
        terms = dict(reward_forward=forward, reward_ctrl=-contact if with_contact else -ctrl,
                     reward_survive=survive, forward_reward=forward)
    terms.update(x_position=position[0], y_position=position[1], distance_from_origin=jnp.linalg.norm(position),
                 x_velocity=velocity[0], y_velocity=velocity[1])
    return reward, terminated, terms


def _humanoid_rewards(env: MjxEnv, inner, action, d, xy, velocity):
    """Humanoid: forward + healthy - ctrl (on data.ctrl == action) - contact (v5)."""
    o, v5 = env.options, env._cfg.v5
    healthy = _in(d.qpos[2], o["healthy_z_range"])
    forward = o["forward_reward_weight"] * velocity[0]
    survive = env._healthy_reward(healthy)
    ctrl = env._ctrl_cost(action)
    terminated = jnp.logical_and(~healthy, o["terminate_when_unhealthy"])
    if not v5:
        terms = dict(reward_linvel=forward, reward_quadctrl=-ctrl, reward_alive=survive,
                     x_position=xy[0], y_position=xy[1], distance_from_origin=jnp.linalg.norm(xy),
                     x_velocity=velocity[0], y_velocity=velocity[1], forward_reward=forward)
        return forward + survive - ctrl, terminated, terms
    low, high = o["contact_cost_range"]
    contact = jnp.clip(o["contact_cost_weight"] * jnp.sum(jnp.square(d._impl.cfrc_ext)), low, high)
    terms = dict(x_position=d.qpos[0], y_position=d.qpos[1], tendon_length=d.ten_length,
                 tendon_velocity=d._impl.ten_velocity, distance_from_origin=jnp.linalg.norm(d.qpos[:2]),
                 x_velocity=velocity[0], y_velocity=velocity[1], reward_survive=survive,
                 reward_forward=forward, reward_ctrl=-ctrl, reward_contact=-contact)
    return forward + survive - ctrl - contact, terminated, terms



_REWARDS: dict[str, Callable] = {
    "Ant": _ant_rewards, "HalfCheetah": _cheetah_rewards, "Hopper": _planar_rewards,
    "Humanoid": _humanoid_rewards, "Swimmer": _swimmer_rewards, "Walker2d": _planar_rewards,
}


def _check_types(name: str, given: dict, defaults: dict) -> dict:
    """Given options in their default's kind (:mod:`bpo_jax.envs.options`: a float option takes a
    finite number, an int option an integer, a range a tuple of two numbers, ...), so that
    ``reset_noise_scale=abc`` or ``healthy_z_range=(0.7,)`` is refused by name instead of failing
    inside the physics, and ``max_episode_steps=1.5`` is not truncated; converted (``1`` for a
    float option is ``1.0``)."""
    checked = {}
    for key, value in given.items():
        if key == "naconmax" or (key == "main_body" and (is_int(value) or isinstance(value, str))):
            checked[key] = value  # naconmax has its own, more precise check; main_body is a body index or name
        else:
            checked[key] = check_option(f"mjx/{name}", key, value, defaults[key])
    return checked


def _body_id(name: str, m, body) -> int:
    """Index of ``body`` (an index or a name) in model ``m``, else a one-line ValueError (MuJoCo
    raises a KeyError for an unknown name; JAX would clamp an index out of range)."""
    names = [m.body(i).name for i in range(m.nbody)]
    if is_int(body) and 0 <= body < m.nbody:
        return int(body)
    if isinstance(body, str) and body in names:
        return names.index(body)
    raise ValueError(f"mjx/{name}: option main_body takes a body index in [0, {m.nbody - 1}] or a body name "
                     f"({', '.join(n for n in names if n)}), got {body!r}")


def _check_options(name: str, o: dict) -> None:
    """One-line ValueErrors for option values this suite cannot honour."""
    if o["reset"] != "fresh":
        raise ValueError(f"mjx/{name}: reset must be 'fresh' (got {o['reset']!r}); "
                         "cached resets: env.with_reset_pool(size)")
    warp.check_impl(f"mjx/{name}", o["impl"])
    if not isinstance(o["naconmax"], (int, np.integer)) or isinstance(o["naconmax"], bool) or o["naconmax"] < 0:
        raise ValueError(f"mjx/{name}: naconmax must be an integer >= 0 (0: sized automatically), got {o['naconmax']}")
    if int(o["max_episode_steps"]) < 1:
        raise ValueError(f"mjx/{name}: max_episode_steps must be >= 1, got {o['max_episode_steps']}")
    if "frame_skip" in o and (int(o["frame_skip"]) != o["frame_skip"] or o["frame_skip"] < 1):
        raise ValueError(f"mjx/{name}: frame_skip must be an integer >= 1, got {o['frame_skip']}")
    if math.isnan(float(o["reset_noise_scale"])) or o["reset_noise_scale"] < 0:
        raise ValueError(f"mjx/{name}: reset_noise_scale must be >= 0, got {o['reset_noise_scale']}")
