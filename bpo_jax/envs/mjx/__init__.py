"""mjx suite: Gymnasium's MuJoCo locomotion tasks (v4 and v5) run on MJX, in JAX.

Ids: ``mjx/{Ant,HalfCheetah,Hopper,Humanoid,Swimmer,Walker2d}-{v4,v5}``.  Each task loads the XML
file that the installed ``gymnasium`` ships (``gymnasium/envs/mujoco/assets``; Walker2d-v5 uses
``walker2d_v5.xml``), puts it on the device once with ``mjx.put_model`` and reimplements the task's
``step`` and ``reset_model`` (Gymnasium 1.x ``envs/mujoco/<task>_v4.py`` / ``_v5.py``) in JAX.

Modules: :mod:`~bpo_jax.envs.mjx.tasks` (the tasks: options, observations, rewards, resets),
:mod:`~bpo_jax.envs.mjx.physics` (MuJoCo's integrator and contact frames where MJX-JAX differs),
:mod:`~bpo_jax.envs.mjx.warp` (MuJoCo Warp specifics, shared with the playground suite).


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
  with kinematics only, so the auto-reset the base class evaluates (on any step where an episode
  ended; on GPUs and for vmapped seeds every step) is cheap.

Where MJX 3.x differs from the installed MuJoCo, this suite follows MuJoCo:

* RK4 with the Runge-Kutta-Munthe-Kaas correction of MuJoCo >= 4.0 (:func:`physics.mj_step`);
* MuJoCo's plane-capsule contact frames (:func:`physics.mujoco_contact_frames`);
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
(warp-lang, built for NVIDIA GPUs; it also has a slow CPU backend; see :mod:`.warp`).  Warp follows
MuJoCo's C engine itself, so the :mod:`.physics` corrections do not apply, and:

* Hopper matches Gymnasium within the parity tolerances (``test_warp_one_step_parity_hopper``);
* Ant does not step for step: Warp keeps MJX's plane-capsule contact frame (see above), and 25% of
  one-step transitions from Gymnasium's states differ beyond 1e-3 (qpos by up to 1e-2), as
  with MJX-JAX without the frame patch (28%, same worst error).  Same task, different friction pyramids;
* MJX-Warp has no ``rne_postconstraint``, so nothing that reads ``cfrc_ext`` runs on it:
  Humanoid-v4 (always in its observation), Ant-v4 ``use_contact_forces=True``, and Ant-v5 and
  Humanoid-v5 unless ``include_cfrc_ext_in_observation=False, contact_cost_weight=0``; these fail
  at construction with a one-line error;
* Warp's contacts live in one pool for all worlds of a batch, ``naconmax`` contacts; by default
  ``num_envs x WARP_SEEDS (10) x`` the candidate contacts MJX-JAX allocates per world
  (:func:`warp.buffer_sizes`), which covers up to 10 seeds vmapped in one program (seeds are
  worlds too).  For more, pass ``naconmax=``; Warp prints an overflow warning when the pool is
  too small;
* as in the playground suite, choosing Warp lowers warp-lang's log level to WARNING unless set.

Cost: a step is ``frame_skip`` physics steps of 4 forward passes (RK4; HalfCheetah: Euler, 1), so
MJX on CPU is slow (see the suite's throughput notes); compiling one step takes 15-80 s on two
CPU cores.
"""
from bpo_jax.envs.mjx.tasks import LS_ITERATIONS, MjxEnv, MjxState, asset_path, load_model, make, names
from bpo_jax.envs.mjx.warp import WARP_SEEDS

__all__ = ["LS_ITERATIONS", "WARP_SEEDS", "MjxEnv", "MjxState", "asset_path", "load_model", "make", "names"]
