"""mjx/ suite against Gymnasium's MuJoCo tasks, the reference it reimplements.

Method.  MJX runs in float32 with its own constraint solver, MuJoCo in float64: trajectories
agree step by step but separate chaotically over long horizons, so whole-episode returns cannot
be compared.  Instead, per model family:

* one-step parity (``test_one_step_parity``): Gymnasium (``.unwrapped``, no wrappers) is rolled
  out ``STEPS`` = 100 steps from each of 2-4 start states (seeded resets, plus hand-made states
  that cross the healthy-range bounds: Hopper/Walker2d tipping over, an Ant above its z range and
  one jumping out of it, a pushed Humanoid, a HalfCheetah on its back) with random actions up to
  1.2x the ctrl range (MuJoCo clamps ctrl, the control cost sees the raw action).  The rollout
  continues after termination, so unhealthy states lying on the floor are covered as well.
  Before every step both simulators are put into the same state exactly as a reset would
  (``mj_resetData`` + ``set_state`` / ``reset_to``); every variant (v4, v5 and non-default
  options) is compared: reset observation, observation, reward, termination and every ``info``
  entry.
* open loop (``test_open_loop``): 16 seeded resets, 10 steps, each simulator carrying its own
  state (solver warm start, the stale body positions Ant/Humanoid measure velocity from).

A few transitions are discontinuous in MuJoCo itself: a contact entering its margin during an RK
stage switches its damping force on at full strength, so rounding the start state to float32 (or a
1e-6 perturbation) changes MuJoCo's own result by more than the tolerance.  Those are detected on
the MuJoCo side (``_ill_conditioned``) and skipped; they must stay under ``MAX_ILL`` (5%; seen
0-2%).  An open-loop rollout is compared up to its first such transition.

Tolerances, elementwise ``|mjx - gymnasium| <= atol + rtol * |gymnasium|``:

* state, reward, info (all families): rtol = atol = 1e-3.  Worst seen: 0.2x the tolerance
  (HalfCheetah), 0.003-0.07x elsewhere: float32 round-off through 4-5 substeps, / dt.
* contact forces (cfrc_ext observation columns): Ant rtol 1e-2, atol 5e-2 (worst seen 0.2x);
  Humanoid rtol 2e-2, atol 1.0 N (worst seen 0.26x).  Humanoid's XML asks for PGS, which MJX lacks:
  MJX runs Newton, and MuJoCo's own PGS and Newton forces differ by up to ~0.7 N on these states.
* open loop: rtol = atol = 1e-2 (worst seen 0.23x, HalfCheetah), on the non-contact-force columns.

Termination must agree exactly, except within 1e-3 of a healthy-range bound.

Cost.  Compiling an MJX step dominates (10-30 s per model on two CPU cores, Humanoid ~40 s), so each
family compiles ONE step program: a ``lax.map`` (compiles ~2x faster than ``vmap``) over a fixed chunk
of states, in which the physics call and the start state's kinematics run once for all variants of the
family (v4 and v5 use the same XML except Walker2d, whose models differ only in a friction and run the
same executable), compiled with LLVM's expensive passes and XLA's MLIR fusion emitters off.  Every
transition of a family goes through it in a few calls and the open-loop test reuses it.  Ant and
Humanoid parity are marked ``slow`` (~20 s and ~45 s alone on the 2-core machine); the whole file
takes ~150 s there on one worker.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("mujoco.mjx")
gym = pytest.importorskip("gymnasium")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bpo_jax import envs, runner  # noqa: E402
from bpo_jax.envs import mjx as M  # noqa: E402
from tests.compiling import FULL, compile_fast  # noqa: E402

CHUNK = 64  # states per compiled call: one fixed shape, so one executable per family
STEPS = 100  # steps per start state in the one-step parity rollouts
OPEN_LOOP_STEPS = 10
OPEN_LOOP_STARTS = 16  # seeded resets rolled out open loop, side by side
# runner.FAST_COMPILE but for LLVM's optimisation level (XLA's default, over the session's
# XLA_FLAGS): these step programs run for seconds, so only the options that cost little run time
# are taken (~25% faster compiles).
FAST_COMPILE = {**runner.FAST_COMPILE, "xla_backend_optimization_level": FULL["xla_backend_optimization_level"]}

# family -> (rtol, atol) for one-step parity of the state, reward and info terms
TOL = {f: (1e-3, 1e-3) for f in ("Swimmer", "HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid")}
# family -> (rtol, atol) for contact-force (cfrc_ext) observation columns
CFRC_TOL = {"Ant": (1e-2, 5e-2), "Humanoid": (2e-2, 1.0)}
CFRC_TOL.update({f: TOL[f] for f in TOL if f not in CFRC_TOL})
MAX_ILL = 0.05  # largest share of transitions allowed to be discontinuous in MuJoCo itself
# family -> (rtol, atol) for the open-loop horizon
OPEN_LOOP = {f: (1e-2, 1e-2) for f in TOL}

# Variants compared per family: (id, Gymnasium constructor options).  The first drives the rollout.
VARIANTS = {
    "Hopper": [("Hopper-v4", {}), ("Hopper-v5", {}), ("Hopper-v4", dict(terminate_when_unhealthy=False)),
               ("Hopper-v5", dict(terminate_when_unhealthy=False, exclude_current_positions_from_observation=False,
                                  healthy_reward=0.5, forward_reward_weight=2.0, healthy_angle_range=(-0.3, 0.3)))],
    "Walker2d": [("Walker2d-v4", {}), ("Walker2d-v5", {}), ("Walker2d-v4", dict(terminate_when_unhealthy=False)),
                 ("Walker2d-v5", dict(exclude_current_positions_from_observation=False, ctrl_cost_weight=0.1))],
    "HalfCheetah": [("HalfCheetah-v4", {}), ("HalfCheetah-v5", {}),
                    ("HalfCheetah-v5", dict(exclude_current_positions_from_observation=False, ctrl_cost_weight=0.5))],
    "Swimmer": [("Swimmer-v4", {}), ("Swimmer-v5", {}),
                # a control cost 10^4 times the default's: a wrong sign of it shows above the tolerance
                ("Swimmer-v5", dict(exclude_current_positions_from_observation=False, forward_reward_weight=2.0,
                                    ctrl_cost_weight=1.0))],
    "Ant": [("Ant-v4", {}), ("Ant-v5", {}), ("Ant-v4", dict(use_contact_forces=True)),
            ("Ant-v5", dict(include_cfrc_ext_in_observation=False, main_body="torso", terminate_when_unhealthy=False,
                            contact_force_range=(-2.0, 3.0), exclude_current_positions_from_observation=False))],
    "Humanoid": [("Humanoid-v4", {}), ("Humanoid-v5", {}),
                 ("Humanoid-v5", dict(include_cfrc_ext_in_observation=False, include_cinert_in_observation=False,
                                      terminate_when_unhealthy=False, contact_cost_range=(-1.0, 0.5)))],
}
# One xdist group per family: its one-step and open-loop tests share the family's compiled programs.
# The default suite checks one family, Swimmer (planar, hinged, the cheapest to compile); Hopper (its
# healthy-range termination; 34 s of the default suite's compiling), the free-floating ones (Ant, with
# contact forces in its observation, 25 s; Humanoid, its PGS solver swapped for Newton, 83 s), Walker2d
# and HalfCheetah are in `-m extended`, which CI runs too.
EXTENDED_FAMILIES = ("Hopper", "Ant", "Humanoid", "Walker2d", "HalfCheetah")
FAMILIES = [pytest.param(f, marks=[pytest.mark.xdist_group(f"mjx-{f}")]
                         + ([pytest.mark.slow] if f in ("Ant", "Humanoid") else [])
                         + ([pytest.mark.extended] if f in EXTENDED_FAMILIES else []))
            for f in VARIANTS]


# --------------------------------------------------------------------------- Gymnasium side


def _gym_env(env_id: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v4 "out of date" and deprecation notices
        return gym.make(env_id, **kwargs).unwrapped


def _gym_set(genv, qpos, qvel):
    """Gymnasium's state after a reset whose ``reset_model`` picked (qpos, qvel); its obs."""
    mujoco.mj_resetData(genv.model, genv.data)
    genv.set_state(np.asarray(qpos, np.float64), np.asarray(qvel, np.float64))
    return genv._get_obs()


