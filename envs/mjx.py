"""mjx suite: Gymnasium's MuJoCo locomotion tasks (v4 and v5) run on MJX, in JAX.

Ids: ``mjx/{Ant,HalfCheetah,Hopper,Humanoid,Swimmer,Walker2d}-{v4,v5}``.  Each task loads the XML
file that the installed ``gymnasium`` ships (``gymnasium/envs/mujoco/assets``; Walker2d-v5 uses
``walker2d_v5.xml``), puts it on the device once with ``mjx.put_model`` and reimplements the task's
``step`` and ``reset_model`` (Gymnasium 1.x ``envs/mujoco/<task>_v4.py`` / ``_v5.py``) in JAX.

Faithful (checked against Gymnasium by ``tests/test_mjx_parity.py``, see its tolerances):

* constructor options and defaults per version (v4 tasks have a fixed frame skip, v5 tasks take
  ``frame_skip``), the time limit (``max_episode_steps`` = 1000 as registered), the action space
  (the actuators' ``ctrlrange``), the observation layout;
* the physics call: ``data.ctrl = action`` unclipped (MuJoCo clamps ctrl to the ``ctrlrange`` of
  ctrl-limited actuators; the control cost sees the raw action), ``frame_skip`` x ``mj_step``, then
  ``mj_rnePostConstraint`` where ``cfrc_ext`` is used;
* every reward term, termination rule and ``info`` entry of each version, Gymnasium's quirks
  included: after ``mj_step`` the *derived* fields of mjData (``xpos``, ``xipos``, ``cinert``,
  ``cvel``, ``qfrc_actuator``, ``cfrc_ext``, tendon lengths) belong to the last RK stage, not to
  the new ``qpos``; Ant and Humanoid measure velocity between two such stale positions, so the
  state carries the previous one (:class:`MjxState` ``xy``); v4 Ant reports the contact cost as
  ``reward_ctrl`` when ``use_contact_forces``; v4 pays the healthy reward while unhealthy if
  ``terminate_when_unhealthy`` (the episode ends anyway);
* the solver warm start (``qacc_warmstart``) carried between steps as in mjData;
* reset: ``init_qpos + U(-s, s)``, ``init_qvel + U(-s, s)`` or ``+ s N(0, 1)`` (HalfCheetah, Ant)
  as each ``reset_model``; after ``mj_resetData`` + ``set_state`` the ctrl, ``qfrc_actuator``,
  ``cfrc_ext`` and warm start are zero and qpos keeps an unnormalized noisy quaternion: reproduced
  with kinematics only, so the auto-reset the base class evaluates every step is cheap.

Where MJX 3.x differs from the installed MuJoCo, this module follows MuJoCo:

* RK4: MuJoCo >= 4.0 integrates free/ball-joint orientations with the Runge-Kutta-Munthe-Kaas
  correction, MJX does not (a ~1e-5 rad/step difference that flips contacts at the margin);
  :func:`mj_step` implements it (and rolls the four RK stages into one ``scan``, which compiles
  ~5x faster than ``mjx.step``);
* plane-capsule contact frames: MJX replaces the capsule-axis tangent by a fixed axis when the
  capsule is steeper than 60 degrees, MuJoCo does not; with pyramidal friction cones that changes
  the friction forces (Ant's legs, 3% of qacc).  :func:`mujoco_contact_frames` swaps in MuJoCo's;
* ``mjx.kinematics`` normalizes quaternions in qpos, MuJoCo only when integrating (visible in the
  reset observation): :meth:`MjxEnv.initial` keeps qpos as given.

What cannot be matched:

* random streams: resets draw from JAX keys, not NumPy's generator (same distributions);
* precision: float32 MJX vs float64 MuJoCo; one step agrees to ~1e-4 relative, trajectories drift
  apart chaotically over long horizons, and transitions where MuJoCo itself is discontinuous (a
  contact entering its margin inside an RK stage; 0-2% of contact-rich transitions) can land on
  the other side;
* Humanoid's XML asks for the PGS solver, which MJX lacks: it runs Newton (same convex problem).
  States agree; contact forces (``cfrc_ext`` in the observation, the v5 contact cost) differ
  where PGS had not converged (up to ~1 N out of hundreds; MuJoCo's own PGS vs Newton differ alike);
* MJX's line search is capped at ``LS_ITERATIONS`` (see :func:`load_model`; bitwise-identical results
  on every tested state, 2x throughput);
* ``xml_file``, ``default_camera_config`` and render options are not accepted: the suite runs the
  shipped models, never copies.  ``include_cfrc_ext_in_observation=True`` (v5 default) and
  ``use_contact_forces=True`` (v4 Ant) are supported: MJX computes ``cfrc_ext``
  (``mjx.rne_postconstraint``), and Gymnasium on MuJoCo 4.0 returns real (non-zero) contact forces.

MuJoCo Warp (option ``impl='warp'``, default ``'jax'``): the same tasks with MJX's Warp backend
(warp-lang, built for NVIDIA GPUs; it also has a slow CPU backend).  Warp follows MuJoCo's C engine
itself, so :func:`mj_step` and :func:`mujoco_contact_frames` do not apply, and:

* Hopper matches Gymnasium within the parity tolerances (``test_warp_one_step_parity_hopper``);
* Ant does not step for step: Warp keeps MJX's plane-capsule contact frame (see above), and 25% of
  one-step transitions from Gymnasium's states differ beyond 1e-3 (qpos by up to 1e-2), as
  with MJX-JAX without the frame patch (28%, same worst error).  Same task, different friction pyramids;
* MJX-Warp has no ``rne_postconstraint``, so nothing that reads ``cfrc_ext`` runs on it:
  Humanoid-v4 (always in its observation), Ant-v4 ``use_contact_forces=True``, and Ant-v5 and
  Humanoid-v5 unless ``include_cfrc_ext_in_observation=False, contact_cost_weight=0``; these fail
  at construction with a one-line error;
* Warp's contacts live in one pool for all worlds of a batch, ``naconmax`` contacts; by default
  ``num_envs x WARP_SEEDS (10) x`` the candidate contacts MJX-JAX allocates per world, which
  covers up to 10 seeds vmapped in one program (seeds are worlds too).  For more, pass
  ``naconmax=``; Warp prints an overflow warning when the pool is too small;
* as in the playground suite, choosing Warp lowers warp-lang's log level to WARNING unless set.

Cost: a step is ``frame_skip`` physics steps of 4 forward passes (RK4; HalfCheetah: Euler, 1), so
MJX on CPU is slow (see the suite's throughput notes); compiling one step takes 15-80 s on two
CPU cores.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bpo_jax.envs.base import Box, EnvState, FunctionalEnv, ObsSpec
from bpo_jax.envs.registry import check_mjx_impl

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
WARP_SEEDS = 10  # worlds per env that impl='warp' sizes its contact buffer for by default (see MjxEnv)


def _require() -> None:
    from bpo_jax.envs.registry import require

    for module in ("mujoco", "mujoco.mjx", "gymnasium"):
        require(module, "mjx", "mujoco")


def names() -> list[str]:
    _require()
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

    def __init__(self, name: str, num_envs: int, **kwargs):
        import mujoco
        from mujoco import mjx

        if name not in _DEFAULTS:
            raise ValueError(f"unknown mjx task {name!r}; valid: {', '.join(_DEFAULTS)}")
        family, version = name.rsplit("-", 1)
        defaults = {**_DEFAULTS[name], **_SUITE_DEFAULTS}
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise ValueError(f"mjx/{name} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(defaults))}")
        opts = {**defaults, **kwargs}
        _check_options(name, opts)
        self.options = opts
        self._cfg = _Config(family, version == "v5")
        self.max_episode_steps = int(opts["max_episode_steps"])
        self.frame_skip = int(opts.get("frame_skip", _FAMILIES[family]["frame_skip"]))

        self.mj_model = load_model(name)
        m = self.mj_model
        self.impl = opts["impl"]
        self.mjx_model = mjx.put_model(m, impl=self.impl)
        if self.impl == "warp":
            self._check_warp(name, num_envs)
        self.dt = float(m.opt.timestep) * self.frame_skip
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        self.init_qpos = np.asarray(m.qpos0, np.float32)  # MjData(model).qpos: Gymnasium's init_qpos
        self._body_mass = np.asarray(m.body_mass, np.float32)
        if family == "Ant":
            body = opts.get("main_body", "torso")  # v4 reads get_body_com("torso")
            self._main_body = body if isinstance(body, (int, np.integer)) else m.body(body).id
        # Reset observations use qfrc_actuator = 0: true for ctrl = 0 when no actuator has a bias.
        if family == "Humanoid" and np.any(m.actuator_biastype != mujoco.mjtBias.mjBIAS_NONE):
            raise ValueError("Humanoid model with biased actuators: reset qfrc_actuator would not be 0")

        low, high = np.asarray(m.actuator_ctrlrange, np.float32).T
        obs_dim = int(jax.eval_shape(self.initial, jnp.asarray(self.init_qpos), jnp.zeros(self.nv))[1].shape[0])
        super().__init__(f"mjx/{name}", num_envs, ObsSpec((obs_dim,), jnp.float32),
                         Box(low=jnp.asarray(low), high=jnp.asarray(high), shape=(self.nu,)))

    # ------------------------------------------------------------------ physics

    def _check_warp(self, name: str, num_envs: int) -> None:
        """MuJoCo Warp's limits, as one-line errors; sizes its batch-wide buffers."""
        from mujoco import mjx
        from mujoco.mjx import warp as mjx_warp

        if not mjx_warp.WARP_INSTALLED:
            raise ValueError(f"mjx/{name}: impl='warp' needs warp-lang (pip install warp-lang) for MJX's Warp backend")
        if self.uses_cfrc_ext():
            what = "its observation always includes" if self._cfg.family == "Humanoid" and not self._cfg.v5 else "these options use"
            raise ValueError(f"mjx/{name}: impl='warp' has no mj_rnePostConstraint, and {what} contact forces "
                             "(cfrc_ext); use impl='jax', or on v5 include_cfrc_ext_in_observation=False and "
                             "contact_cost_weight=0")
        # MJX-JAX allocates every candidate contact of a world (and its constraint rows): an exact
        # per-world bound.  Warp's contact buffer is one pool for all worlds of a batch, and seeds
        # vmapped in one program are worlds too, hence the WARP_SEEDS headroom.
        jax_data = mjx.make_data(self.mj_model)
        per_world = jax_data._impl.contact.dist.shape[0]
        self._naconmax = int(self.options["naconmax"]) or max(1, per_world * num_envs * WARP_SEEDS)
        self._njmax = max(1, jax_data._impl.efc_J.shape[0])

    def _make_data(self, m):
        """Fresh ``mjx.Data`` for model ``m``.  Warp's is built from the host model (MJX takes no
        other), so a ``model=`` override changes only the physics calls there, not the Data."""
        from mujoco import mjx

        if self.impl == "warp":  # MJX builds Warp's Data from the host model only
            return mjx.make_data(self.mj_model, impl="warp", naconmax=self._naconmax, njmax=self._njmax)
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


