"""brax/ and playground/ suites: registry, time limit, termination, options, Menagerie handling.

CPU-cheap by design: an MJX program compiles in 25-50 s on two cores, so the default suite
compiles one physics rollout (brax/inverted_pendulum, on brax's generalized backend: ~10 s),
``-m extended`` adds playground/CartpoleBalance on MJX and MuJoCo Warp, and exact
time-limit arithmetic uses brax's physics-free ``fast`` task.  Nothing here touches the
network: the Menagerie tests point playground at temporary directories and fail on any
attempt to clone.
"""
import subprocess
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import envs
from tests.compiling import compile_fast

pytest.importorskip("brax")
pytest.importorskip("mujoco_playground")

from bpo_jax.envs import playground as pg  # noqa: E402

SPLIT_ACROSS_WORKERS = True  # independent tests, each compiling its own programs (see conftest.py)


def _rollout(env, actions, key=0):
    """Reset, then step through ``actions`` [T, B, A], all in one jitted program (MJX run
    eagerly takes a minute per call); the reset state and the trajectory, on host."""

    def body(s, a):
        s = env.step(s, a)
        return s, s

    def run(key, acts):
        state = env.reset(key)
        return state, jax.lax.scan(body, state, acts)[1]

    key = jax.random.key(key)
    return jax.device_get(compile_fast(run, key, actions)(key, actions))


def _random_actions(env, steps, key=1):
    return jax.random.uniform(jax.random.key(key), (steps, env.num_envs) + env.action_space.shape,
                              minval=-1.0, maxval=1.0)


# --------------------------------------------------------------------------- registry


def test_names():
    brax_ids = envs.list_envs("brax")
    assert "brax/ant" in brax_ids and "brax/humanoid" in brax_ids
    pg_ids = envs.list_envs("playground")
    assert {"playground/CartpoleBalance", "playground/Go1JoystickFlatTerrain", "playground/PandaPickCube"} <= set(pg_ids)


def test_brax_ant_specs():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = envs.make("brax/ant", num_envs=3)
    # brax's "not actively being maintained" notice printed above every run's first line.
    assert [str(w.message) for w in caught if "maintained" in str(w.message)] == []
    assert env.obs_spec.shape == (27,) and env.obs_spec.dtype == jnp.float32
    assert env.action_space.shape == (8,)
    np.testing.assert_array_equal(env.action_space.low, -np.ones(8))
    np.testing.assert_array_equal(env.action_space.high, np.ones(8))
    assert env.unwrapped.backend == "mjx" and env.episode_limit == 1000 and env.action_repeat == 1


# --------------------------------------------------------------------------- brax


def test_brax_time_limit_and_final_obs():
    # brax's "fast" task: obs (pos, vel) with vel += 0.02 * (action > 0), pos += 0.02 * vel,
    # reward pos, never done.  Exact arithmetic, no physics, compiles in a second.
    env = envs.make("brax/fast", num_envs=2, episode_length=3)
    _, traj = _rollout(env, jnp.ones((7, 2, 1)))
    np.testing.assert_array_equal(traj.truncated[:, 0], [0, 0, 1, 0, 0, 1, 0])
    assert not traj.terminated.any()
    vel = 0.02 * np.arange(1, 4)
    pos = 0.02 * np.cumsum(vel)
    # The truncating step reports the real last observation; the next episode starts at 0.
    np.testing.assert_allclose(traj.final_obs[2, 0], [pos[2], vel[2]], rtol=1e-5)
    np.testing.assert_array_equal(traj.obs[2], np.zeros((2, 2)))
    np.testing.assert_allclose(traj.final_obs[3, 0], [pos[0], vel[0]], rtol=1e-5)
    np.testing.assert_allclose(traj.done_return[2, 0], pos.sum(), rtol=1e-5)
    assert traj.done_length[2, 0] == 3


def test_brax_action_repeat_counts_env_steps():
    # action_repeat=2, episode_length=5: brax's EpisodeWrapper counts 2, 4, 6 >= 5, so the
    # episode is truncated on the third agent step; rewards of both sub-steps are summed.
    env = envs.make("brax/fast", num_envs=1, episode_length=5, action_repeat=2)
    _, traj = _rollout(env, jnp.ones((4, 1, 1)))
    np.testing.assert_array_equal(traj.truncated[:, 0], [0, 0, 1, 0])
    # The declared time limit is that agent step count (ceil(5 / 2)): the trainer sizes its
    # bootstrap slots by it, and a floor would ask for more critic rows than can truncate.
    assert env.time_limit == 3
    vel = 0.02 * np.arange(1, 7)
    pos = 0.02 * np.cumsum(vel)
    np.testing.assert_allclose(traj.final_obs[0, 0], [pos[1], vel[1]], rtol=1e-5)
    np.testing.assert_allclose(traj.reward[0, 0], pos[0] + pos[1], rtol=1e-5)