def _starts(family: str, genv) -> list[tuple[np.ndarray, np.ndarray]]:
    """Start states: seeded resets plus hand-made ones that cross the healthy-range bounds."""
    starts = []
    for seed in (0, 1):
        genv.reset(seed=seed)
        starts.append((genv.data.qpos.copy(), genv.data.qvel.copy()))
    q0, v0 = genv.init_qpos.copy(), genv.init_qvel.copy()

    def made(qpos_set=(), qvel_set=()):
        q, v = q0.copy(), v0.copy()
        for i, x in qpos_set:
            q[i] = x
        for i, x in qvel_set:
            v[i] = x
        return q, v

    if family == "Hopper":  # tips over past the angle bound, then lies on the floor
        starts.append(made([(2, 0.15)], [(2, 2.0)]))
    elif family == "Walker2d":
        starts.append(made([(2, 0.9)], [(2, 2.0)]))
    elif family == "Ant":  # above the z range, falling into it; and jumping out of it
        starts += [made([(2, 1.05)], [(2, -1.0)]), made([], [(2, 5.0)])]
    elif family == "Humanoid":  # pushed: falls below z = 1 within a few dozen steps
        starts.append(made([], [(0, 1.0), (3, 1.0)]))
    elif family == "HalfCheetah":  # on its back
        starts.append(made([(2, 2.5)]))
    return starts


def _actions(rng, genv, n):
    """Random actions up to 1.2x the ctrl range: MuJoCo clamps ctrl, the costs see the raw action."""
    low, high = genv.action_space.low, genv.action_space.high
    return rng.uniform(1.2 * low, 1.2 * high, size=(n, low.size)).astype(np.float32)


