"""bpo_jax.bootstrap: the critic evaluated on obs, the last final_obs and the truncated
final_obs only gives every value GAE reads, as evaluating every obs and final_obs does."""
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import Config, bootstrap, make_trainer, runner
from bpo_jax.envs import make as make_env
from tests import probes
from tests.compiling import compile_fast

probes.register()


@pytest.mark.parametrize("steps, limit, expected", [
    (128, 500, 1), (128, 128, 1), (128, 127, 2), (16, 5, 4), (32, None, None), (10, 1, None), (10, 2, 5),
])
def test_slots_are_the_most_truncations_in_a_rollout(steps, limit, expected):
    assert bootstrap.truncation_slots(steps, limit) == expected


def _rollout(rng, t, b, limit, p_terminate=0.08, obs_dim=3):
    """A protocol-true rollout of b envs for t steps, episodes cut at ``limit`` steps: obs and
    final_obs [t, b, obs_dim], terminated/truncated [t, b]; final_obs[t] == obs[t + 1] unless an
    episode ended at t.  Episode clocks start at random points, as between updates."""
    obs = np.zeros((t + 1, b, obs_dim), np.float32)
    final = np.zeros((t, b, obs_dim), np.float32)
    term = np.zeros((t, b), bool)
    trunc = np.zeros((t, b), bool)
    clock = rng.integers(0, limit, b)
    obs[0] = rng.normal(size=(b, obs_dim))
    for i in range(t):
        clock += 1
        reached = rng.normal(size=(b, obs_dim)).astype(np.float32)
        term[i] = rng.random(b) < p_terminate
        trunc[i] = (clock >= limit) & ~term[i]
        done = term[i] | trunc[i]
        final[i] = reached
        obs[i + 1] = np.where(done[:, None], rng.normal(size=(b, obs_dim)), reached)
        clock[done] = 0
    return obs[:t], final, term, trunc, obs[t]


def _critic(x):
    """A nonlinear stand-in for the critic, row by row: [..., 3] -> [...]."""
    return np.tanh(x @ np.array([0.7, -1.3, 0.4], np.float32)) + 0.1 * (x ** 2).sum(-1)


@pytest.mark.parametrize("t, b, limit", [(16, 5, 5), (16, 5, 16), (32, 3, 7), (8, 4, 1000), (20, 2, 3)])
def test_values_equal_those_of_every_obs_and_final_obs(t, b, limit):
    obs, final, term, trunc, _ = _rollout(np.random.default_rng(t * b + limit), t, b, limit)
    k = bootstrap.truncation_slots(t, limit)
    assert k is not None and not bootstrap.overflow(jnp.asarray(trunc), k)
    times = bootstrap.truncation_times(jnp.asarray(trunc), k)
    rows = bootstrap.critic_inputs(jnp.asarray(obs), jnp.asarray(final), times)
    assert rows.shape == (t + 1 + k, b, 3)
    values, next_values = bootstrap.split_values(jnp.asarray(_critic(np.asarray(rows))), jnp.asarray(trunc))
    np.testing.assert_array_equal(values, _critic(obs))
    # Every value GAE reads: next_values wherever the episode did not terminate.
    want = _critic(final)
    np.testing.assert_array_equal(np.where(term, 0.0, next_values), np.where(term, 0.0, want))


def test_truncation_times_in_time_order_padded_with_t():
    trunc = np.zeros((6, 3), bool)
    trunc[[1, 4], 0] = True
    trunc[5, 2] = True
    np.testing.assert_array_equal(bootstrap.truncation_times(jnp.asarray(trunc), 2), [[1, 6, 5], [4, 6, 6]])


def test_overflow_when_an_env_truncates_more_than_k_times():
    trunc = np.zeros((6, 2), bool)
    trunc[[0, 2, 4], 1] = True
    assert bool(bootstrap.overflow(jnp.asarray(trunc), 3)) is False
    assert bool(bootstrap.overflow(jnp.asarray(trunc), 2)) is True


def test_suites_declare_their_time_limits():
    assert make_env("gymnax/CartPole-v1", num_envs=2).time_limit == 500
    assert make_env("gymnax/CartPole-v1", num_envs=2, max_steps_in_episode=40).time_limit == 40
    assert make_env("mjx/Hopper-v4", num_envs=2, max_episode_steps=300).time_limit == 300


def test_gymnax_truncates_only_at_its_declared_limit():
    env = make_env("gymnax/Pendulum-v1", num_envs=3, max_steps_in_episode=7)
    step = jax.jit(env.step)
    state = env.reset(jax.random.key(0))
    ended = []
    for _ in range(30):
        state = step(state, jnp.zeros((3, 1)))
        ended += [int(n) for n in np.asarray(state.done_length)[np.asarray(state.truncated)]]
    assert len(ended) == 12 and set(ended) == {env.time_limit}


def _updates(env, cfg, n=3):
    trainer = make_trainer(cfg, env=env)
    state = trainer.init(jax.random.key(5), cfg.hparams())
    update = compile_fast(trainer.update, state, cfg.hparams())
    rows = []
    for _ in range(n):
        state, metrics = update(state, cfg.hparams())
        rows.append(metrics)
    return state, rows


