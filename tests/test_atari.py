"""atari/ suite: the ALE adapter on both stepping paths (EnvPool's XLA custom calls and ale-py
behind a host callback), checked against EnvPool's own step-by-step Python API, plus the
Nature-CNN trainer's smoke run and the paper presets.

Every rollout here is one jitted ``lax.scan`` over a fixed action sequence.  ``noop_max=1`` (no
no-op starts) and no sticky actions make the games deterministic, so the two backends and the
reference must agree frame for frame."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("envpool")
pytest.importorskip("ale_py")

from bpo_jax import Config, make_trainer, presets, runner  # noqa: E402
from bpo_jax.envs import registry  # noqa: E402
from bpo_jax.envs.atari import make  # noqa: E402
from tests.compiling import FULL  # noqa: E402

DETERMINISTIC = dict(noop_max=1)
SPLIT_ACROSS_WORKERS = True  # independent tests, each with its own emulators


def rollout(env, key, actions):
    """(reset state, states after each of the T steps stacked to [T, ...]) for actions [T, N]."""
    def body(state, action):
        state = env.step(state, action)
        return state, state

    start = env.reset(key)
    return start, jax.lax.scan(body, start, actions)[1]


def run(env, actions, key=0):
    start, states = jax.jit(lambda k, a: rollout(env, k, a))(jax.random.PRNGKey(key), jnp.asarray(actions, jnp.int32))
    return jax.tree.map(np.asarray, start), jax.tree.map(np.asarray, states)


def random_actions(env, steps, seed=0, num_envs=None):
    return np.random.default_rng(seed).integers(0, env.action_space.n, (steps, num_envs or env.num_envs))


@pytest.mark.parametrize("backend", ["envpool", "ale"])
def test_frames_are_uint8_stacks_that_start_with_zero_frames(backend):
    env = make("Pong-v5", 3, backend=backend, **DETERMINISTIC)
    assert env.action_space.n == 6 and env.obs_spec.shape == (84, 84, 4) and env.obs_spec.dtype == jnp.uint8
    start, states = run(env, random_actions(env, 3))
    assert start.obs.shape == (3, 84, 84, 4) and start.obs.dtype == np.uint8
    assert np.all(start.obs[..., :3] == 0) and np.all(start.obs[..., 3].reshape(3, -1).max(axis=1) > 0)
    # newest frame last: every step shifts the stack by one
    np.testing.assert_array_equal(states.obs[0][..., :3], start.obs[..., 1:])
    np.testing.assert_array_equal(states.obs[2][..., :3], states.obs[1][..., 1:])
    assert states.obs.dtype == np.uint8 and states.final_obs.dtype == np.uint8


def test_both_backends_give_the_same_episodes_with_step_limit_truncation():
    """Pong with a 50-step limit, 120 random steps: both paths truncate at steps 50 and 100 (the
    hidden EnvPool reset step shifts nothing), restart the frame stack, keep the last real
    frames in ``final_obs``, and agree on every frame."""
    runs = {}
    for backend in ("envpool", "ale"):
        env = make("Pong-v5", 2, backend=backend, max_steps=50, **DETERMINISTIC)
        runs[backend] = run(env, random_actions(env, 120))
    (start_a, a), (start_b, b) = runs["envpool"], runs["ale"]
    np.testing.assert_array_equal(start_a.obs, start_b.obs, err_msg="first frames")
    for field in ("obs", "final_obs", "reward", "terminated", "truncated", "done_length", "done_return",
                  "episode_length"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    ends = [t for t in range(120) if a.truncated[t].any()]
    assert ends == [49, 99] and np.all(a.truncated[ends]) and not a.terminated.any()
    assert np.all(a.done_length[ends] == 50) and np.all(a.done_length.sum(axis=0) == 100)
    assert np.all(a.episode_length[ends] == 0) and np.all(a.episode_length[50] == 1)
    t = ends[0]
    np.testing.assert_array_equal(a.final_obs[t][..., :3], a.obs[t - 1][..., 1:])  # the truncated episode's last stack
    assert np.all(a.obs[t][..., :3] == 0)  # a fresh stack for the next episode
    assert not np.array_equal(a.final_obs[t][..., 3], a.obs[t][..., 3])


def _envpool_reference(game, actions, max_steps):
    """Frames, raw rewards and done flags of one env stepped through EnvPool's own Python API,
    dropping the step after each done (EnvPool resets there, ignoring the action)."""
    import envpool

    env = envpool.make(game, env_type="gymnasium", num_envs=1, noop_max=1, episodic_life=False, reward_clip=False,
                       max_episode_steps=max_steps, stack_num=1, img_height=84, img_width=84, gray_scale=True,
                       use_fire_reset=True, repeat_action_probability=0.0, frame_skip=4)
    frames, rewards, dones, finals = [], [], [], []
    env.reset()
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(np.array([action]))
        finals.append(obs[0, 0])
        done = bool(terminated[0] or truncated[0])
        if done:
            obs, *_ = env.step(np.array([0]))  # EnvPool's reset step: not a transition
        frames.append(obs[0, 0])
        rewards.append(float(reward[0]))
        dones.append(done)
    return np.stack(frames), np.array(rewards), np.array(dones), np.stack(finals)


@pytest.mark.parametrize("backend", ["envpool", "ale"])
def test_steps_run_after_the_reset_when_actions_ignore_the_frames(backend):
    """Emulator calls are side effects: with actions that do not depend on the frames and only
    the rewards kept, nothing but the env state orders the first step after the reset (ale-py
    refused such a step: 'send() called before reset()')."""
    env = make("Pong-v5", num_envs=2, backend=backend, **DETERMINISTIC)
    actions = jnp.asarray(random_actions(env, 40), jnp.int32)

    def rewards(key, actions):
        return jax.lax.scan(lambda s, a: (env.step(s, a), None), env.reset(key), actions)[0].episode_length

    lengths = np.asarray(jax.jit(rewards)(jax.random.PRNGKey(0), actions))
    np.testing.assert_array_equal(lengths, [40, 40])


def test_envpool_reset_step_never_reaches_the_rollout():
    """Breakout (several game overs in 500 random steps, raw rewards 1 and 4) against EnvPool's
    own API, game over only (``episodic_life=False``): every adapter step is a real transition."""
    env = make("Breakout-v5", 2, clip_rewards=False, episodic_life=False, **DETERMINISTIC)
    actions = random_actions(env, 500)
    _, s = run(env, actions)
    for e in range(2):
        frames, rewards, dones, finals = _envpool_reference("Breakout-v5", actions[:, e], 27_000)
        assert dones.sum() >= 2
        np.testing.assert_array_equal(s.obs[:, e, ..., 3], frames)
        np.testing.assert_array_equal(s.final_obs[:, e, ..., 3], finals)
        np.testing.assert_array_equal(s.reward[:, e], rewards)
        np.testing.assert_array_equal(s.terminated[:, e], dones)
        # the raw score of every whole game, reported at its end
        ends = np.nonzero(dones)[0]
        starts = np.concatenate([[0], ends[:-1] + 1])
        np.testing.assert_array_equal(s.done_return[ends, e], [rewards[a:b + 1].sum() for a, b in zip(starts, ends)])
        np.testing.assert_array_equal(s.done_length[ends, e], ends - starts + 1)


def test_life_loss_ends_the_learner_episode_but_not_the_game():
    """Asterix has 3 lives and scores 50 per item: with episodic life (the default), each lost
    life is a terminal transition for the learner (fresh frame stack) with nothing reported, and
    the game's raw score and length are reported once, at game over.  Rewards are clipped for
    learning only."""
    actions = np.random.default_rng(0).integers(0, 9, (450, 2))
    _, life = run(make("Asterix-v5", 2, **DETERMINISTIC), actions)
    _, game = run(make("Asterix-v5", 2, episodic_life=False, clip_rewards=False, **DETERMINISTIC), actions)
    np.testing.assert_array_equal(life.obs[..., 3], game.obs[..., 3])  # the same games
    np.testing.assert_array_equal(life.reward, np.sign(game.reward))
    assert np.all(np.isin(game.reward, [0, 50])) and np.any(game.reward == 50)
    for e in range(2):
        game_over = np.nonzero(game.terminated[:, e])[0]
        lost = np.nonzero(life.terminated[:, e] & ~game.terminated[:, e])[0]
        assert len(game_over) >= 1 and len(lost) >= 2 * len(game_over)
        lives = life.inner.lives[:, e]
        np.testing.assert_array_equal(lives[lost], lives[lost - 1] - 1)
        assert np.all(life.done_length[lost, e] == 0) and np.all(life.done_return[lost, e] == 0)
        assert np.all(life.obs[lost, e][..., :3] == 0)  # the learner's episode restarts its stack
        assert np.all(life.episode_length[lost, e] == lost + 1 - np.concatenate([[0], game_over + 1])[
            np.searchsorted(game_over, lost)])  # the game goes on counting
        np.testing.assert_array_equal(life.done_length[game_over, e], game.done_length[game_over, e])
        np.testing.assert_array_equal(life.done_return[game_over, e], game.done_return[game_over, e])
        assert np.all(np.isin(life.done_length[:, e].nonzero()[0], game_over))


@pytest.mark.parametrize("backend", ["envpool", "ale"])
def test_a_life_lost_on_the_last_allowed_step_is_a_termination(backend):
    """SB3's EpisodicLifeEnv under TimeLimit: the life loss terminates the learner's episode (no
    bootstrap) though the step limit restarts the game.  The loss was read from the restarted
    game's lives, unseen, and the step became a truncation bootstrapped from a lost life."""
    actions = np.random.default_rng(1).integers(0, 4, (300, 1))
    _, free = run(make("Breakout-v5", 1, backend=backend, **DETERMINISTIC), actions)
    lost = int(np.nonzero(free.terminated[:, 0])[0][0])
    assert free.done_length[lost, 0] == 0  # a life, not the game
    _, cut = run(make("Breakout-v5", 1, backend=backend, max_steps=lost + 1, **DETERMINISTIC), actions[:lost + 1])
    assert bool(cut.terminated[lost, 0]) and not bool(cut.truncated[lost, 0])
    np.testing.assert_array_equal(cut.final_obs[lost], free.final_obs[lost])
    assert cut.done_length[lost, 0] == lost + 1  # the game ended there, cut: its length reported
    assert lost > 0 and cut.inner.lives[lost, 0] == free.inner.lives[lost - 1, 0]  # the restarted game's: all
    assert not cut.terminated[:lost, 0].any() and not cut.truncated[:lost, 0].any()


