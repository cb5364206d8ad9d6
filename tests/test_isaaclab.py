"""isaaclab/ adapter and host loop against a torch env that subclasses rsl_rl's VecEnv."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bpo_jax import host_loop, losses, lr_schedule, reporting  # noqa: E402
from bpo_jax.config import Config  # noqa: E402
from bpo_jax.envs.isaaclab import EnvDataError, IsaacLabEnv, observation_groups, to_jax, to_torch  # noqa: E402
from tests.fake_vec_env import FaultyPointGoalEnv, LegacyPointGoalEnv, PointGoalEnv  # noqa: E402

RANDOM_POLICY_RETURN = 10.9  # N(0, 1) actions, measured over 256 envs (zero actions: 16.5)


def test_dlpack_round_trip_shares_memory():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = to_jax(t)
    assert a.shape == (3, 4) and a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a), t.numpy())
    back = to_torch(a)
    torch.testing.assert_close(back, t)
    # zero-copy on CPU: the JAX array and the tensors share one buffer
    assert back.data_ptr() == t.data_ptr()
    flags = to_jax(torch.tensor([True, False]))
    assert flags.dtype == jnp.bool_ and bool(flags[0]) and not bool(flags[1])


@pytest.mark.parametrize("cls", [PointGoalEnv, LegacyPointGoalEnv])
def test_both_observation_apis(cls):
    env = cls(num_envs=8, seed=0)
    groups = observation_groups(env.get_observations())
    assert sorted(groups) == ["critic", "policy"]
    assert groups["policy"].shape == (8, 4) and groups["critic"].shape == (8, 6)
    sym, asym = IsaacLabEnv(env), IsaacLabEnv(cls(num_envs=8, seed=0), asymmetric_critic=True)
    assert sym.obs_spec.shape == (4,) and asym.obs_spec.shape == (10,) and asym.policy_obs_dim == 4
    step = asym.step(jnp.zeros((8, 2)))
    assert step.obs.shape == (8, 10) and step.reward.shape == (8,) and step.terminated.dtype == jnp.bool_
    # The policy group first (the actor reads the first policy_obs_dim columns), then the critic's.
    observations = asym.env.get_observations()  # its policy group is noisy: one draw for both sides
    groups = observation_groups(observations)
    np.testing.assert_array_equal(asym._obs(observations).numpy(),
                                  np.concatenate([groups["policy"].numpy(), groups["critic"].numpy()], -1))


def test_time_outs_are_truncations_bootstrapped_from_s_t():
    """Same-step resets: a time-out is a truncation whose bootstrap observation is s_t; leaving
    the box is a termination; GAE on it equals rsl_rl's r += gamma V(s_t) with the trace cut."""
    env = IsaacLabEnv(PointGoalEnv(num_envs=4, max_episode_length=3, seed=0))
    env.env.pos[0] = torch.tensor([1.95, 0.0])  # env 0 leaves the box on its first step
    obs0 = env.observe()
    first = env.step(jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    assert bool(first.terminated[0]) and not bool(first.truncated[0]) and not bool(first.terminated[1])
    second = env.step(jnp.zeros((4, 2)))
    third = env.step(jnp.zeros((4, 2)))
    assert not bool(third.truncated[0]) and bool(third.truncated[1:].all()) and not bool(third.terminated[1:].any())
    assert "Episode_Reward/tracking" in third.log and "Episode_Termination/time_out" in third.log
    # the host loop's rollout: final_obs is s_t on the time-out step, s_{t+1} otherwise
    trainer_cfg = Config(algo="bpo", num_envs=4, num_steps=3, num_minibatches=1, total_steps=12)
    trainer = host_loop.make_trainer(host_loop.host_config(trainer_cfg, env), env)
    _, assemble, _ = host_loop.make_programs(trainer)
    steps = [first, second, third]
    obs = [obs0, first.obs, second.obs]
    frames = [host_loop.first_frame(obs0)] + [s.frame for s in steps]
    traj, _ = assemble(frames, [jnp.zeros((4, 2))] * 3, [jnp.zeros(4)] * 3, (jnp.zeros(4), jnp.zeros(4, jnp.int32)))
    np.testing.assert_array_equal(traj.final_obs[2, 1:], obs[2][1:])
    np.testing.assert_array_equal(traj.final_obs[1], second.obs)
    assert int(traj.done_length[2, 1]) == 3 and int(traj.done_length[0, 0]) == 1
    # GAE with final_obs = s_t equals rsl_rl's reward bootstrap on time-outs
    rng = np.random.default_rng(0)
    values, last = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    rewards = np.asarray(traj.reward)
    next_values = np.where(np.asarray(traj.truncated), values, np.concatenate([values[1:], last[None]]))
    adv, ret = losses.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(next_values), traj.terminated,
                          traj.truncated, 0.99, 0.95)
    np.testing.assert_allclose(ret, _rsl_returns(rewards, values, last, np.asarray(traj.done),
                                                 np.asarray(traj.truncated), 0.99, 0.95), rtol=1e-5, atol=1e-5)