@pytest.mark.slow
def test_brax_termination():
    # InvertedPendulum is done once the pole leans past 0.2 rad, which random actions reach
    # within a few steps; episode_length=6 also exercises truncation.  brax's generalized
    # backend: the adapter's done/reset handling is the same for every backend, and this
    # rollout compiles in ~10 s on CPU against ~21 s on mjx, which the brax smoke training
    # run (tests/test_suites_training.py) covers.
    env = envs.make("brax/inverted_pendulum", num_envs=4, episode_length=6, backend="generalized")
    assert env.unwrapped.backend == "generalized" and env.obs_spec.shape == (4,)
    state, traj = _rollout(env, _random_actions(env, 12))
    assert state.obs.shape == (4, 4) and traj.obs.shape == (12, 4, 4)
    assert np.isfinite(traj.reward).all()
    assert traj.terminated.any()
    t, b = np.argwhere(traj.terminated)[0]
    assert abs(traj.final_obs[t, b, 1]) > 0.2  # the terminal pole angle ...
    assert abs(traj.obs[t, b, 1]) <= 0.01 + 1e-6  # ... and a fresh reset to act on
    assert not (traj.terminated & traj.truncated).any()
    # Every episode ends by termination or at exactly 6 steps.
    lengths = traj.done_length[traj.truncated]
    assert (lengths == 6).all()


def test_dict_observations_use_obs_key():
    # brax's fast task in dict mode observes {'state': (2,), 'privileged_state': (4,)}, the
    # layout of playground's locomotion tasks.
    options = dict(obs_mode="dict_state", asymmetric_obs=True)
    assert envs.make("brax/fast", **options).obs_spec.shape == (2,)
    assert envs.make("brax/fast", obs_key="privileged_state", **options).obs_spec.shape == (4,)
    with pytest.raises(ValueError, match="obs_key= one of privileged_state, state"):
        envs.make("brax/fast", obs_key="pixels", **options)
    # an array observation has no keys: another obs_key was accepted and recorded, and picked nothing
    with pytest.raises(ValueError, match="^brax/fast: its observation is one array, so obs_key 'privileged_state' "
                                         "picks nothing; drop it$"):
        envs.make("brax/fast", obs_key="privileged_state")


def test_brax_bad_backend_and_options():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; valid: mjx, generalized, positional, spring") as err:
        envs.make("brax/ant", backend="nope")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="valid: generalized$"):
        envs.make("brax/swimmer", backend="mjx")
    with pytest.raises(ValueError, match=r"brax/ant has no option\(s\) no_such; valid: .*ctrl_cost_weight") as err:
        envs.make("brax/ant", no_such=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="episode_length must be a positive integer"):
        envs.make("brax/fast", episode_length=0)


# --------------------------------------------------------------------------- playground


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.xdist_group("warp")  # with the other Warp test: a cold warp-lang kernel cache costs ~50 s once
def test_playground_cartpole_rollout_jax_and_warp():
    def run(impl, pool=0):
        env = envs.make("playground/CartpoleBalance", num_envs=2, episode_length=3, reset_pool=pool, impl=impl)
        return env, _rollout(env, _random_actions(env, 7))

    env, (state, traj) = run("jax")
    assert env.obs_spec.shape == (5,) and env.action_space.shape == (1,)
    assert env.episode_limit == 3 and env.action_repeat == 1
    assert state.obs.shape == (2, 5) and traj.obs.dtype == np.float32
    assert np.isfinite(traj.reward).all() and ((traj.reward >= 0) & (traj.reward <= 1)).all()
    # Balance never terminates (done only on NaN), so every episode is cut at 3 steps.
    assert not traj.terminated.any()
    np.testing.assert_array_equal(traj.truncated, np.array([[0, 0, 1, 0, 0, 1, 0]] * 2).T)
    # On the cut, final_obs is the state reached (pole moved), obs the next episode's start.
    assert not np.allclose(traj.final_obs[2], traj.obs[2])
    np.testing.assert_allclose(traj.done_return[2], traj.reward[:3].sum(0), rtol=1e-5)

    # MuJoCo Warp (warp-lang's CPU backend here) keeps contact and constraint buffers shared by
    # all worlds, without a per-env axis; auto-reset must leave them whole.  From the same keys
    # and actions Warp and JAX agree, across both auto-resets.
    _, (_, warp) = run("warp")
    np.testing.assert_array_equal(warp.truncated, traj.truncated)
    for field in ("obs", "final_obs", "reward", "done_return"):
        np.testing.assert_allclose(getattr(warp, field), getattr(traj, field), atol=2e-4, err_msg=field)
    # The reset pool: episodes restart from one of the pooled initial states.
    _, (start, pooled) = run("warp", pool=3)
    restarts = pooled.obs[pooled.truncated]
    assert np.isfinite(pooled.obs).all() and len(restarts) == 4
    assert np.abs(restarts[:, None] - start.reset_pool[1][None]).max(-1).min(-1).max() < 1e-6


