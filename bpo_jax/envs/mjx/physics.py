"""MuJoCo's physics where MJX 3.x (its JAX implementation) differs from the installed MuJoCo.

The mjx/ suite follows MuJoCo, since Gymnasium runs on it:

* RK4: MuJoCo >= 4.0 integrates free/ball-joint orientations with the Runge-Kutta-Munthe-Kaas
  correction, MJX does not (a ~1e-5 rad/step difference that flips contacts at the margin);
  :func:`mj_step` implements it (and rolls the four RK stages into one ``scan``, which compiles
  ~5x faster than ``mjx.step``);
* plane-capsule contact frames: MJX replaces the capsule-axis tangent by a fixed axis when the
  capsule is steeper than 60 degrees, MuJoCo does not; with pyramidal friction cones that changes
  the friction forces (Ant's legs, 3% of qacc).  :func:`mujoco_contact_frames` swaps in MuJoCo's.

MuJoCo Warp follows MuJoCo's C engine itself: none of this applies to ``impl='warp'``.
"""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np


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