def _rkmk() -> bool:
    """MuJoCo >= 4.0 integrates ball/free-joint orientations in RK4 with the Runge-Kutta-Munthe-Kaas
    correction (changelog 4.0.0, item 5); MJX 3.x and older MuJoCo do not."""
    import mujoco

    return int(mujoco.__version__.split(".")[0]) >= 4


def _rotation_dofs(m) -> np.ndarray:
    """[R, 3] dof indices of the angular velocities of the ball and free joints."""
    from mujoco import mjx

    rows = []
    for jnt_type, adr in zip(np.asarray(m.jnt_type), np.asarray(m.jnt_dofadr)):
        if jnt_type == mjx.JointType.FREE:
            rows.append(np.arange(adr + 3, adr + 6))
        elif jnt_type == mjx.JointType.BALL:
            rows.append(np.arange(adr, adr + 3))
    return np.array(rows, np.int32).reshape(-1, 3)


def _dexpinv(u: jax.Array, w: jax.Array) -> jax.Array:
    """[R, 3] right-trivialised inverse dexp of rotation vectors u applied to angular velocities w,
    truncated after the third term (exact to 4th order, what RK4-Munthe-Kaas needs)."""
    uw = jnp.cross(u, w)
    return w + 0.5 * uw + jnp.cross(u, uw) / 12.0