def _gym_transitions(family: str):
    """(qpos [N, nq], qvel [N, nv], action [N, nu]) along re-synced Gymnasium rollouts."""
    genv = _gym_env(VARIANTS[family][0][0], **VARIANTS[family][0][1])
    rng = np.random.default_rng(0)
    qs, vs, acts = [], [], []
    for qpos, qvel in _starts(family, genv):
        for action in _actions(rng, genv, STEPS):
            qs.append(qpos)
            vs.append(qvel)
            acts.append(action)
            _gym_set(genv, qpos, qvel)
            genv.step(action)
            qpos, qvel = genv.data.qpos.copy(), genv.data.qvel.copy()
    return np.array(qs), np.array(vs), np.array(acts)


def _gym_reference(genv, qpos, qvel, actions):
    """Per transition: reset obs, obs, reward, terminated, info, next qpos."""
    out = dict(obs0=[], obs=[], reward=[], terminated=[], info=[], qpos=[], qvel=[])
    for q, v, a in zip(qpos, qvel, actions):
        out["obs0"].append(_gym_set(genv, q, v))
        obs, reward, terminated, truncated, info = genv.step(a)
        assert not truncated
        info = {k: np.array(x, copy=True) for k, x in info.items()}  # v5 Humanoid's tendon arrays alias mjData
        for k, x in (("obs", obs), ("reward", reward), ("terminated", terminated), ("info", info),
                     ("qpos", genv.data.qpos.copy()), ("qvel", genv.data.qvel.copy())):
            out[k].append(x)
    return out


# --------------------------------------------------------------------------- MJX side


class Harness:
    """The compiled MJX programs of one family: ``reset_to`` and one step of every variant."""

    def __init__(self, family: str):
        self.family = family
        self.envs = [M.make(env_id, CHUNK, **kw) for env_id, kw in VARIANTS[family]]
        base = self.envs[0]
        post = any(e.uses_cfrc_ext() for e in self.envs)

        def one(model, inner, action):
            # The physics and the kinematics of the start state run once, for all variants.
            data = base.simulate(inner, action, model=model, post_constraint=post)
            start = base.set_state(inner.qpos, inner.qvel, model=model)
            return [(e.initial_from(start)[1], e.outcome(inner, action, data)) for e in self.envs]

        def chunk(model, inner, actions):
            return jax.lax.map(lambda x: one(model, *x), (inner, actions))

        states = jax.ShapeDtypeStruct((CHUNK, base.nq), jnp.float32), jax.ShapeDtypeStruct((CHUNK, base.nv), jnp.float32)
        state = jax.eval_shape(base.reset_to, *states)
        actions = jax.ShapeDtypeStruct((CHUNK, base.nu), jnp.float32)
        self._reset = jax.jit(base.reset_to).lower(*states).compile(FAST_COMPILE)
        self._step = jax.jit(chunk).lower(base.mjx_model, state.inner, actions).compile(FAST_COMPILE)

    def reset(self, qpos, qvel):
        """MjxState batch [CHUNK] after ``reset_to``."""
        return self._reset(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32)).inner

    def step(self, variant: int, inner, actions):
        """One step of every variant from ``inner`` [CHUNK] with the physics of ``variant``'s model."""
        return jax.device_get(self._step(self.envs[variant].mjx_model, inner, jnp.asarray(actions, jnp.float32)))

    def one_step(self, model_of: int, qpos, qvel, actions):
        """Every variant's (reset obs, (inner, obs, reward, terminated, terms)) for N transitions, with
        the physics of variant ``model_of``'s model (only variants sharing its XML are meaningful)."""
        n = len(qpos)
        pad = (-n) % CHUNK
        qpos, qvel, actions = (np.concatenate([x, np.repeat(x[-1:], pad, 0)]) for x in (qpos, qvel, actions))
        outs = []
        for i in range(0, n + pad, CHUNK):
            inner = self.reset(qpos[i:i + CHUNK], qvel[i:i + CHUNK])
            outs.append(self.step(model_of, inner, actions[i:i + CHUNK]))
        return jax.tree.map(lambda *x: np.concatenate(x)[:n], *outs)


@pytest.fixture(scope="module")
def harness():
    cache = {}

    def get(family: str) -> Harness:
        if family not in cache:
            cache[family] = Harness(family)
        return cache[family]

    return get


@pytest.fixture(scope="module")
def transitions():
    cache = {}

    def get(family: str):
        if family not in cache:
            cache[family] = _gym_transitions(family)
        return cache[family]

    return get


# --------------------------------------------------------------------------- comparisons


def _cfrc_columns(env) -> int:
    """How many trailing observation columns are contact forces (cfrc_ext)."""
    o, family, v5 = env.options, env._cfg.family, env._cfg.v5
    rows = env.mj_model.nbody - (1 if v5 else 0)
    if family == "Ant" and (o.get("use_contact_forces") or o.get("include_cfrc_ext_in_observation")):
        return 6 * rows
    if family == "Humanoid" and (not v5 or o["include_cfrc_ext_in_observation"]):
        return 6 * rows
    return 0


