"""Running statistics against NumPy, and their use inside the training loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import losses, normalization as norm
from bpo_jax.config import Config
from bpo_jax.networks import make_network
from bpo_jax.train import make_trainer
from tests.compiling import compile_fast


def test_batch_stats_match_numpy():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    s = norm.batch_stats(jnp.asarray(x))
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s.variance, x.var(0), rtol=1e-4)
    assert float(s.count) == 500


def test_merge_is_exact_and_order_free():
    """Chan's merge of disjoint shards equals the statistics of their union, in any grouping:
    this is what lets per-device statistics be combined."""
    rng = np.random.default_rng(1)
    shards = [rng.normal(rng.uniform(-5, 5), rng.uniform(0.1, 3), size=(n, 3)).astype(np.float32)
              for n in (1, 7, 64, 200)]
    union = np.concatenate(shards)
    left = norm.init_stats((3,))
    for shard in shards:  # sequential folding
        left = norm.update(left, jnp.asarray(shard))
    tree = norm.merge(  # pairwise, another order
        norm.merge(norm.batch_stats(shards[3]), norm.batch_stats(shards[0])),
        norm.merge(norm.batch_stats(shards[2]), norm.batch_stats(shards[1])),
    )
    for s in (left, tree):
        np.testing.assert_allclose(s.mean, union.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s.variance, union.var(0), rtol=1e-4)


def test_welford_one_sample_at_a_time():
    x = np.random.default_rng(2).normal(size=(50, 2)).astype(np.float32)
    s = norm.init_stats((2,))
    for row in x:
        s = norm.update(s, jnp.asarray(row[None]))
    np.testing.assert_allclose(s.variance, x.var(0), rtol=1e-4)


def test_a_window_is_an_exponential_moving_average():
    """With a window W and batches of B samples, once the count has reached W every batch weighs
    B/(W+B): mean and second moment follow NumPy's EMA with that weight; the variance those give
    is the windowed statistics' variance."""
    rng = np.random.default_rng(2)
    W, B = 64, 16
    batches = [rng.normal(0.25 * i, 1.0 + 0.1 * i, size=(B, 2)).astype(np.float32) for i in range(30)]
    stats = norm.init_stats((2,))
    for x in batches:
        stats = norm.update(stats, jnp.asarray(x), window=W)
    # NumPy: exact statistics up to W samples (4 batches), then the EMA of the batches' moments.
    first = np.concatenate(batches[:W // B])
    mean, second = first.mean(0), (first ** 2).mean(0)
    alpha = B / (W + B)
    for x in batches[W // B:]:
        mean, second = (1 - alpha) * mean + alpha * x.mean(0), (1 - alpha) * second + alpha * (x ** 2).mean(0)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-4)
    np.testing.assert_allclose(stats.variance, second - mean ** 2, rtol=1e-3)
    assert float(stats.count) == W + B
    # It follows the drift; exact statistics of the same stream lag far behind.
    exact = norm.init_stats((2,))
    for x in batches:
        exact = norm.update(exact, jnp.asarray(x))
    assert abs(float(stats.mean[0]) - 0.25 * 29) < 1.0 < abs(float(exact.mean[0]) - 0.25 * 29)


def test_normalize_identity_before_samples_then_standardises_and_clips():
    x = jnp.array([[100.0, -3.0]])
    np.testing.assert_array_equal(norm.normalize(norm.init_stats((2,)), x, clip=5.0), x)
    data = np.random.default_rng(3).normal(10.0, 4.0, size=(10_000, 2)).astype(np.float32)
    s = norm.batch_stats(jnp.asarray(data))
    z = np.asarray(norm.normalize(s, jnp.asarray(data), clip=100.0))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    assert float(jnp.max(norm.normalize(s, x, clip=5.0))) == 5.0


def test_discounted_returns_match_numpy_loop_and_restart_after_done():
    rng = np.random.default_rng(4)
    T, B, gamma = 20, 3, 0.9
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    dones = rng.uniform(size=(T, B)) < 0.2
    carry0 = rng.normal(size=B).astype(np.float32)
    expected, ret = np.zeros((T, B)), carry0.astype(np.float64)
    for t in range(T):
        ret = ret * gamma + rewards[t]
        expected[t] = ret
        ret = np.where(dones[t], 0.0, ret)
    got, carry = norm.discounted_returns(jnp.asarray(rewards), jnp.asarray(dones), jnp.asarray(carry0), gamma)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry, ret, rtol=1e-5, atol=1e-5)


def test_reward_scaling_keeps_signs_and_divides_by_return_std():
    returns = norm.batch_stats(jnp.array([0.0, 4.0]))  # variance 4, std 2
    scaled = norm.scale_rewards(returns, jnp.array([-2.0, 0.0, 6.0, 100.0]), clip=10.0)
    np.testing.assert_allclose(scaled, [-1.0, 0.0, 3.0, 10.0], rtol=1e-6)


@pytest.fixture(scope="module")
def normalized_run():
    """A tiny Pendulum run with both normalisers, twice: ``train`` as one program, and the same
    updates driven here as ``collect`` then ``learn``, keeping every rollout and the rewards and
    next values that reached GAE (a spy on ``losses.gae``, its arguments returned from the
    compiled update).  Episodes of 20 steps, so the discounted returns restart within the
    rollouts and two of the three rollouts end episodes by their time limit."""
    config = Config(env="gymnax/Pendulum-v1", num_envs=4, num_steps=16, total_steps=4 * 16 * 3,
                    num_epochs=1, num_minibatches=2, hidden_sizes=(8,), reward_scale=0.5, reward_clip=0.25,
                    normalize_obs=True, normalize_rewards=True, env_options=("max_steps_in_episode=20",))
    trainer = make_trainer(config)
    key, hp = jax.random.key(0), config.hparams()
    state = compile_fast(trainer.init, key, hp)(key, hp)
    first_obs = state.env_state.obs
    after, metrics = compile_fast(trainer.train, key)(key)

    real_gae = losses.gae

    def update_and_gae_rewards(state, hp):
        """``update`` = ``learn(state, *collect(state, hp), hp)``, also returning the rollout and
        the rewards and next values GAE received."""
        seen = []

        def spy(rewards, values, next_values, *args, **kwargs):
            seen.append((rewards, next_values))
            return real_gae(rewards, values, next_values, *args, **kwargs)

        traj, env_state, next_key = trainer.collect(state, hp)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(losses, "gae", spy)
            new_state, _ = trainer.learn(state, traj, env_state, next_key, hp)
        assert len(seen) == 1  # recompute_returns is off: GAE runs once per update
        return new_state, traj, seen[0]

    update = compile_fast(update_and_gae_rewards, state, hp)
    states, trajs, gae_rewards, gae_next_values = [state], [], [], []
    for _ in range(trainer.num_updates):
        new_state, traj, (rewards, next_values) = update(states[-1], hp)
        states.append(new_state)
        trajs.append(jax.device_get(traj))
        gae_rewards.append(np.asarray(rewards))
        gae_next_values.append(np.asarray(next_values))
    return config, first_obs, after, metrics, states, trajs, gae_rewards, gae_next_values, trainer


def test_training_loop_accumulates_statistics_of_every_observation(normalized_run):
    """After every update the observation statistics are NumPy's count, mean and (population)
    variance of every observation acted on so far; ``train`` ends with the same statistics."""
    config, first_obs, after, metrics, states, trajs, *_ = normalized_run
    assert len(trajs) == config.num_updates == 3
    np.testing.assert_array_equal(trajs[0].obs[0], first_obs)
    for k in range(1, len(states)):
        seen = np.concatenate([t.obs.reshape(-1, 3) for t in trajs[:k]]).astype(np.float64)
        stats = states[k].obs_stats
        assert float(stats.count) == len(seen) == k * config.batch_size
        np.testing.assert_allclose(stats.mean, seen.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.variance, seen.var(0), rtol=1e-4, atol=1e-6)
    assert np.all(seen.std(0) > 0.05)  # statistics of a moving pendulum, not of constants
    # The one-program run folds in the same observations.
    for got, want in ((after.obs_stats, states[-1].obs_stats), (after.return_stats, states[-1].return_stats)):
        np.testing.assert_allclose(got.count, want.count)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.variance, want.variance, rtol=1e-3, atol=1e-4)
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    assert after.return_acc.shape == (config.num_envs,)