def mj_step(m, d):
    """``mj_step`` on MJX: ``mjx.step`` for Euler; for RK4 our own four-stage loop (see below).

    ``mjx.step`` unrolls RK4: its first ``forward`` plus three unrolled stages are four copies of
    the whole forward pass (collision and constraint solver) in the compiled program.  Here the
    four stages run in a rolled ``scan`` with one copy of ``forward``: compiling is ~5x faster, and
    with plain RK4 the results agree with ``mjx.step`` to float32 round-off.

    MuJoCo >= 4.0 adds the Runge-Kutta-Munthe-Kaas correction for ball/free-joint orientations
    (a stage's angular velocity enters the positions through ``dexp^-1`` of the stage's rotation),
    which MJX 3.x lacks; it is applied here when the installed MuJoCo does it, so Ant and Humanoid
    follow the same integrator as Gymnasium.  Derived fields of the returned Data belong to the last
    stage, as in MuJoCo.  Falls back to ``mjx.step`` if MJX's private helpers move.
    """
    from mujoco import mjx

    if m.opt.integrator != mjx.IntegratorType.RK4:
        return mjx.step(m, d)
    try:
        from mujoco.mjx._src import scan
        from mujoco.mjx._src.forward import _RK4_B, _advance, _integrate_pos
    except ImportError:  # pragma: no cover - MJX internals changed: correct but slower to compile
        return mjx.step(m, d)

    dt = m.opt.timestep
    # Stage i starts from d0 '+' a_i * dt * (derivative of stage i-1); stage 0 is d0 itself.
    a = jnp.array([0.0, 0.5, 0.5, 1.0], jnp.float32)
    b = jnp.asarray(_RK4_B, jnp.float32)
    first = jnp.array([True, False, False, False])
    rot = _rotation_dofs(m) if _rkmk() else np.zeros((0, 3), np.int32)
    d0 = d
    integrate = lambda *args: _integrate_pos(*args, dt=dt)

    def stage(carry, x):
        sums, vpos, d = carry  # vpos [nv]: velocity of stage i-1 that moves the positions
        a_i, b_i, first_i = x
        qpos = scan.flat(m, integrate, "jqv", "q", m.jnt_type, d0.qpos, a_i * vpos)
        qvel = d0.qvel + a_i * d.qacc * dt
        act = d0.act + a_i * d.act_dot * dt
        pick = lambda start, stage_value: jnp.where(first_i, start, stage_value)
        d = d.replace(qpos=pick(d0.qpos, qpos), qvel=pick(d0.qvel, qvel), act=pick(d0.act, act),
                      time=d0.time + a_i * dt)
        d = mjx.forward(m, d)
        vpos_i = d.qvel
        if rot.size:  # Munthe-Kaas: this stage's rotation u = a_i dt w_{i-1}
            u = a_i * dt * vpos[rot]
            vpos_i = vpos_i.at[rot].set(_dexpinv(u, d.qvel[rot]))
        sums = jax.tree.map(lambda s, k: s + b_i * k, sums, (vpos_i, d.qacc, d.act_dot))
        return (sums, vpos_i, d), None

    zeros = jax.tree.map(jnp.zeros_like, (d.qvel, d.qacc, d.act_dot))
    ((qvel, qacc, act_dot), _, last), _ = jax.lax.scan(stage, (zeros, d.qvel, d), (a, b, first))
    d = last.replace(qpos=d0.qpos, qvel=d0.qvel, act=d0.act, time=d0.time)
    return _advance(m, d, act_dot, qacc, qvel)