def _tolerance(family: str, env, width: int):
    """(rtol [O], atol [O]) for an observation of ``width`` columns: contact-force columns looser."""
    (rtol, atol), (rtol_c, atol_c) = TOL[family], CFRC_TOL[family]
    n = _cfrc_columns(env)
    rt, at = np.full(width, rtol), np.full(width, atol)
    if n:
        rt[-n:], at[-n:] = rtol_c, atol_c
    return rt, at


def _ratio(actual, desired, rtol, atol) -> np.ndarray:
    """|actual - desired| / (atol + rtol |desired|), elementwise (<= 1 passes)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    return np.abs(actual - desired) / (atol + rtol * np.abs(desired))


def _assert_close(what: str, actual, desired, rtol, atol, keep=None) -> float:
    """Elementwise |actual - desired| <= atol + rtol |desired| over the rows ``keep`` (default all)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != gymnasium {desired.shape}"
    ratio = _ratio(actual, desired, rtol, atol)
    if keep is not None:
        ratio = ratio * keep.reshape((-1,) + (1,) * (ratio.ndim - 1))
    if not ratio.size:
        return 0.0
    worst = np.unravel_index(np.argmax(ratio), ratio.shape)
    assert ratio[worst] <= 1.0, (
        f"{what}: mjx {actual[worst]:.6g} vs gymnasium {desired[worst]:.6g} at {worst} "
        f"(rtol {np.broadcast_to(rtol, ratio.shape)[worst]:g}, atol {np.broadcast_to(atol, ratio.shape)[worst]:g})")
    return float(ratio[worst])


def _ill_conditioned(family, genv, qpos, qvel, actions, trials=2, seed=0) -> np.ndarray:
    """[N] bool: transitions where MuJoCo itself is discontinuous: rounding the start state to
    float32, or a 1e-6 perturbation of it, moves MuJoCo's next (qpos, qvel, cfrc_ext) by more than
    the tolerance (float32 round-off is ~1e-7).  This happens when a contact enters its margin during
    one of the RK stages (the damping term of the contact force switches on at full strength):
    round-off then legitimately lands on either side."""
    (rtol, atol), (rtol_c, atol_c) = TOL[family], CFRC_TOL[family]
    rng = np.random.default_rng(seed)
    f32 = lambda x: x.astype(np.float32).astype(np.float64)
    ill = np.zeros(len(qpos), bool)

    def outcome(q, v, a):
        _gym_set(genv, q, v)
        genv.step(a)
        return np.concatenate([genv.data.qpos, genv.data.qvel]), genv.data.cfrc_ext.ravel().copy()

    for n, (q, v, a) in enumerate(zip(qpos, qvel, actions)):
        ref_state, ref_cfrc = outcome(q, v, a)
        starts = [(f32(q), f32(v))] + [(q + 1e-6 * (1 + np.abs(q)) * rng.standard_normal(q.shape),
                                        v + 1e-6 * (1 + np.abs(v)) * rng.standard_normal(v.shape))
                                       for _ in range(trials)]
        for q1, v1 in starts:
            state, cfrc = outcome(q1, v1, a)
            jump = _ratio(state, ref_state, rtol, atol).max() > 1
            if family in ("Ant", "Humanoid"):  # the only tasks that observe contact forces
                jump = jump or _ratio(cfrc, ref_cfrc, rtol_c, atol_c).max() > 1
            if jump:
                ill[n] = True
                break
    return ill