def test_seeds_vmapped_share_one_pool_and_stay_independent():
    """Two seeds of 2 envs each under vmap run as one pool of 4 emulators; each seed's games equal
    an unbatched run of its own actions."""
    env = make("Pong-v5", 2, max_steps=30, **DETERMINISTIC)
    actions = np.stack([random_actions(env, 40, seed=s) for s in (1, 2)])  # [S, T, N]
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    _, both = jax.jit(jax.vmap(lambda k, a: rollout(env, k, a)))(keys, jnp.asarray(actions, jnp.int32))
    assert 4 in env._backend._pools
    for s in (0, 1):
        _, alone = run(make("Pong-v5", 2, max_steps=30, **DETERMINISTIC), actions[s])
        np.testing.assert_array_equal(np.asarray(both.obs[s]), alone.obs)
        np.testing.assert_array_equal(np.asarray(both.done_length[s]), alone.done_length)
    assert not np.array_equal(np.asarray(both.obs[0]), np.asarray(both.obs[1]))


def test_ale_backend_seeds_no_op_starts_from_the_key():
    env = make("Breakout-v5", 4, backend="ale", noop_max=30)
    actions = np.zeros((20, 4))
    _, a = run(env, actions, key=0)
    _, b = run(env, actions, key=0)
    _, c = run(env, actions, key=1)
    np.testing.assert_array_equal(a.obs, b.obs)
    assert not np.array_equal(a.obs, c.obs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(game="Nope-v5"), "unknown game 'Nope-v5'"),
    (dict(backend="gym"), "unknown backend 'gym'"),
    (dict(noop_max=0), "noop_max must be >= 1"),
    (dict(max_steps=0), r"max_steps must be in \[1, 2\*\*31\), got 0"),
    (dict(max_steps=2**31), r"max_steps must be in \[1, 2\*\*31\)"),  # failed after the run directory existed
    (dict(backend="ale", seed=5), r"the ale backend seeds its games from the run's key \(--seed\): drop the seed"),
    (dict(seed=3_000_000_000), r"seed must be in \[0, 2\*\*31\) \(EnvPool's int32 seed\)"),
    (dict(seed=-1), r"seed must be in \[0, 2\*\*31\)"),
])
def test_bad_options_are_refused(kwargs, message):
    game = kwargs.pop("game", "Pong-v5")
    with pytest.raises(ValueError, match=message):
        make(game, 2, **kwargs)