@contextlib.contextmanager
def mujoco_contact_frames():
    """While tracing: MJX's plane-capsule collision with MuJoCo's contact frame.

    MuJoCo (``mjc_PlaneCapsule`` + ``mju_makeFrame``) orients the first tangent of a
    plane-capsule contact along the capsule axis projected on the plane, however steep the
    capsule.  MJX falls back to a fixed tangent when that projection is shorter than 0.5 (capsule
    steeper than 60 degrees).  With pyramidal friction cones the tangent orientation changes the
    friction pyramid, hence the contact forces: Ant's lower legs hit the floor steeply all the
    time.  This swaps in the MuJoCo frame for the duration of a trace (restored afterwards, so
    other users of MJX in the process are unaffected); a no-op if MJX's internals moved.
    """
    try:
        from mujoco.mjx._src import collision_driver, collision_primitive, math as mjx_math
        from mujoco.mjx._src.types import GeomType
    except ImportError:  # pragma: no cover
        yield
        return
    key = (GeomType.PLANE, GeomType.CAPSULE)
    original = collision_driver._COLLISION_FUNC.get(key)
    if original is None:  # pragma: no cover
        yield
        return

    @collision_primitive.collider(ncon=2)
    def plane_capsule(plane, cap):
        n, axis = plane.mat[:, 2], cap.mat[:, 2]
        tangent, norm = mjx_math.normalize_with_norm(axis - n * jnp.dot(n, axis))
        # mju_normalize3 of a zero vector gives (1, 0, 0): a capsule exactly along the normal.
        tangent = jnp.where(norm < 1e-15, jnp.array([1.0, 0.0, 0.0]), tangent)
        frame = jnp.array([[n, tangent, jnp.cross(n, tangent)]])
        segment = axis * cap.size[1]
        collisions = []
        for offset in (segment, -segment):
            dist, pos = collision_primitive._plane_sphere(n, plane.pos, cap.pos + offset, cap.size[0])
            collisions.append((dist[None], pos[None], frame))
        return jax.tree.map(lambda *x: jnp.concatenate(x), *collisions)

    collision_driver._COLLISION_FUNC[key] = plane_capsule
    try:
        yield
    finally:
        collision_driver._COLLISION_FUNC[key] = original