def _healthy_margin(env_id: str, options: dict, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """[N] distance of Gymnasium's next state to the nearest healthy-range bound (inf: no bound)."""
    o = {**M.tasks._DEFAULTS[env_id], **options}
    family = env_id.split("-")[0]
    if family in ("HalfCheetah", "Swimmer"):
        return np.full(len(qpos), np.inf)
    dist = lambda x, bounds: np.min(np.abs(np.asarray(x)[..., None] - np.asarray(bounds, float)), axis=-1)
    if family in ("Ant", "Humanoid"):
        return dist(qpos[:, 2], o["healthy_z_range"])
    margin = np.minimum(dist(qpos[:, 1], o["healthy_z_range"]), dist(qpos[:, 2], o["healthy_angle_range"]))
    if family == "Hopper":
        state = np.concatenate([qpos[:, 2:], qvel], axis=1)
        margin = np.minimum(margin, dist(state, o["healthy_state_range"]).min(axis=1))
    return margin


def _compare(tag, mjx_out, gym_out, rtol, atol, keep):
    """Assert one variant's MJX outputs match Gymnasium's on the rows ``keep``.

    mjx_out: (obs [N, O], reward [N], terminated [N], terms {key: [N, ...]}); rtol/atol: [O] per
    observation column, their first entries apply to reward and info."""
    obs, reward, terminated, terms = mjx_out
    worst = _assert_close(f"{tag} obs", obs, np.array(gym_out["obs"]), rtol, atol, keep)
    worst = max(worst, _assert_close(f"{tag} reward", reward, np.array(gym_out["reward"]), rtol[0], atol[0], keep))
    infos = gym_out["info"]
    assert set(terms) == set(infos[0]), f"{tag}: info keys {sorted(terms)} != gymnasium {sorted(infos[0])}"
    for key in infos[0]:
        desired = np.array([np.asarray(i[key]) for i in infos])
        worst = max(worst, _assert_close(f"{tag} info[{key!r}]", terms[key], desired, rtol[0], atol[0], keep))
    gym_term = np.array(gym_out["terminated"], bool)
    wrong = (np.asarray(terminated) != gym_term) & (gym_out["margin"] > 1e-3) & keep
    assert not wrong.any(), (f"{tag}: terminated differs at {np.nonzero(wrong)[0][:10]} "
                             f"(gymnasium {gym_term[wrong][:10]})")
    return worst


# --------------------------------------------------------------------------- tests: cheap


def test_names_and_registry():
    ids = envs.list_envs("mjx")
    assert ids == [f"mjx/{f}-{v}" for f in ("Ant", "HalfCheetah", "Hopper", "Humanoid", "Swimmer", "Walker2d")
                   for v in ("v4", "v5")]


def test_options_errors_are_one_line():
    with pytest.raises(ValueError, match="valid: .*healthy_z_range") as err:
        envs.make("mjx/Hopper-v4", 1, no_such_option=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="frame_skip"):  # v4 tasks have a fixed frame skip, like Gymnasium
        envs.make("mjx/Hopper-v4", 1, frame_skip=2)
    with pytest.raises(ValueError, match="reset"):
        envs.make("mjx/Hopper-v5", 1, reset="pool")


@pytest.mark.parametrize("env_id", list(M.tasks._DEFAULTS))
def test_defaults_spaces_and_shapes_match_gymnasium(env_id):
    """Constructor defaults read from Gymnasium's signature; action/observation spaces; dt."""
    genv = _gym_env(env_id)
    signature = inspect.signature(type(genv).__init__).parameters
    gym_defaults = {k: p.default for k, p in signature.items()
                    if p.default is not inspect.Parameter.empty and k not in ("xml_file", "default_camera_config")}
    assert M.tasks._DEFAULTS[env_id] == gym_defaults
    env = M.make(env_id, 2)
    assert env.max_episode_steps == gym.spec(env_id).max_episode_steps == 1000
    assert env.obs_spec.shape == genv.observation_space.shape and env.obs_spec.dtype == jnp.float32
    assert env.action_space.shape == genv.action_space.shape
    np.testing.assert_array_equal(env.action_space.low, genv.action_space.low)
    np.testing.assert_array_equal(env.action_space.high, genv.action_space.high)
    assert env.dt == pytest.approx(genv.dt)
    np.testing.assert_allclose(env.init_qpos, genv.init_qpos, rtol=1e-7)


@pytest.mark.parametrize("env_id, options", [
    ("Ant-v4", dict(use_contact_forces=True)), ("Ant-v5", dict(include_cfrc_ext_in_observation=False)),
    ("Humanoid-v5", dict(include_cfrc_ext_in_observation=False, include_cvel_in_observation=False)),
    ("Hopper-v5", dict(exclude_current_positions_from_observation=False)),
    ("Swimmer-v4", dict(exclude_current_positions_from_observation=False)),
])
def test_observation_options_shapes(env_id, options):
    assert M.make(env_id, 1, **options).obs_spec.shape == _gym_env(env_id, **options).observation_space.shape


@pytest.mark.parametrize("env_id", ["Humanoid-v5", "Ant-v4", "Walker2d-v5"])
def test_model_is_gymnasiums_but_for_solver_settings(env_id):
    """MJX runs Gymnasium's own model; only solver settings differ: PGS (Humanoid) -> Newton, which
    MJX has instead, and MJX's line-search cap (see ``M.load_model``)."""
    ours, theirs = M.load_model(env_id), _gym_env(env_id).model
    assert "PGS" in M.__doc__
    if env_id.startswith("Humanoid"):
        assert theirs.opt.solver == mujoco.mjtSolver.mjSOL_PGS and ours.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON
    else:
        assert ours.opt.solver == theirs.opt.solver
    assert ours.opt.ls_iterations == min(theirs.opt.ls_iterations, M.LS_ITERATIONS)
    for field in ("timestep", "integrator", "cone", "iterations", "tolerance", "gravity", "density", "viscosity"):
        np.testing.assert_array_equal(getattr(ours.opt, field), getattr(theirs.opt, field), err_msg=field)
    for field in ("body_mass", "body_inertia", "geom_friction", "geom_size", "geom_margin", "jnt_range",
                  "dof_damping", "actuator_gear", "actuator_ctrlrange", "qpos0"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)
    # cfrc_ext is real in Gymnasium (mj_rnePostConstraint after every step) and computed by MJX.
    assert M.make("Humanoid-v4", 1).uses_cfrc_ext() and M.make("Ant-v5", 1).uses_cfrc_ext()
    assert not M.make("Ant-v4", 1).uses_cfrc_ext() and M.make("Ant-v4", 1, use_contact_forces=True).uses_cfrc_ext()


def test_contact_frame_patch_is_scoped():
    """MuJoCo's plane-capsule contact frame is swapped into MJX only while a step is traced."""
    from mujoco.mjx._src import collision_driver
    from mujoco.mjx._src.types import GeomType

    key = (GeomType.PLANE, GeomType.CAPSULE)
    original = collision_driver._COLLISION_FUNC[key]
    env = M.make("Hopper-v5", 1)
    inner, _ = jax.eval_shape(env.initial, env.init_qpos, jnp.zeros(env.nv))
    out = jax.eval_shape(env.transition, inner, jnp.zeros(env.nu))  # traces the step, compiles nothing
    assert out[1].shape == env.obs_spec.shape
    assert collision_driver._COLLISION_FUNC[key] is original


def test_reset_distribution():
    """``reset_model``: qpos ~ init + U(-s, s); qvel ~ U(-s, s) (Hopper) or s N(0, 1) (HalfCheetah)."""
    for env_id, normal in (("Hopper-v5", False), ("HalfCheetah-v5", True)):
        env = M.make(env_id, 4096)
        s = env.options["reset_noise_scale"]
        state = jax.jit(env.reset)(jax.random.key(0))
        qpos, qvel = np.asarray(state.inner.qpos), np.asarray(state.inner.qvel)
        assert np.all(np.abs(qpos - env.init_qpos) <= s * (1 + 1e-6))
        np.testing.assert_allclose((qpos - env.init_qpos).std(0), s / np.sqrt(3), rtol=0.05)
        np.testing.assert_allclose(qvel.std(0), s if normal else s / np.sqrt(3), rtol=0.05)
        assert (np.abs(qvel).max() > s) == normal
        assert np.all(np.asarray(state.inner.steps) == 0)
        assert state.obs.dtype == jnp.float32 and state.obs.shape == (4096,) + env.obs_spec.shape


# --------------------------------------------------------------------------- tests: parity


def _model_masks(family, qpos, qvel, actions) -> dict[str, np.ndarray]:
    """XML file -> [N] transitions discontinuous in MuJoCo (with Gymnasium's solver, and with Newton
    where MJX runs Newton instead of Gymnasium's PGS)."""
    masks = {}
    for env_id, options in VARIANTS[family]:
        xml = M.tasks._FAMILIES[family]["xml"][env_id.endswith("v5")]
        if xml in masks:
            continue
        genv = _gym_env(env_id)
        masks[xml] = _ill_conditioned(family, genv, qpos, qvel, actions)
        solver = M.load_model(env_id).opt.solver
        if genv.model.opt.solver != solver:  # Humanoid
            genv.model.opt.solver = solver
            masks[xml] |= _ill_conditioned(family, genv, qpos, qvel, actions)
    return masks


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_parity(family, harness, transitions):
    """Every variant of the family, STEPS steps from each start, re-synced before every step."""
    h = harness(family)
    qpos, qvel, actions = transitions(family)
    masks = _model_masks(family, qpos, qvel, actions)
    outputs = {}  # XML -> outputs of every variant under that model's physics
    report = []
    for k, (env_id, options) in enumerate(VARIANTS[family]):
        env = h.envs[k]
        xml = M.tasks._FAMILIES[family]["xml"][env._cfg.v5]
        if xml not in outputs:  # physics of the first variant with this XML (v4 and v5 share it but Walker2d)
            outputs[xml] = h.one_step(k, qpos, qvel, actions)
        obs0, (inner, obs, reward, terminated, terms) = outputs[xml][k]
        gym_out = _gym_reference(_gym_env(env_id, **options), qpos, qvel, actions)
        gym_out["margin"] = _healthy_margin(env_id, options, np.array(gym_out["qpos"]), np.array(gym_out["qvel"]))
        rtol, atol = _tolerance(family, env, obs.shape[1])
        ill = masks[xml]
        tag = f"{env_id}{options or ''}"
        _assert_close(f"{tag} reset obs", obs0, np.array(gym_out["obs0"]), rtol, atol)
        worst = _compare(tag, (obs, reward, terminated, terms), gym_out, rtol, atol, ~ill)
        assert ill.mean() <= MAX_ILL, f"{tag}: {ill.sum()} of {len(ill)} transitions discontinuous in MuJoCo itself"
        assert obs.dtype == np.float32 and np.all(inner.steps == 1)
        if k == 0 and family in ("Hopper", "Walker2d", "Ant", "Humanoid"):
            assert np.any(np.array(gym_out["terminated"]) & ~ill), f"{family}: no terminating transition tested"
        report.append(f"{tag}: worst error/tolerance {worst:.3f}, {ill.sum()}/{len(ill)} discontinuous skipped")
    print("\n".join(report))


@pytest.mark.extended
@pytest.mark.xdist_group("warp")  # after the playground Warp test: warp-lang compiles its kernels once per process
def test_warp_one_step_parity_hopper(transitions):
    """``impl='warp'``: MuJoCo Warp (warp-lang's CPU backend here) against Gymnasium, on Hopper's
    transitions, with the tolerances of the JAX implementation.  (Ant differs on Warp: it keeps
    MJX's plane-capsule contact frame, which ``mujoco_contact_frames`` replaces for JAX; see the
    suite's docs.)"""
    qpos, qvel, actions = transitions("Hopper")
    env = M.make("Hopper-v4", len(qpos), impl="warp")

    def one(q, v, a):
        inner, obs0 = env.initial(q, v)
        return obs0, env.transition(inner, a)

    args = tuple(jnp.asarray(x, jnp.float32) for x in (qpos, qvel, actions))
    obs0, (inner, obs, reward, terminated, terms) = jax.device_get(compile_fast(jax.vmap(one), *args)(*args))
    gym_out = _gym_reference(_gym_env("Hopper-v4"), qpos, qvel, actions)
    gym_out["margin"] = _healthy_margin("Hopper-v4", {}, np.array(gym_out["qpos"]), np.array(gym_out["qvel"]))
    rtol, atol = _tolerance("Hopper", env, obs.shape[1])
    keep = ~_ill_conditioned("Hopper", _gym_env("Hopper-v4"), qpos, qvel, actions)
    _assert_close("warp reset obs", obs0, np.array(gym_out["obs0"]), rtol, atol)
    _compare("Hopper-v4[warp]", (obs, reward, terminated, terms), gym_out, rtol, atol, keep)
    assert np.any(np.array(gym_out["terminated"]) & keep) and np.all(inner.steps == 1)


@pytest.mark.extended
@pytest.mark.xdist_group("warp")
@pytest.mark.parametrize("env_id", ["mjx/Ant-v4", "playground/CartpoleBalance"])
def test_warp_steps_under_vmapped_seeds(env_id):
    """Trained (seeds vmapped), Ant and playground's tasks stopped at "AssertionError: [True,
    True, ...]": the CPU's idle-reset cond, batched by the seeds' vmap, closed over batched
    values, which Warp's custom_vmap refuses.  Warp envs now always run their reset."""
    env = envs.make(env_id, 2, impl="warp")
    assert env.skip_idle_resets is False and envs.make(env_id, 2).skip_idle_resets is None

    def run(key):
        state = env.reset(key)
        for _ in range(2):
            state = env.step(state, jnp.zeros((2,) + env.action_space.shape))
        return state.reward

    rewards = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 2))
    assert rewards.shape == (2, 2) and bool(jnp.isfinite(rewards).all())