def test_playground_defaults_and_bad_options():
    env = envs.make("playground/CartpoleBalance", num_envs=1)
    assert env.episode_limit == 1000 and env.action_repeat == 1
    assert env.unwrapped._config.impl == "jax"  # playground's configs say warp
    with pytest.raises(ValueError, match=r"has no option\(s\) bogus; valid: .*sim_dt") as err:
        envs.make("playground/CartpoleBalance", bogus=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"impl must be 'jax' or 'warp' \(MuJoCo Warp\), got 'cuda'"):
        envs.make("playground/CartpoleBalance", impl="cuda")


# --------------------------------------------------------------------------- Menagerie


@pytest.fixture
def no_clone(monkeypatch):
    """Fail the test if playground tries to git clone Menagerie."""
    from mujoco_playground._src import mjx_env

    def clone(*args, **kwargs):
        raise AssertionError("playground tried to clone mujoco_menagerie")

    monkeypatch.setattr(mjx_env, "_clone_with_progress", clone)
    return mjx_env


def _assert_menagerie_message(err):
    text = str(err.value)
    assert "\n" not in text
    assert "needs MuJoCo Menagerie" in text and "https://github.com/google-deepmind/mujoco_menagerie" in text
    assert "menagerie_path=" in text and "BPO_JAX_MENAGERIE_PATH" in text


def test_menagerie_missing_from_given_path(tmp_path, monkeypatch, no_clone):
    saved = no_clone.MENAGERIE_PATH
    monkeypatch.setenv("BPO_JAX_MENAGERIE_PATH", str(tmp_path))  # exists, but empty
    with pytest.raises(pg.MissingAssetsError) as err:
        envs.make("playground/Go1JoystickFlatTerrain")
    _assert_menagerie_message(err)
    assert isinstance(err.value, envs.MissingDependencyError)
    with pytest.raises(pg.MissingAssetsError, match="is not a directory"):
        envs.make("playground/PandaPickCube", menagerie_path=str(tmp_path / "absent"))
    assert no_clone.MENAGERIE_PATH == saved  # playground's global is restored


def test_menagerie_missing_fails_at_once_without_a_clone(tmp_path, monkeypatch, capfd):
    """No path given and playground's own directory missing: playground would start a git clone
    (a download with a progress bar) inside ``registry.load``; the one-line error comes first."""
    from mujoco_playground._src import mjx_env

    def no_network(*args, **kwargs):
        raise AssertionError("playground tried to clone mujoco_menagerie")

    monkeypatch.delenv("BPO_JAX_MENAGERIE_PATH", raising=False)
    monkeypatch.setattr(mjx_env, "EXTERNAL_DEPS_PATH", tmp_path / "deps")
    monkeypatch.setattr(mjx_env, "MENAGERIE_PATH", tmp_path / "deps" / "mujoco_menagerie")
    monkeypatch.setattr(mjx_env, "ensure_menagerie_exists", no_network)
    monkeypatch.setattr(mjx_env, "_clone_with_progress", no_network)
    monkeypatch.setattr(subprocess, "Popen", no_network)
    monkeypatch.setattr(subprocess, "run", no_network)
    for name in ("Go1JoystickFlatTerrain", "PandaPickCube"):
        with pytest.raises(pg.MissingAssetsError, match="not found in playground's") as err:
            envs.make(f"playground/{name}")
        _assert_menagerie_message(err)
    assert not (tmp_path / "deps").exists()  # nothing created where playground would clone
    out, errors = capfd.readouterr()
    assert "Downloading" not in out + errors and "Cloning" not in out + errors


def _fake_go1_menagerie(root):
    """The five meshes playground 0.2.0's Go1 XML takes from Menagerie, as tiny tetrahedra:
    enough to check that a local Menagerie path is used (the dynamics are not Go1's)."""
    assets = root / "unitree_go1" / "assets"
    assets.mkdir(parents=True)
    vertices = [(0, 0, 0), (0.05, 0, 0), (0, 0.05, 0), (0, 0, 0.05)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    data = b"\0" * 80 + struct.pack("<I", len(faces))
    for face in faces:
        data += struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *vertices[i]) for i in face) + b"\0\0"
    for name in ("trunk", "hip", "thigh", "thigh_mirror", "calf"):
        (assets / f"{name}.stl").write_bytes(data)
    return root


def test_menagerie_path_argument_wins(tmp_path, monkeypatch, no_clone):
    saved = no_clone.MENAGERIE_PATH
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("BPO_JAX_MENAGERIE_PATH", str(empty))
    local = _fake_go1_menagerie(tmp_path / "menagerie")
    env = envs.make("playground/Go1JoystickFlatTerrain", num_envs=2, menagerie_path=str(local))
    # Dict observation {'state', 'privileged_state'}: the policy sees 'state' by default.
    assert env.obs_spec.shape == (48,) and env.action_space.shape == (12,)
    assert env.episode_limit == 1000
    assert no_clone.MENAGERIE_PATH == saved