def test_normalized_rewards_reaching_gae_are_scaled_by_the_return_std(normalized_run):
    """SB3 VecNormalize's reward scaling, in NumPy: r = reward * reward_scale; per env the
    discounted return R_t = gamma R_{t-1} + r_t, restarting at 0 after an episode ends; the
    return statistics take every R_t so far, this rollout's included; GAE then receives
    clip(r / sqrt(var(R) + 1e-8), -reward_clip, reward_clip), no shift."""
    config, _, _, _, states, trajs, gae_rewards, *_ = normalized_run
    acc, all_returns = np.zeros(config.num_envs), []
    clipped = 0
    for k, (traj, got) in enumerate(zip(trajs, gae_rewards)):
        r = np.asarray(traj.reward, np.float64) * config.reward_scale
        for t in range(config.num_steps):
            acc = acc * config.gamma + r[t]
            all_returns.append(acc.copy())
            acc = np.where(traj.done[t], 0.0, acc)
        returns = np.stack(all_returns)
        scaled = r / np.sqrt(returns.var() + 1e-8)
        want = np.clip(scaled, -config.reward_clip, config.reward_clip)
        assert got.shape == r.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        clipped += int(np.sum(np.abs(scaled) > config.reward_clip))
        stats = states[k + 1]
        assert float(stats.return_stats.count) == returns.size
        np.testing.assert_allclose(stats.return_stats.mean, returns.mean(), rtol=1e-4)
        np.testing.assert_allclose(stats.return_stats.variance, returns.var(), rtol=1e-3)
        np.testing.assert_allclose(stats.return_acc, acc, rtol=1e-4, atol=1e-4)
    assert 0 < clipped < sum(g.size for g in gae_rewards)  # the clip is exercised, not everywhere
    assert sum(int(t.done.sum()) for t in trajs) >= 2 * config.num_envs  # and the restart after an episode