def test_missing_warp_lang_is_one_line_before_mjx_is_asked(monkeypatch):
    """It was MJX's RuntimeError from inside mjx.put_model, a 44-line traceback."""
    from mujoco.mjx import warp as mjx_warp

    monkeypatch.setattr(mjx_warp, "WARP_INSTALLED", False)
    for env_id in ("mjx/Hopper-v4", "playground/CartpoleBalance"):
        with pytest.raises(ValueError) as err:
            envs.make(env_id, 1, impl="warp")
        assert str(err.value) == f"{env_id}: impl='warp' needs warp-lang (pip install warp-lang) for MJX's Warp backend"


def test_warp_options():
    with pytest.raises(ValueError, match="impl must be 'jax' or 'warp'") as err:
        envs.make("mjx/Hopper-v4", 1, impl="cuda")
    with pytest.raises(ValueError, match=r"impl='warp' has no mj_rnePostConstraint.*always includes"):
        envs.make("mjx/Humanoid-v4", 1, impl="warp")
    with pytest.raises(ValueError, match=r"impl='warp' has no mj_rnePostConstraint.*these options use"):
        envs.make("mjx/Ant-v5", 1, impl="warp")
    with pytest.raises(ValueError, match="naconmax must be an integer >= 0"):
        envs.make("mjx/Ant-v4", 1, impl="warp", naconmax="many")
    assert "\n" not in str(err.value)
    # The contact pool serves every world of a batch: envs x WARP_SEEDS x MJX's per-world candidates.
    ant = envs.make("mjx/Ant-v4", 8, impl="warp")
    per_world = jax.eval_shape(M.make("Ant-v4", 1).set_state, ant.init_qpos, np.zeros(ant.nv))._impl.contact.dist.shape[0]
    assert per_world > 0 and ant._naconmax == 8 * M.WARP_SEEDS * per_world
    assert envs.make("mjx/Ant-v4", 8, impl="warp", naconmax=500)._naconmax == 500
    envs.make("mjx/Humanoid-v5", 1, impl="warp", include_cfrc_ext_in_observation=False, contact_cost_weight=0.0)