_REWARDS: dict[str, Callable] = {
    "Ant": _ant_rewards, "HalfCheetah": _cheetah_rewards, "Hopper": _planar_rewards,
    "Humanoid": _humanoid_rewards, "Swimmer": _swimmer_rewards, "Walker2d": _planar_rewards,
}


def _check_options(name: str, o: dict) -> None:
    """One-line ValueErrors for option values this suite cannot honour."""
    if o["reset"] != "fresh":
        raise ValueError(f"mjx/{name}: reset must be 'fresh' (got {o['reset']!r}); "
                         "cached resets: env.with_reset_pool(size)")
    check_mjx_impl(f"mjx/{name}", o["impl"])
    if not isinstance(o["naconmax"], (int, np.integer)) or isinstance(o["naconmax"], bool) or o["naconmax"] < 0:
        raise ValueError(f"mjx/{name}: naconmax must be an integer >= 0 (0: sized automatically), got {o['naconmax']}")
    if int(o["max_episode_steps"]) < 1:
        raise ValueError(f"mjx/{name}: max_episode_steps must be >= 1, got {o['max_episode_steps']}")
    if "frame_skip" in o and (int(o["frame_skip"]) != o["frame_skip"] or o["frame_skip"] < 1):
        raise ValueError(f"mjx/{name}: frame_skip must be an integer >= 1, got {o['frame_skip']}")
    if math.isnan(float(o["reset_noise_scale"])) or o["reset_noise_scale"] < 0:
        raise ValueError(f"mjx/{name}: reset_noise_scale must be >= 0, got {o['reset_noise_scale']}")