def test_every_bundled_rom_is_listed():
    names = registry.list_envs()
    for game in ("Pong", "Breakout", "Boxing", "Asterix"):
        assert f"atari/{game}-v5" in names
    assert sum(n.startswith("atari/") for n in names) > 50
    # ALE runs these only in multi-player modes; its single-player env aborted the process.
    assert not {"atari/Combat-v5", "atari/Joust-v5", "atari/MazeCraze-v5", "atari/Warlords-v5"} & set(names)
    # Asked for, they were answered with the closest other name ("did you mean 'Pooyan-v5'?").
    for asked, listed in (("Combat-v5", "Combat-v5"), ("MazeCraze", "MazeCraze-v5"), ("joust-v4", "Joust-v5")):
        with pytest.raises(registry.UnknownEnvError) as e:
            registry.make(f"atari/{asked}", 1)
        assert str(e.value) == (f"atari/{listed} is a ROM that ALE runs only in its multi-player modes, which this "
                                "single-agent suite does not train (EnvPool lacks it); `bpo-jax envs --suite atari` "
                                "lists the games it trains")
    with pytest.raises(registry.UnknownEnvError, match="did you mean 'Pong-v5'"):
        registry.make("atari/Pongg-v5", 1)


def test_cli_refuses_an_unknown_game_in_one_line(tmp_path, capsys):
    from bpo_jax import cli

    assert cli.main(["train", "--env", "atari/Nope-v5", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "Nope-v5" in err, err
    assert not (tmp_path / "run").exists()


def test_paper_presets_have_the_digest_settings():
    budgets = {"Pong": 20_000_000, "Breakout": 20_000_000, "Boxing": 20_000_000, "Asterix": 30_000_000}
    for game, budget in budgets.items():
        bpo = Config(**presets.resolve(f"paper/{game}", "bpo"))
        ppo = Config(**presets.resolve(f"paper/{game}", "ppo"))
        for c in (bpo, ppo):
            c.validate()
            assert c.env == f"atari/{game}-v5" and c.total_steps == budget
            assert (c.num_envs, c.num_steps, c.batch_size // c.num_minibatches) == (8, 128, 256)
            assert (c.lr, c.gamma, c.gae_lambda, c.vf_coef, c.anneal_lr) == (2.5e-4, 0.98, 0.95, 0.5, False)
        assert (bpo.num_epochs, bpo.eps, bpo.bpo_lambda, bpo.ent_coef, bpo.u_coef, bpo.max_grad_norm) == \
            (5, 0.3, 0.001, 0.001, 0.5, 1.0)
        assert bpo.hidden_sizes == (256,) and bpo.median_hidden_sizes == (256,) and bpo.use_median
        assert (ppo.num_epochs, ppo.eps, ppo.ent_coef, ppo.max_grad_norm, ppo.normalize_advantages) == \
            (4, 0.1, 0.01, 0.5, True)
        assert ppo.hidden_sizes == ()


@pytest.mark.slow
def test_training_smoke_two_seeds():
    """A few updates of the Nature-CNN trainer on Pong, 2 seeds vmapped (one pool of 4
    emulators), games cut at 8 steps so that whole-game scores are reported: finite losses,
    raw integer Pong scores, uint8 frames in the rollout buffer.  BPO, whose network has every
    head (PPO's CNN without the median head: tests/test_cnn.py; its loop is every suite's)."""
    config = Config(env="atari/Pong-v5", algo="bpo", num_envs=2, num_steps=8, num_epochs=1, num_minibatches=2,
                    total_steps=2 * 8 * 2, hidden_sizes=(32,), median_hidden_sizes=(16,), env_options=("max_steps=8",))
    trainer = make_trainer(config)
    hp = config.hparams()
    init = jax.eval_shape(trainer.init, jax.random.key(0), hp)
    traj = jax.eval_shape(trainer.collect, init, hp)[0]
    assert traj.obs.dtype == jnp.uint8 and traj.obs.shape == (8, 2, 84, 84, 4)
    # XLA's older CPU emitters compile this program ~25% faster; the run is short, but its
    # convolutions run 2x slower at LLVM's lowest optimisation (the session's default).
    result = runner.run(config, num_seeds=2, compiler_options={**FULL, "xla_cpu_use_fusion_emitters": False})
    m = {k: np.asarray(v) for k, v in result.metrics.items()}
    assert m["loss"].shape == (2, 2) and np.all(np.isfinite(m["loss"])) and not np.any(m["nonfinite"])
    assert np.all(m["episodes"] >= 2)  # 2 games of 8 steps per update and seed
    returns = m["episode_return_mean"]
    assert np.all(returns == np.round(returns)) and np.all(np.abs(returns) <= 21)


def tiny_pong(backend: str, updates: int = 2) -> Config:
    return Config(env="atari/Pong-v5", algo="ppo", num_envs=2, num_steps=8, num_epochs=1, num_minibatches=2,
                  total_steps=updates * 16, hidden_sizes=(16,), env_options=(f"backend={backend}", "noop_max=1"))


# ale's restart is in `-m extended`, which resumes an ale run twice (the restart, then its pool stepped on).
@pytest.mark.parametrize("backend", ["envpool", pytest.param("ale", marks=pytest.mark.extended)])
def test_restart_envs_starts_every_game_again_and_keeps_the_learner(backend):
    """What a resumed run does first: the emulators are in no checkpoint (host_state)."""
    config = tiny_pong(backend)
    trainer, hp = make_trainer(config), config.hparams()
    assert registry.host_state(config.env)
    state, _ = jax.jit(trainer.update)(jax.jit(trainer.init)(jax.random.key(0), hp), hp)
    assert np.all(np.asarray(state.env_state.episode_length) == 8)  # 8 steps into both games
    restarted = jax.jit(trainer.restart_envs)(state)
    frames = np.asarray(restarted.env_state.obs)
    assert np.all(np.asarray(restarted.env_state.episode_length) == 0)
    assert np.all(frames[..., :3] == 0) and np.all(frames[..., 3].reshape(2, -1).max(axis=1) > 0)
    jax.tree.map(np.testing.assert_array_equal, restarted.params, state.params)
    assert not np.array_equal(jax.random.key_data(restarted.key), jax.random.key_data(state.key))
    after, metrics = jax.jit(trainer.update)(restarted, hp)  # the pool steps on from its reset
    assert np.isfinite(metrics["loss"]) and np.all(np.asarray(after.env_state.episode_length) == 8)


@pytest.mark.slow
@pytest.mark.extended  # 33 s; the default suite restarts EnvPool's games in test_restart_envs_*
def test_an_interrupted_run_resumes_with_its_games_restarted_the_same_way_twice(tmp_path):
    """The ale backend refused to step a pool a resumed run had never reset ("send() called
    before reset()"); EnvPool stepped it on silently."""
    from bpo_jax.session import RunOptions, RunSession

    options = RunOptions(tensorboard=False, progress=False, fast_compile=True, checkpoint_every_updates=1)

    def stop_after_two(p):
        if p.update == 2:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        RunSession.start(tiny_pong("ale", updates=4), out=str(out), chunk_updates=1, options=options).run(stop_after_two)
    shutil.copytree(out, tmp_path / "copy")
    finished = [RunSession.resume(str(d), options).run() for d in (out, tmp_path / "copy")]
    assert [f.summary["env_steps"] for f in finished] == [64, 64]
    jax.tree.map(np.testing.assert_array_equal, finished[0].result.state.params, finished[1].result.state.params)


@pytest.mark.parametrize("flags,said", [
    (["--normalize-obs"], "--normalize-obs does not apply to image observations (atari/Pong-v5)"),
    (["--reset-pool", "2"], "atari/Pong-v5 does not support cached resets (--reset-pool)"),
])
def test_cli_refuses_what_cannot_apply_to_frames_before_writing(tmp_path, capsys, flags, said):
    """Both were refused only once the run directory existed (the network and the reset pool
    were built after it)."""
    from bpo_jax import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--env", "atari/Pong-v5", "--num-envs", "2", "--num-steps", "16", "--num-minibatches",
                     "2", "--total-steps", "32", *flags, "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bpo-jax: error: {said}") and len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.slow
@pytest.mark.extended  # 19 s, a child process with 2 devices; the default suite trains 2 seeds on one
def test_seeds_train_on_one_device_where_there_are_several():
    """XLA cannot partition EnvPool's custom calls: a 2-seed run on 2 CPU devices (the CLI's
    default split puts seeds on cores) failed with 'Side-effect HLO must have sharding'."""
    code = textwrap.dedent("""
        import jax, numpy as np
        from bpo_jax import Config, runner
        from bpo_jax.config import ConfigError
        config = Config(env="atari/Pong-v5", algo="ppo", num_envs=2, num_steps=8, num_epochs=1, num_minibatches=2,
                        total_steps=16, hidden_sizes=(16,), env_options=("noop_max=1",))
        assert len(jax.devices()) == 2
        result = runner.run(config, num_seeds=2, compiler_options=runner.FAST_COMPILE)
        print(bool(np.isfinite(np.asarray(result.metrics["loss"])).all()))
        try:
            runner.fitting_devices(None, "seeds", 2, config)
        except ConfigError as e:
            print(e)
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "True", "atari/Pong-v5 steps its simulators outside XLA, which cannot split them over devices: train it "
        "on one device (`split` auto, one process), not 2"]


def test_eval_runs_the_ale_backend_one_seed_after_another():
    """eval vmapped its while loop over seeds; the ale backend's host callbacks cannot run under
    a batched predicate (a 28-line traceback for every ale run).  Two seeds with the same
    parameters and eval key play the same games: the ale backend seeds its no-op starts from the key."""
    from bpo_jax.evaluate import run_eval

    config = tiny_pong("ale")
    one = make_trainer(config).init(jax.random.key(0), config.hparams())
    state = jax.tree.map(lambda x: jnp.stack([x, x]), one)
    result = run_eval(config, state, episodes=2, seed=3, max_steps=40)
    first, second = result["per_seed"]
    assert first["returns"] == second["returns"] and len(first["returns"]) == 2
    assert all(r == round(r) and abs(r) <= 21 for r in first["returns"])
    assert first["mean_length"] == 40.0 and first["episodes_finished"] == 0  # Pong lasts longer than 40 steps