def test_warp_logging_is_quieted_unless_the_user_chose_a_level():
    warp = pytest.importorskip("warp")
    before = warp.config.log_level
    try:
        warp.config.log_level = warp.LOG_INFO  # warp-lang's default: a line per kernel module loaded
        envs.make("mjx/Hopper-v4", 1, impl="warp")
        assert warp.config.log_level == warp.LOG_WARNING
        warp.config.log_level = warp.LOG_ERROR
        envs.make("mjx/Hopper-v4", 1, impl="warp")
        assert warp.config.log_level == warp.LOG_ERROR
    finally:
        warp.config.log_level = before


@pytest.mark.parametrize("family", FAMILIES)
def test_open_loop(family, harness):
    """OPEN_LOOP_STEPS steps from OPEN_LOOP_STARTS seeded resets, each simulator carrying its own
    state (MJX: its solver warm start and the stale body positions Ant/Humanoid measure velocity
    from).  A rollout is compared up to its first transition that is discontinuous in MuJoCo."""
    h = harness(family)
    env_id, options = VARIANTS[family][0]
    rtol, atol = OPEN_LOOP[family]
    width = h.envs[0].obs_spec.shape[0] - _cfrc_columns(h.envs[0])  # contact forces: see one-step test
    genv = _gym_env(env_id, **options)
    actions = _actions(np.random.default_rng(1), genv, OPEN_LOOP_STARTS * OPEN_LOOP_STEPS)
    actions = actions.reshape(OPEN_LOOP_STARTS, OPEN_LOOP_STEPS, -1)

    # Gymnasium's own rollouts: states, outputs, and where MuJoCo is discontinuous.
    states, outs = np.zeros((OPEN_LOOP_STARTS, OPEN_LOOP_STEPS), object), []
    for i in range(OPEN_LOOP_STARTS):
        genv.reset(seed=100 + i)
        rollout = []
        for t in range(OPEN_LOOP_STEPS):
            states[i, t] = (genv.data.qpos.copy(), genv.data.qvel.copy())
            rollout.append(genv.step(actions[i, t]))
        outs.append(rollout)
    q, v = (np.array([s[j] for s in states.ravel()]) for j in (0, 1))
    ill = _ill_conditioned(family, _gym_env(env_id), q, v, actions.reshape(q.shape[0], -1))
    ill = ill.reshape(OPEN_LOOP_STARTS, OPEN_LOOP_STEPS)
    valid = np.cumsum(ill, axis=1) == 0  # steps before the first discontinuity

    pad = lambda x: np.concatenate([x, np.repeat(x[-1:], CHUNK - len(x), 0)])
    inner = h.reset(pad(q.reshape(OPEN_LOOP_STARTS, OPEN_LOOP_STEPS, -1)[:, 0]),
                    pad(v.reshape(OPEN_LOOP_STARTS, OPEN_LOOP_STEPS, -1)[:, 0]))
    worst = 0.0
    for t in range(OPEN_LOOP_STEPS):
        inner, obs, reward, terminated, terms = h.step(0, inner, pad(actions[:, t]))[0][1]
        for i in np.nonzero(valid[:, t])[0]:
            g_obs, g_reward, g_terminated, _, g_info = outs[i][t]
            where = f"{env_id} open loop, start {i}, step {t}"
            worst = max(worst, _assert_close(f"{where} obs", obs[i, :width], g_obs[:width], rtol, atol),
                        _assert_close(f"{where} reward", reward[i], g_reward, rtol, atol),
                        _assert_close(f"{where} x_velocity", terms["x_velocity"][i], g_info["x_velocity"], rtol, atol))
            assert terminated[i] == g_terminated, where
    assert valid.mean() > 0.8, f"{env_id}: only {valid.mean():.0%} of the open-loop steps are comparable"
    print(f"{env_id} open loop: worst error/tolerance {worst:.3f}, {valid.mean():.0%} of steps compared")