def test_training_with_the_declared_limit_equals_evaluating_every_final_obs():
    """CartPole cut at 12 steps (terminations too): three updates with the declared limit (a
    rollout of 32 steps: 3 slots per env) and with it withdrawn give the same parameters, up to
    the rounding of a critic batch of another size."""
    cfg = Config(env="gymnax/CartPole-v1", num_envs=4, num_steps=32, num_epochs=2, num_minibatches=2,
                 hidden_sizes=(16,), total_steps=4 * 32 * 3, env_options=("max_steps_in_episode=12",))
    declared = make_env(cfg.env, num_envs=4, **cfg.env_kwargs())
    undeclared = copy.copy(declared)
    undeclared.time_limit = None
    (a, ma), (b, mb) = _updates(declared, cfg), _updates(undeclared, cfg)
    assert "bootstrap_overflow" not in mb[0] and not any(bool(m["bootstrap_overflow"]) for m in ma)
    assert sum(float(m["episodes"]) for m in ma) > 8  # episodes ended (cut and terminated)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ma[-1]["value_loss"], mb[-1]["value_loss"], rtol=1e-5)


def test_truncation_bootstraps_through_the_declared_limit():
    """The value of a never-ending constant reward, cut every 5 steps, is 1/(1-gamma) = 10 with
    the limit declared too (test_train's probe, through the truncated rows only)."""
    cfg = Config(env="probe/ConstantReward", algo="ppo", num_envs=4, num_steps=20, num_epochs=4,
                 num_minibatches=2, hidden_sizes=(8,), total_steps=4 * 20 * 150, lr=1e-2,
                 gamma=0.9, gae_lambda=0.95, ent_coef=0.0, anneal_lr=False,
                 env_options=("time_limit=True",))
    _, m = jax.jit(make_trainer(cfg).train)(jax.random.key(0))
    assert not np.any(m["bootstrap_overflow"])  # present: the declared path ran
    assert m["value_mean"][-1] == pytest.approx(10.0, abs=0.5)


def test_a_broken_time_limit_stops_the_run_with_a_clear_error():
    """An env that declares a 50-step limit but cuts every 5 steps would train on targets that
    miss bootstrap values: the runner stops at the first such update and names it."""
    cfg = Config(env="probe/ConstantReward", num_envs=2, num_steps=10, num_epochs=1, num_minibatches=1,
                 hidden_sizes=(8,), total_steps=2 * 10 * 4, env_options=("time_limit=50",))
    with pytest.raises(runner.TimeLimitError, match=r"declared time_limit at update 1 \(seed index 0\)"):
        runner.run(cfg, num_seeds=1, reports=2, compiler_options=runner.FAST_COMPILE)


def test_a_session_stopped_by_a_broken_time_limit_does_not_offer_to_resume(tmp_path):
    from bpo_jax.session import RunOptions, RunSession

    cfg = Config(env="probe/ConstantReward", num_envs=2, num_steps=10, num_epochs=1, num_minibatches=1,
                 hidden_sizes=(8,), total_steps=2 * 10 * 4, env_options=("time_limit=50",))
    options = RunOptions(tensorboard=False, progress=False, fast_compile=True)
    session = RunSession.start(cfg, num_seeds=1, out=str(tmp_path / "run"), chunk_updates=2, options=options)
    with pytest.raises(runner.TimeLimitError):
        session.run()
    note = (tmp_path / "run" / "INCOMPLETE").read_text()
    assert "declared time_limit at update 1" in note and "no checkpoint was saved before it" in note
    assert "resume" not in note.lower()


def test_no_slots_where_they_cost_as_much_as_every_final_obs():
    """The slots pay only where T + 1 + k rows are fewer than the 2 T of evaluating every obs and
    final_obs, k = ceil(T / L) the most truncations in T steps; otherwise None."""
    for t in range(2, 30):
        for limit in range(1, t + 3):
            k = -(-t // limit)
            assert bootstrap.truncation_slots(t, limit) == (k if t + 1 + k < 2 * t else None), (t, limit)


def test_padding_rows_are_the_last_final_obs():
    """An env with fewer than k truncations has its spare rows filled with its last step's
    final_obs (a real observation: the critic sees no out-of-range gather, no NaN)."""
    rng = np.random.default_rng(0)
    t, b = 6, 3
    obs = rng.normal(size=(t, b, 2)).astype(np.float32)
    final = rng.normal(size=(t, b, 2)).astype(np.float32)
    trunc = np.zeros((t, b), bool)
    trunc[2, 0] = True  # env 0: one truncation; envs 1, 2: none
    times = bootstrap.truncation_times(jnp.asarray(trunc), 2)
    rows = np.asarray(bootstrap.critic_inputs(jnp.asarray(obs), jnp.asarray(final), times))
    assert np.isfinite(rows).all()
    np.testing.assert_array_equal(rows[:t], obs)
    np.testing.assert_array_equal(rows[t], final[-1])
    np.testing.assert_array_equal(rows[t + 1, 0], final[2, 0])
    np.testing.assert_array_equal(rows[t + 2, 0], final[-1, 0])
    np.testing.assert_array_equal(rows[t + 1:, 1:], np.broadcast_to(final[-1, 1:], (2, b - 1, 2)))
