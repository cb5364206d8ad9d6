"""Evaluation of a trained run's deterministic policy (bpo_jax.evaluate) against a rollout loop
written here: fresh resets from the evaluation key, the policy's mode on observations normalised
in NumPy with the run's saved statistics, rewards summed per episode until its first end."""
import functools
import re
import sys

import jax
import numpy as np
import pytest

from bpo_jax import Config, make_trainer
from bpo_jax.envs import Box, make as make_env
from bpo_jax.evaluate import run_eval
from bpo_jax.networks import make_network
from tests.compiling import compile_fast

EPISODES = 6
SEEDS = 2
CONFIGS = {
    # Discrete actions; episodes end at different steps, and the auto-reset that follows must not count.
    "cartpole": (Config(env="gymnax/CartPole-v1", num_envs=4, num_steps=16, total_steps=4 * 16 * 4, num_epochs=1,
                        num_minibatches=2, hidden_sizes=(16,), normalize_obs=True), 200),
    # Continuous actions clipped to [-2, 2]; every 200-step episode is cut at max_steps = 40.
    "pendulum": (Config(env="gymnax/Pendulum-v1", num_envs=4, num_steps=16, total_steps=4 * 16 * 4, num_epochs=1,
                        num_minibatches=2, hidden_sizes=(16,), normalize_obs=True, obs_clip=3.0), 40),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trained(request):
    """A tiny run of SEEDS seeds with observation normalisation: the state run_eval takes."""
    config, max_steps = CONFIGS[request.param]
    trainer = make_trainer(config)
    keys = jax.random.split(jax.random.key(0), SEEDS)
    state, _ = compile_fast(jax.vmap(trainer.train), keys)(keys)
    return config, max_steps, jax.device_get(state)


@functools.lru_cache(maxsize=None)
def _reference_pieces(config):
    """The env of EPISODES copies, the jitted policy (params, obs) -> distribution and env step."""
    env = make_env(config.env, num_envs=EPISODES, reset_pool=0, **config.env_kwargs())
    network = make_network(config, env.action_space, env.obs_spec)
    return env, jax.jit(lambda params, x: network.apply(params, x, method="policy")), jax.jit(env.step)


def reference_rollout(config, params, obs_stats, seed, max_steps, squash=None):
    """Per-episode (returns, lengths, finished) of ``EPISODES`` copies of the env reset from
    jax.random.key(seed), acting with the policy's mode: argmax of the logits, or the Gaussian
    mean clipped to the bounds (``squash`` "tanh": low + (tanh(mean) + 1)(high - low)/2), on obs normalised as (obs - mean) / sqrt(m2 / count + 1e-8)
    clipped to +-obs_clip (in NumPy; no normalisation when obs_stats is None)."""
    env, policy, step = _reference_pieces(config)
    state = env.reset(jax.random.key(seed))
    returns, lengths = np.zeros(EPISODES), np.zeros(EPISODES)
    finished = np.zeros(EPISODES, bool)
    for _ in range(max_steps):
        obs = np.asarray(state.obs, np.float64)
        if obs_stats is not None:
            var = np.asarray(obs_stats.m2, np.float64) / max(float(obs_stats.count), 1.0)
            obs = np.clip((obs - np.asarray(obs_stats.mean)) / np.sqrt(var + 1e-8), -config.obs_clip, config.obs_clip)
        dist = policy(params, obs.astype(np.float32))
        if isinstance(env.action_space, Box):
            low, high = np.asarray(env.action_space.low), np.asarray(env.action_space.high)
            mean = np.asarray(dist.mean)
            action = low + (np.tanh(mean) + 1) * 0.5 * (high - low) if squash == "tanh" else np.clip(mean, low, high)
        else:
            action = np.argmax(np.asarray(dist.logits), axis=-1)
        state = step(state, action)
        running = ~finished
        returns += np.where(running, np.asarray(state.reward, np.float64), 0.0)
        lengths += running
        finished |= np.asarray(state.done)
        if finished.all():
            break
    return returns, lengths, finished


def _seed(state, i):
    return jax.tree.map(lambda x: x[i], state)


def test_evaluate_equals_an_independent_rollout_with_the_saved_normaliser(trained):
    config, max_steps, state = trained
    stats = state.obs_stats
    assert np.all(np.asarray(stats.count) == config.num_updates * config.batch_size)
    var = np.asarray(stats.m2) / np.asarray(stats.count)[:, None]
    # Statistics that change what the policy sees: far from mean 0, variance 1.
    assert np.max(np.abs(np.log(var))) > 1.0 or np.max(np.abs(np.asarray(stats.mean))) > 0.5
    result = run_eval(config, state, episodes=EPISODES, seed=3, max_steps=max_steps)
    assert len(result["per_seed"]) == SEEDS and result["episodes"] == EPISODES
    all_returns = []
    for i, got in enumerate(result["per_seed"]):
        params, obs_stats = _seed(state.params, i), _seed(stats, i)
        returns, lengths, finished = reference_rollout(config, params, obs_stats, 3, max_steps)
        np.testing.assert_allclose(got["returns"], returns, rtol=1e-4, atol=1e-3)
        assert got["mean_length"] == pytest.approx(lengths.mean())
        assert got["episodes_finished"] == finished.sum()
        assert got["mean_return"] == pytest.approx(np.mean(got["returns"]), rel=1e-6)
        assert got["std_return"] == pytest.approx(np.std(got["returns"]), rel=1e-5, abs=1e-6)
        all_returns.append(got["returns"])
        # The normaliser matters: the same policy on raw observations scores differently.
        raw, _, _ = reference_rollout(config, params, None, 3, max_steps)
        assert np.max(np.abs(raw - returns)) > 1e-2
    assert result["mean_return"] == pytest.approx(np.mean(all_returns), rel=1e-6)
    if config.env == "gymnax/Pendulum-v1":
        assert result["per_seed"][0]["episodes_finished"] == 0  # cut at max_steps: partial returns
    else:
        assert 0 < lengths.min() < max_steps  # CartPole's episodes end, at different steps
        assert len(set(lengths.tolist())) > 1


def test_evaluate_acts_through_the_squash_the_run_trained_with():
    """A tanh-squashed run is evaluated through tanh, not clipped: at initialisation (the mean
    near 0) tanh maps to about twice the clip's action on Pendulum's [-2, 2]."""
    config = CONFIGS["pendulum"][0].replace(action_squash="tanh", normalize_obs=False)
    trainer, hp = make_trainer(config), config.hparams()
    state = jax.device_get(jax.vmap(lambda k: trainer.init(k, hp))(jax.random.split(jax.random.key(0), SEEDS)))
    result = run_eval(config, state, episodes=EPISODES, seed=3, max_steps=30)
    for i, got in enumerate(result["per_seed"]):
        params = _seed(state.params, i)
        squashed, _, _ = reference_rollout(config, params, None, 3, 30, squash="tanh")
        np.testing.assert_allclose(got["returns"], squashed, rtol=1e-4, atol=1e-3)
        clipped, _, _ = reference_rollout(config, params, None, 3, 30)
        assert np.max(np.abs(clipped - squashed)) > 1e-2


def test_evaluate_is_deterministic_per_seed_and_differs_across_seeds(trained):
    """Same evaluation seed: identical results; another seed: other initial states (both tasks
    draw them at random), so other returns, and still the reference rollout's."""
    config, max_steps, state = trained
    first = run_eval(config, state, episodes=EPISODES, seed=0, max_steps=max_steps)
    again = run_eval(config, state, episodes=EPISODES, seed=0, max_steps=max_steps)
    other = run_eval(config, state, episodes=EPISODES, seed=1, max_steps=max_steps)
    assert first == again
    assert first["seed"] == 0 and other["seed"] == 1
    for i in range(SEEDS):
        assert first["per_seed"][i]["returns"] != other["per_seed"][i]["returns"]
        returns, _, _ = reference_rollout(config, _seed(state.params, i), _seed(state.obs_stats, i), 1, max_steps)
        np.testing.assert_allclose(other["per_seed"][i]["returns"], returns, rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------ argument checks
BAD_ARGUMENTS = [
    ({"max_steps": 0}, "max_steps must be >= 1, got 0"),
    ({"max_steps": -5}, "max_steps must be >= 1, got -5"),
    ({"max_steps": 7.0}, "max_steps must be an integer >= 1, got 7.0"),
    ({"episodes": 2.5}, "episodes must be an integer >= 1, got 2.5"),
    ({"episodes": 0}, "episodes must be >= 1, got 0"),
    ({"episodes": True}, "episodes must be an integer >= 1, got True"),
    ({"episodes": 2**20 + 1}, "episodes must be <= 1,048,576, got 1,048,577"),  # side by side: memory
    ({"max_steps": 2**31}, "max_steps must be <= 2,147,483,647, got 2,147,483,648"),  # an int32 step counter
    ({"seed": "1"}, "seed must be an integer in [0, 2**32), got '1'"),
    ({"seed": 1.5}, "seed must be an integer in [0, 2**32), got 1.5"),
    ({"seed": -1}, "seed must be an integer in [0, 2**32), got -1"),
    ({"seed": 2**32}, f"seed must be an integer in [0, 2**32), got {2**32}"),
    ({"seed": 2**70}, f"seed must be an integer in [0, 2**32), got {2**70}"),
]


@pytest.mark.parametrize("kwargs, message", [
    pytest.param(kwargs, message, id=",".join(f"{k}={v!r}" for k, v in kwargs.items())) for kwargs, message in BAD_ARGUMENTS])
def test_run_eval_refuses_bad_arguments_in_one_line(trained, kwargs, message):
    """Each a one-line ValueError naming the argument, before any program is built (max_steps 0
    used to return a mean return of 0.0; the others failed inside JAX)."""
    from bpo_jax.evaluate import _program

    config, max_steps, state = trained
    builds = _program.cache_info().misses
    with pytest.raises(ValueError) as e:
        run_eval(config, state, **{"episodes": EPISODES, "max_steps": max_steps, **kwargs})
    assert str(e.value) == message
    assert _program.cache_info().misses == builds


def test_run_eval_refuses_a_state_of_another_configuration(trained):
    config, max_steps, state = trained
    for other in (config.replace(hidden_sizes=(8,)), config.replace(normalize_obs=False),
                  config.replace(env="gymnax/Acrobot-v1" if config.env != "gymnax/Acrobot-v1" else "gymnax/CartPole-v1")):
        with pytest.raises(ValueError) as e:
            run_eval(other, state, episodes=EPISODES, max_steps=max_steps)
        assert str(e.value).startswith("the state does not match the configuration (another env, algorithm or "
                                       "network?): ")
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError) as e:
        run_eval(config.replace(hidden_sizes=(8,)), state, episodes=EPISODES, max_steps=max_steps)
    assert str(e.value).endswith("state.params['params']['actor']['Dense_0']['kernel'] has shape (16, "
                                 f"{2 if config.env == 'gymnax/CartPole-v1' else 1}) per seed where the "
                                 "configuration's network has (8, " +
                                 f"{2 if config.env == 'gymnax/CartPole-v1' else 1})")


def test_run_eval_takes_one_seeds_state_as_a_run_of_one_seed(trained):
    config, max_steps, state = trained
    both = run_eval(config, state, episodes=EPISODES, seed=2**32 - 1, max_steps=max_steps)
    one = run_eval(config, _seed(state, 1), episodes=EPISODES, seed=2**32 - 1, max_steps=max_steps)
    assert [s["returns"] for s in one["per_seed"]] == [both["per_seed"][1]["returns"]]


def test_record_video_stops_at_max_steps(trained, monkeypatch, tmp_path):
    """The rendered episode is cut at ``max_steps`` (as the evaluation's) and at ``max_frames``;
    a stand-in env (MuJoCo model, qpos) and renderer, so no OpenGL context is needed."""
    from typing import NamedTuple

    import jax.numpy as jnp

    from bpo_jax import evaluate

    mujoco = pytest.importorskip("mujoco")
    config, _, state = trained
    real = make_env(config.env, num_envs=1, reset_pool=0)

    class Inner(NamedTuple):
        qpos: jax.Array

    class State(NamedTuple):
        obs: jax.Array
        done: jax.Array
        inner: Inner

    class Env:
        action_space, obs_spec, dt = real.action_space, real.obs_spec, 0.05
        mj_model = mujoco.MjModel.from_xml_string(
            "<mujoco><worldbody><body><joint type='hinge'/><geom size='0.1'/></body></worldbody></mujoco>")

        def reset(self, key):
            return State(jnp.zeros((1, *self.obs_spec.shape)), jnp.zeros(1, bool), Inner(jnp.zeros((1, 1))))

        def step(self, s, action):
            return State(s.obs + 0.1, jnp.zeros(1, bool), Inner(s.inner.qpos + 0.01))

    class Renderer:
        def __init__(self, model, height, width):
            self.shape = (height, width, 3)

        def update_scene(self, data):
            pass

        def render(self):
            return np.zeros(self.shape, np.uint8)

    written = []
    monkeypatch.setattr(evaluate, "make_env", lambda *args, **kwargs: Env())
    monkeypatch.setattr(mujoco, "Renderer", Renderer)
    monkeypatch.setattr(evaluate, "_write_frames",
                        lambda imageio, frames, path, fps: written.append(len(frames)) or path)
    path = str(tmp_path / "video")
    assert evaluate.record_video(config, state, path, max_frames=20, max_steps=5, size=(8, 8)) == path
    evaluate.record_video(config, state, path, max_frames=3, max_steps=5, size=(8, 8))
    evaluate.record_video(config, state, path, max_frames=9, size=(8, 8))
    assert written == [5, 3, 9]
    for kwargs, message in [({"max_steps": 0}, "max_steps must be >= 1, got 0"),
                            ({"max_frames": 2.5}, "max_frames must be an integer >= 1, got 2.5"),
                            ({"seed": -1}, "seed must be an integer in [0, 2**32), got -1")]:
        with pytest.raises(ValueError) as e:
            evaluate.record_video(config, state, path, **kwargs)
        assert str(e.value) == message
    with pytest.raises(ValueError, match=r"^the state does not match the configuration"):
        evaluate.record_video(config.replace(hidden_sizes=(8,)), state, path, max_steps=5)
    # Without imageio (a core install): said before the episode runs, not a traceback after it.
    monkeypatch.setitem(sys.modules, "imageio.v2", None)
    with pytest.raises(evaluate.VideoUnavailable) as e:
        evaluate.record_video(config, state, path, max_steps=5, size=(8, 8))
    assert str(e.value) == "writing the video needs imageio: pip install 'bpo-jax[mujoco]'"
    assert written == [5, 3, 9]


def test_run_eval_refuses_a_state_that_is_not_finite(trained):
    """NaN parameters were evaluated without a word: CartPole's argmax over NaN logits is action
    0, a plausible return of 9.3; Pendulum's returns were NaN, written to eval.json as null."""
    config, max_steps, state = trained
    params = jax.tree.map(np.array, state.params)  # writable copies
    params["params"]["critic"]["Dense_0"]["bias"][1, 0] = np.nan
    with pytest.raises(ValueError, match=re.escape("state.params['params']['critic']['Dense_0']['bias'] of seed 1 "
                                                   "holds NaN or Inf")):
        run_eval(config, state.replace(params=params), episodes=EPISODES, max_steps=max_steps)
    stats = state.obs_stats.replace(m2=np.full_like(state.obs_stats.m2, np.inf))
    with pytest.raises(ValueError, match=re.escape("state.obs_stats.m2 of seed 0 (and 1 more) holds NaN or Inf")):
        run_eval(config, state.replace(obs_stats=stats), episodes=EPISODES, max_steps=max_steps)