def _rsl_returns(rewards, values, last_values, dones, time_outs, gamma, lam):
    """rsl_rl's PPO: r += gamma V(s_t) on time-outs at rollout time, then GAE cut at every done."""
    rewards = rewards + gamma * values * time_outs
    returns, adv = np.zeros_like(rewards), 0.0
    for t in reversed(range(len(rewards))):
        nxt = last_values if t == len(rewards) - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + live * gamma * nxt - values[t]
        adv = delta + live * gamma * lam * adv
        returns[t] = adv + values[t]
    return returns


def test_bpo_learns_through_the_adapter(tmp_path):
    """BPO with the paper's IsaacLab settings (adaptive KL, ELU, clamp 10, lambda 0.01, u_coef 1)
    on the fake env: the mean return of the last iterations' episodes is far above a random
    policy's (10.9; measured 85-92 after 20-30 iterations, threshold with margin)."""
    config = Config(algo="bpo", num_envs=64, num_steps=24, num_epochs=5, num_minibatches=4, total_steps=64 * 24 * 25,
                    hidden_sizes=(64, 64), activation="elu", lr=1e-3, lr_schedule="adaptive", max_grad_norm=1.0,
                    vf_coef=1.0, eps=0.2, bpo_lambda=0.01, u_coef=1.0, logit_clamp=10.0, seed=0)
    result = host_loop.train(config, PointGoalEnv(64, seed=0), out=str(tmp_path), quiet=True)
    ret = result.metrics["episode_return_mean"]
    final = np.nanmean(ret[-5:])
    assert final > RANDOM_POLICY_RETURN + 50, ret
    assert np.all(np.isfinite(result.metrics["loss"]))
    # The adaptive schedule moves the rate and keeps it inside its clamp, which it applies in
    # float32 (float32(1e-5) < 1e-5: a rate at the floor must pass).
    lr = result.metrics["lr"]
    low, high = np.float32(lr_schedule.MIN_LR), np.float32(lr_schedule.MAX_LR)
    assert np.all((lr >= low) & (lr <= high)) and len(np.unique(lr)) > 1, lr
    assert np.nanmean(result.episode_terms["Episode_Reward/tracking"][-5:]) > 50
    assert result.collection_seconds.shape == (25,) and result.learning_seconds.min() > 0
    for name in ("metrics.csv", "summary.json", "config.json", "iterations.csv"):
        assert (tmp_path / name).exists()
    header = (tmp_path / "iterations.csv").read_text().splitlines()[0]
    assert "collection_seconds" in header and "Episode_Reward/tracking" in header and "lr" in header


class BufferedPointGoalEnv(PointGoalEnv):
    """``get_observations`` reads the observation buffer of the last step instead of drawing new
    observation noise, so that reading it does not move the env's random stream."""

    def _observations(self):
        self.buffer = super()._observations()
        return self.buffer

    def get_observations(self):
        return self.buffer if hasattr(self, "buffer") else self._observations()