# --------------------------------------------------------------------------- tests: protocol


def test_time_limit_auto_reset_and_reset_to():
    """Through the base class: truncation at max_episode_steps, auto-reset, final_obs; reset_to."""
    env = envs.make("mjx/Swimmer-v5", 2, max_episode_steps=3)
    actions = jnp.zeros((4, 2, env.nu))

    def rollout(state, actions):
        return jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)[1]

    start = env.reset_to(env.init_qpos, jnp.zeros(env.nv), key=jax.random.key(3))
    assert start.obs.shape == (2,) + env.obs_spec.shape and np.all(np.asarray(start.inner.steps) == 0)
    traj = jax.device_get(compile_fast(rollout, start, actions)(start, actions))
    np.testing.assert_array_equal(traj.truncated, [[False] * 2, [False] * 2, [True] * 2, [False] * 2])
    assert not traj.terminated.any()
    np.testing.assert_array_equal(traj.done_length[2], [3, 3])
    np.testing.assert_array_equal(traj.episode_length[:, 0], [1, 2, 0, 1])
    # The truncated step's final_obs continues the episode; obs is a fresh reset (noise 0.1).
    assert not np.allclose(traj.final_obs[2], traj.obs[2])
    assert np.all(np.abs(traj.inner.qpos[2] - env.init_qpos) <= 0.1 + 1e-6)
    np.testing.assert_array_equal(traj.inner.steps[:, 0], [1, 2, 0, 1])