def test_time_out_bootstraps_read_the_critic_on_normalised_final_observations(normalized_run):
    """A truncated episode's bootstrap is V(final_obs) with final_obs normalised as the
    observations were, by the statistics the policy acted under (NumPy here; the critic is
    network.apply at the update's starting parameters)."""
    config, _, _, _, states, trajs, _, gae_next_values, trainer = normalized_run
    network = make_network(config, trainer.env.action_space, trainer.env.obs_spec)
    checked = 0
    for state, traj, next_values in zip(states, trajs, gae_next_values):
        truncated = np.asarray(traj.truncated)
        if not truncated.any():
            continue
        stats, final = state.obs_stats, np.asarray(traj.final_obs, np.float64)[truncated]
        assert float(stats.count) > 0
        z = (final - np.asarray(stats.mean, np.float64)) / np.sqrt(np.asarray(stats.variance, np.float64) + 1e-8)
        z = np.clip(z, -config.obs_clip, config.obs_clip).astype(np.float32)
        value = lambda x: np.asarray(network.apply(state.params, jnp.asarray(x), method="values")[0])
        np.testing.assert_allclose(next_values[truncated], value(z), rtol=1e-4, atol=1e-5)
        assert np.max(np.abs(value(final.astype(np.float32)) - value(z))) > 1e-3  # normalising matters
        checked += int(truncated.sum())
    assert checked == 2 * config.num_envs  # the time limits at steps 20 and 40


def test_statistics_off_by_default():
    trainer = make_trainer(Config(num_envs=2, num_steps=8, total_steps=16, num_minibatches=1))
    state = trainer.init(jax.random.key(0), trainer.config.hparams())
    assert state.obs_stats is None and state.return_stats is None and state.return_acc is None


def test_the_training_loop_keeps_a_window_of_observations():
    """obs_norm_window in the loop: every update's batch is merged into statistics counted as at
    most the window, so after a few updates the count is window + one batch."""
    config = Config(env="gymnax/Pendulum-v1", num_envs=4, num_steps=16, num_epochs=1, num_minibatches=1,
                    total_steps=4 * 16 * 5, normalize_obs=True, obs_norm_window=100)
    trainer = make_trainer(config)
    key = jax.random.key(0)
    state, metrics = compile_fast(trainer.train, key)(key)
    assert float(state.obs_stats.count) == 100 + config.batch_size
    assert np.all(np.isfinite(np.asarray(state.obs_stats.variance))) and np.all(np.isfinite(np.asarray(metrics["loss"])))