def test_checkpoint_and_resume_continue_the_learner_exactly(tmp_path):
    """4 iterations straight against 2, a checkpoint, and 2 more resumed from it: with the
    simulator carried on (the checkpoint holds the learner, not the simulator, as rsl_rl's),
    the parameters, optimiser and key end bit-identical and the resumed run reports all 4 rows."""
    from bpo_jax import checkpoint

    config = Config(algo="bpo", num_envs=16, num_steps=8, num_epochs=2, num_minibatches=2, total_steps=16 * 8 * 4,
                    hidden_sizes=(16,), lr_schedule="adaptive", normalize_obs=True, seed=3)
    straight = host_loop.train(config, BufferedPointGoalEnv(16, seed=0), quiet=True)
    env = BufferedPointGoalEnv(16, seed=0)
    out = tmp_path / "run"
    first = host_loop.train(config, env, num_iterations=2, out=str(out), checkpoint_every=1, quiet=True)
    assert [p.rsplit("_", 1)[1] for p in checkpoint.list_checkpoints(str(out / "checkpoints"))] == ["00000001", "00000002"]
    resumed = host_loop.train(config, env, resume=str(out), out=str(out), quiet=True)
    for a, b in zip(jax.tree.leaves((straight.state.params, straight.state.opt_state, straight.state.obs_stats)),
                    jax.tree.leaves((resumed.state.params, resumed.state.opt_state, resumed.state.obs_stats))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(jax.random.key_data(straight.state.key), jax.random.key_data(resumed.state.key))
    np.testing.assert_array_equal(resumed.metrics["loss"], straight.metrics["loss"])
    np.testing.assert_array_equal(resumed.metrics["loss"][:2], first.metrics["loss"])
    assert resumed.collection_seconds.shape == (4,) and len((out / "iterations.csv").read_text().splitlines()) == 5
    # The first two iterations' timings are the first run's, each where it was measured.
    np.testing.assert_allclose(resumed.collection_seconds[:2], first.collection_seconds)
    np.testing.assert_allclose(resumed.learning_seconds[:2], first.learning_seconds)
    with pytest.raises(checkpoint.CheckpointError, match="already run 4 of 4"):
        host_loop.train(config, env, resume=str(out), quiet=True)
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
        host_loop.train(config.replace(hidden_sizes=(8,)), env, resume=str(out), quiet=True)


def test_legacy_api_asymmetric_critic_random_ep_len_and_export(tmp_path):
    """IsaacLab 2.1's (obs, extras) API, critic group fed to critic and median, init_at_random_ep_len,
    then the exported policy reproduces the trained actor without the training code."""
    from bpo_jax.export import export_policy, load_policy

    env = LegacyPointGoalEnv(16, seed=1)
    config = Config(algo="bpo", num_envs=16, num_steps=8, num_minibatches=2, num_epochs=2, total_steps=16 * 8 * 2,
                    asymmetric_critic=True, separate_median=True, recompute_returns=True, normalize_obs=True,
                    init_at_random_ep_len=True, env="isaaclab/custom")
    result = host_loop.train(config, env, quiet=True)
    assert result.config.policy_obs_dim == 4 and result.trainer.env.obs_spec.shape == (10,)
    assert int(env.episode_length_buf.max()) > 0  # randomised before the first step
    critic = result.state.params["params"]["critic"]
    assert critic["MLP_0"]["Dense_0"]["kernel"].shape[0] == 6  # the critic group only
    assert critic["median_net"]["Dense_0"]["kernel"].shape[0] == 6
    assert result.state.params["params"]["actor"]["MLP_0"]["Dense_0"]["kernel"].shape[0] == 4
    path = str(tmp_path / "policy.jaxexport")
    export_policy(path, result.config, result.trainer.env.action_space, result.state, obs_dim=10)
    policy = load_policy(path)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    full = jnp.concatenate([obs, jnp.zeros((5, 6))], axis=-1)
    from bpo_jax import normalization as norm
    from bpo_jax.networks import make_network
    net = make_network(result.config, result.trainer.env.action_space)
    expected = net.apply(result.state.params, norm.normalize(result.state.obs_stats, full, 10.0), method="policy").mean
    np.testing.assert_allclose(policy(obs), expected, rtol=1e-5, atol=1e-6)
    assert policy(obs[:2]).shape == (2, 2)  # symbolic batch size
    # The ONNX file of the same policy (the actor's group only, its slice of the normaliser).
    ort = pytest.importorskip("onnxruntime")
    from bpo_jax.export import export_onnx

    export_onnx(str(tmp_path / "policy.onnx"), result.config, result.trainer.env.action_space, result.state, 10)
    onnx_actions = ort.InferenceSession(str(tmp_path / "policy.onnx")).run(None, {"obs": obs})[0]
    np.testing.assert_allclose(onnx_actions, expected, rtol=1e-5, atol=1e-6)


def test_cli_trains_an_isaaclab_task_through_the_host_loop(tmp_path, monkeypatch, capsys):
    """``bpo-jax train --env isaaclab/<task>`` runs the host loop (IsaacLab's env builder swapped
    for the fake env) and writes the outputs and a policy.jaxexport that runs with jax alone."""
    from bpo_jax import cli
    from bpo_jax.export import load_policy

    monkeypatch.setattr(host_loop, "make_env", lambda c: IsaacLabEnv(PointGoalEnv(c.num_envs, seed=0), name=c.env))
    out = tmp_path / "run"
    argv = ["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0", "--algo", "ppo", "--num-envs", "8",
            "--num-steps", "8", "--num-minibatches", "2", "--num-epochs", "1", "--total-steps", "128",
            "--lr-schedule", "adaptive", "--init-at-random-ep-len", "--out", str(out), "--quiet"]
    # The multi-process flags and --split were accepted and ignored: one process, one device.
    for extra in (["--join-timeout", "5"], ["--split", "seeds"], ["--coordinator", "localhost:1234"]):
        assert cli.main(argv + extra) == 2
        assert capsys.readouterr().err.strip() == ("bpo-jax: error: isaaclab/ runs one simulator process on one "
                                                   f"device, never split or joined with others; drop {extra[0]}")
    assert not out.exists()
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "final return" in capsys.readouterr().err
    rows = (out / "iterations.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("iteration,env_steps,collection_seconds,learning_seconds,lr")
    assert '"env": "isaaclab/Isaac-Velocity-Rough-G1-v0"' in (out / "config.json").read_text()
    assert load_policy(str(out / "policy.jaxexport"))(np.zeros((3, 4), np.float32)).shape == (3, 2)


def test_cli_resumes_an_interrupted_isaaclab_run(tmp_path, monkeypatch, capsys):
    """An isaaclab/ run stopped in its third iteration (Ctrl-C) points at --resume; resuming
    finishes the 3 iterations in the same directory from the checkpoint of iteration 2; a
    finished run is refused in one line."""
    from bpo_jax import cli

    class Interrupted(PointGoalEnv):
        calls = 0

        def step(self, actions):
            Interrupted.calls += 1
            if Interrupted.calls == 17:  # iteration 3's first step (8 steps per iteration)
                raise KeyboardInterrupt
            return super().step(actions)

    monkeypatch.setattr(host_loop, "make_env", lambda c: IsaacLabEnv(Interrupted(c.num_envs, seed=0), name=c.env))
    out = tmp_path / "run"
    argv = ["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0", "--algo", "ppo", "--num-envs", "8",
            "--num-steps", "8", "--num-minibatches", "2", "--num-epochs", "1", "--total-steps", "192",
            "--checkpoint-every", "1", "--out", str(out), "--quiet"]
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert f"step_00000002 with: bpo-jax train --resume {out}" in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bpo-jax: error: interrupted (Ctrl-C) in iteration 3; continue from "), err
    assert reporting.incomplete_note(str(out)) == last.removeprefix("bpo-jax: error: ")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    assert cli.main(["train", "--resume", str(out), "--num-envs", "16"]) == 2
    assert "drop --num-envs" in capsys.readouterr().err
    note = (out / "INCOMPLETE").read_text()  # the run directory says it stopped and how to go on
    assert "interrupted (Ctrl-C)" in note and f"step_00000002 with: bpo-jax train --resume {out}" in note
    # A resume that fails before its first iteration says why, not what the earlier stop's note said.
    with monkeypatch.context() as m:
        m.setattr(host_loop, "make_trainer", lambda *a: (_ for _ in ()).throw(ValueError("a fault of its own")))
        assert cli.main(["train", "--resume", str(out), "--quiet"]) == cli.EXIT_FAILURE
    assert capsys.readouterr().err.splitlines()[-1] == "bpo-jax: error: a fault of its own"
    assert '"env": "isaaclab/Isaac-Velocity-Rough-G1-v0"' in (out / "config.json").read_text()
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert len((out / "iterations.csv").read_text().splitlines()) == 4  # header + 3 iterations
    assert not (out / "INCOMPLETE").exists()
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has finished (3 of 3 iterations)" in err and len(err.strip().splitlines()) == 1


def test_cli_interrupted_before_a_checkpoint_says_how_to_start_again_in_its_words(tmp_path, monkeypatch, capsys):
    """The console said --overwrite while INCOMPLETE said `overwrite` (a library name) with no
    command; a Ctrl-C before the first iteration wrote nothing and says so."""
    from bpo_jax import cli

    class Interrupted(PointGoalEnv):
        def step(self, actions):
            raise KeyboardInterrupt

    monkeypatch.setattr(host_loop, "make_env", lambda c: IsaacLabEnv(Interrupted(c.num_envs, seed=0), name=c.env))
    out = tmp_path / "run"
    argv = ["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0", "--num-envs", "8", "--num-steps", "8",
            "--num-minibatches", "2", "--num-epochs", "1", "--total-steps", "128", "--out", str(out), "--quiet"]
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip().splitlines()[-1].removeprefix("bpo-jax: error: ")
    assert err == ("interrupted (Ctrl-C) in iteration 1 before the first checkpoint was saved; nothing to resume: "
                   f"start the run again with: bpo-jax {' '.join(argv[:-1])} --quiet --overwrite")
    assert reporting.incomplete_note(str(out)) == err and "`" not in err
    monkeypatch.setattr(host_loop, "make_trainer", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    other = tmp_path / "other"
    assert cli.main([*argv[:-2], str(other), "--quiet"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.splitlines()[-1] == ("bpo-jax: error: interrupted (Ctrl-C) before the first "
                                                        "iteration; nothing was written")
    assert not other.exists()


def _small(**changes) -> Config:
    return Config(**{**dict(algo="bpo", num_envs=8, num_steps=8, num_epochs=1, num_minibatches=2,
                            total_steps=8 * 8 * 3, hidden_sizes=(16,), seed=0), **changes})


class NoCriticEnv(PointGoalEnv):
    def _groups(self):
        return {"policy": super()._groups()["policy"]}


def test_asymmetric_critic_without_a_critic_group_is_refused():
    """It was silently trained symmetric while config.json said asymmetric_critic: true."""
    with pytest.raises(ValueError, match="`asymmetric_critic` needs a 'critic' observation group.*groups: policy"):
        IsaacLabEnv(NoCriticEnv(8), asymmetric_critic=True)
    with pytest.raises(ValueError, match="made without it"):
        host_loop.wrap(IsaacLabEnv(PointGoalEnv(8)), asymmetric_critic=True)


@pytest.mark.parametrize("fault, message", [
    ("nan", r"the env's reward is not finite \(NaN or Inf; first in env 0\)"),
    ("width", r"the env's observation has shape \(8, 5\), not \(8, 4\)"),
    ("batch", r"the env's reward has shape \(4,\), not \(8,\): one reward per env"),
    ("dones", r"the env's dones has shape \(4,\), not \(8,\): one per env"),
    ("nan_obs", r"the env's observation is not finite \(NaN or Inf; first in env 0\)"),
])
def test_bad_env_data_is_named_by_the_adapter(fault, message):
    """A NaN reward became a NaN loss iterations later, a wider observation a flax parameter
    shape error, a short reward batch torch's stack error, a short dones batch a broadcast error
    naming neither."""
    env = IsaacLabEnv(FaultyPointGoalEnv(8, fault=fault, at=1))
    with pytest.raises(EnvDataError, match=message):
        env.step(jnp.zeros((8, 2)))


def test_a_nan_first_observation_is_named_before_any_action():
    """It reached the policy, whose NaN actions went to the simulator, and the stop blamed the reward."""
    env = FaultyPointGoalEnv(8, fault="nan_obs", at=0)
    with pytest.raises(EnvDataError, match=r"^at the start \(get_observations\), the env's observation is not finite"):
        host_loop.train(_small(), env, num_iterations=1, quiet=True)
    assert env.steps == 0


def test_time_outs_as_an_array_and_a_tensordict_log_are_read():
    """A NumPy time_outs had no .to(); a TensorDict log has no truth value (``log or ...``)."""
    plain, odd = IsaacLabEnv(PointGoalEnv(8, max_episode_length=2)), IsaacLabEnv(
        FaultyPointGoalEnv(8, max_episode_length=2, fault="numpy", at=1))
    for _ in range(2):
        a, b = plain.step(jnp.zeros((8, 2))), odd.step(jnp.zeros((8, 2)))
    np.testing.assert_array_equal(a.frame, b.frame)
    assert bool(b.truncated.all()) and a.log == b.log and "Episode_Reward/tracking" in b.log


def test_host_loop_run_directory_markers_and_a_used_out(tmp_path):
    """config.json and INCOMPLETE from the start, INCOMPLETE gone at the end; a second run into
    the same ``out`` is refused (it mixed run A's checkpoints with run B's outputs) unless
    ``overwrite`` empties it; no iterations is refused in one line."""
    from bpo_jax import checkpoint, reporting

    out = tmp_path / "run"
    seen = []
    host_loop.train(_small(), PointGoalEnv(8), out=str(out), num_iterations=2, checkpoint_every=1, quiet=True,
                    on_iteration=lambda i, row: seen.append((out / "INCOMPLETE").read_text()))
    assert f"bpo_jax.host_loop.train(config, env, resume={str(out)!r}" in seen[0]
    assert seen[0].count("training has not finished") == 1 and seen[0].rstrip().endswith("start it again with `overwrite`")
    assert not (out / "INCOMPLETE").exists() and (out / "summary.json").exists()
    with pytest.raises(reporting.OutputDirError, match="exists and is not empty; set `overwrite`"):
        host_loop.train(_small(seed=1), PointGoalEnv(8), out=str(out), num_iterations=1, quiet=True)
    host_loop.train(_small(seed=1), PointGoalEnv(8), out=str(out), num_iterations=1, checkpoint_every=1,
                    quiet=True, overwrite=True)
    assert [p.rsplit("_", 1)[1] for p in checkpoint.list_checkpoints(str(out / "checkpoints"))] == ["00000001"]
    assert '"seed": 1' in (out / "config.json").read_text()
    with pytest.raises(ValueError, match="`num_iterations` must be >= 1, got 0"):
        host_loop.train(_small(), PointGoalEnv(8), num_iterations=0, quiet=True)


@pytest.mark.parametrize("fault, message", [
    ("nan", "stopped: at iteration 3, the env's reward is not finite"),
    ("width", "stopped: at iteration 3, the env's observation has shape (8, 5)"),
    ("huge", "stopped: non-finite loss or gradient at iteration 3"),
])
def test_cli_stops_on_bad_env_data_or_a_nan_loss_in_one_line(fault, message, tmp_path, monkeypatch, capsys):
    """Each ended in a raw traceback (FloatingPointError; 47 lines of flax ScopeParamShapeError).
    Now: one line naming the iteration, the last good checkpoint and --resume (not after a NaN
    loss, which resuming would meet again), the same note in INCOMPLETE, and DIVERGED where the
    loss went NaN (as the JAX suites mark it)."""
    from bpo_jax import cli

    monkeypatch.setattr(host_loop, "make_env", lambda c: IsaacLabEnv(
        FaultyPointGoalEnv(c.num_envs, seed=0, fault=fault, at=17), name=c.env))
    out = tmp_path / "run"
    argv = ["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0", "--num-envs", "8", "--num-steps", "8",
            "--num-minibatches", "2", "--num-epochs", "1", "--total-steps", "192", "--hidden-sizes", "16",
            "--checkpoint-every", "1", "--out", str(out), "--quiet"]
    assert cli.main(argv) == cli.EXIT_FAILURE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"bpo-jax: error: {message}") and "Traceback" not in err, err
    if fault == "huge":  # resuming would meet the same update again: no resume offered, as a JAX suite's run
        assert err.endswith(f"; kept the last good checkpoint {out}/checkpoints/step_00000002; metrics.csv holds the "
                            "2 updates before it")
    else:
        assert f"; continue from {out}/checkpoints/step_00000002 with: bpo-jax train --resume {out}" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    assert err.removeprefix("bpo-jax: error: ") in (out / "INCOMPLETE").read_text()
    assert (out / "DIVERGED").exists() == (fault == "huge")


class InterruptedAtOnce(PointGoalEnv):
    def step(self, actions):
        raise KeyboardInterrupt


@pytest.mark.parametrize("fault", ["huge", "nan"])
def test_a_run_stopped_by_a_nan_keeps_the_iterations_before_it_in_metrics_csv(fault, tmp_path):
    """A NaN loss (DIVERGED) or NaN reward left the good iterations in the last checkpoint only;
    a diverged JAX-suite run writes them to metrics.csv (no summary.json or curve.png; no
    metrics.csv where the first update was bad).  Now the host loop does the same, in a
    finished run's format; a resume in place drops the stop's metrics.csv."""
    import csv

    from bpo_jax import checkpoint, reporting
    from bpo_jax.runner import NonFiniteError

    config, out, reported = _small(), tmp_path / "run", []
    with pytest.raises((NonFiniteError, EnvDataError), match="iteration 3"):
        host_loop.train(config, FaultyPointGoalEnv(8, fault=fault, at=17), out=str(out), checkpoint_every=1,
                        quiet=True, on_iteration=lambda i, row: reported.append(row))
    assert (out / "DIVERGED").exists() == (fault == "huge") and (out / "INCOMPLETE").exists()
    assert not (out / "summary.json").exists() and not (out / "curve.png").exists()
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["update"], r["seed"], r["env_steps"]) for r in rows] == [("1", "0", "64"), ("2", "0", "128")]
    # The rows the run reported, and the last checkpoint's (which holds them and their steps/s).
    env = IsaacLabEnv(PointGoalEnv(8))
    fresh = jax.jit(host_loop.make_trainer(host_loop.host_config(config, env), env).init)(
        jax.random.key(0), config.hparams())
    ckpt = checkpoint.list_checkpoints(str(out / "checkpoints"))[-1]
    _, saved, sps, _ = checkpoint.restore(ckpt, jax.tree.map(lambda x: x[None], fresh))
    names = [k for k in rows[0] if k not in ("update", "seed", "env_steps", "steps_per_second")]
    assert "loss" in names and "episode_return_mean" in names
    for i, (row, seen) in enumerate(zip(rows, reported)):
        assert [row[k] for k in names] == [reporting.csv_number(seen[k]) for k in names]
        assert [row[k] for k in names] == [reporting.csv_number(saved[k][0, i]) for k in names]
        assert row["steps_per_second"] == f"{sps[i]:.1f}"
    finished = tmp_path / "finished"  # the columns of a run that finishes
    host_loop.train(config, PointGoalEnv(8), out=str(finished), num_iterations=1, quiet=True)
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header == (finished / "metrics.csv").read_text().splitlines()[0]

    with pytest.raises(KeyboardInterrupt):  # its rows past the checkpoint would be run again
        host_loop.train(config, InterruptedAtOnce(8), resume=str(out), out=str(out), quiet=True)
    assert not (out / "metrics.csv").exists() and not (out / "DIVERGED").exists()

    first = tmp_path / "first"  # bad at once: no good iteration, no metrics.csv
    with pytest.raises((NonFiniteError, EnvDataError), match="iteration 1"):
        host_loop.train(config, FaultyPointGoalEnv(8, fault=fault, at=1), out=str(first), quiet=True)
    assert (first / "DIVERGED").exists() == (fault == "huge") and not (first / "metrics.csv").exists()


def test_cli_final_return_when_no_episode_ended(tmp_path, monkeypatch, capsys):
    """It printed "final return nan"; the other suites print n/a.  A used --out is refused."""
    from bpo_jax import cli

    monkeypatch.setattr(host_loop, "make_env", lambda c: IsaacLabEnv(PointGoalEnv(c.num_envs, 1000), name=c.env))
    out = tmp_path / "run"
    argv = ["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0", "--num-envs", "8", "--num-steps", "4",
            "--num-minibatches", "2", "--num-epochs", "1", "--total-steps", "64", "--hidden-sizes", "16",
            "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert "final return n/a (no episode ended in the last 10% of updates)" in capsys.readouterr().err
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "exists and is not empty; set --overwrite or choose another --out" in capsys.readouterr().err


@pytest.fixture
def launches(monkeypatch):
    """The stand-in IsaacLab packages (tests/fake_isaaclab) importable for one test; the list of
    Isaac Sim launches (AppLauncher's keywords)."""
    import importlib
    import os
    import sys

    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "fake_isaaclab"))
    yield importlib.import_module("isaaclab.app").LAUNCHES
    for name in [m for m in sys.modules if m.partition(".")[0] in ("isaaclab", "isaaclab_tasks", "isaaclab_rl")]:
        del sys.modules[name]


def test_make_builds_any_registered_task_with_its_options(launches):
    from bpo_jax.envs import isaaclab

    env = isaaclab.make("Isaac-Velocity-Rough-Anymal-C-v0", num_envs=8, device="cpu", use_fabric=False)
    assert (env.name, env.num_envs, env.env.cfg.use_fabric, env.env.cfg.device) == (
        "isaaclab/Isaac-Velocity-Rough-Anymal-C-v0", 8, False, "cpu")
    assert launches == [{"headless": True, "device": "cpu"}]
    assert isaaclab.make("Isaac-Velocity-Rough-G1-v0", num_envs=4).env.cfg.use_fabric is True  # the task's own


@pytest.mark.parametrize("options, message", [
    ({"foo": 1}, "isaaclab/Isaac-Velocity-Rough-G1-v0 has no option(s) foo; valid: device, headless, use_fabric"),
    ({"headless": "no"}, "isaaclab/Isaac-Velocity-Rough-G1-v0: option headless takes True or False"),
    ({"device": 5}, "option device takes text"),
    ({"use_fabric": 1}, "option use_fabric takes True or False"),
])
def test_bad_options_are_refused_before_isaac_sim_starts(launches, options, message):
    """They went to AppLauncher and parse_env_cfg unchecked: a TypeError traceback once the
    simulator had started, or a wrong value passed on."""
    from bpo_jax.envs import isaaclab

    with pytest.raises(ValueError) as e:
        isaaclab.make("Isaac-Velocity-Rough-G1-v0", num_envs=8, **options)
    assert message in str(e.value) and launches == []


def test_a_mistyped_task_is_one_line_with_the_close_ones(launches, tmp_path, capsys):
    """It was gymnasium's VersionNotFound traceback."""
    from bpo_jax import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v1", "--num-envs", "8", "--num-steps", "8",
                     "--num-minibatches", "2", "--total-steps", "64", "--out", str(out), "--quiet"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("bpo-jax: error: unknown isaaclab environment 'Isaac-Velocity-Rough-G1-v1'; did you mean "
                          "'Isaac-Velocity-Rough-G1-v0'?") and "\n" not in err, err
    assert not out.exists() and len(launches) == 1


def test_a_flag_the_run_would_not_read_is_refused_before_isaac_sim_starts(launches, tmp_path, capsys):
    from bpo_jax import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0", "--num-envs", "8", "--num-steps", "8",
                     "--num-minibatches", "2", "--total-steps", "64", "--obs-clip", "5", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == ("bpo-jax: error: --obs-clip 5.0 changes nothing here: it is read only "
                                               "with --normalize-obs on; drop it")
    assert launches == [] and not out.exists()
