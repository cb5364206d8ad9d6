"""The command line: bad input gets one line and a non-zero exit, nothing half-written;
a small real run writes every output."""
import csv
import json
import os
import subprocess
import sys

import pytest

from bpo_jax import cli

SPLIT_ACROSS_WORKERS = True  # independent subprocess runs (see conftest.py)


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "bpo_jax.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("bpo-jax: error:") or "error:" in last, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("args,fragments", [
    (["--env", "nosuch/CartPole-v1"], ["unknown environment suite", "gymnax"]),
    (["--env", "gymnax/CartPole-v7"], ["unknown gymnax environment", "CartPole-v1"]),
    (["--algo", "sac"], ["unknown algo", "bpo, ppo"]),
    (["--num-envs", "-4"], ["num_envs must be a positive integer"]),
    (["--num-minibatches", "3"], ["not divisible", "num_minibatches = 3"]),
    (["--total-steps", "100"], ["less than one update"]),
    (["--seeds", "0"], ["--seeds must be >= 1"]),
    (["--eps", "1.5"], ["eps_low must be in (0, 1]"]),
    (["--loss-type", "KL"], ["unknown loss_type", "adv_TV"]),
    (["--gamma", "2"], ["gamma must be in [0, 1]"]),
    (["--lr", "abc"], ["invalid float value"]),
    (["--preset", "paper/Walker-v9"], ["unknown preset", "paper/Hopper-v4"]),
    (["--env-options", "max_steps_in_episode"], ["is not key=value"]),
    (["--env-options", "no_such_param=3"], ["has no parameter", "max_steps_in_episode"]),
    (["--action-squash", "sigmoid"], ["unknown action_squash", "clip, tanh"]),
    (["--reset-pool", "-1"], ["reset_pool must be >= 0"]),
    (["--hidden-sizes", "64,x"], ["comma-separated integers"]),
])
def test_bad_input_is_one_line_and_nonzero(args, fragments, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("train", *args, "--out", str(out))
    assert_one_line_error(proc, *fragments)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p != "out"]


@pytest.mark.parametrize("args,fragments", [
    (["--chunk-updates", "0"], ["--chunk-updates must be in [1, 976]"]),
    (["--chunk-updates", "977"], ["--chunk-updates must be in [1, 976]"]),
    (["--chunk-updates", "8", "--reports", "4"], ["both set the chunk size"]),
    (["--checkpoint-every", "soon"], ["--checkpoint-every takes a positive number"]),
    (["--checkpoint-every", "0"], ["--checkpoint-every takes a positive number"]),
    (["--keep-checkpoints", "0"], ["--keep-checkpoints must be >= 1"]),
])
def test_bad_run_flags_are_one_line_and_create_nothing(args, fragments, tmp_path, capsys):
    """The new run flags are checked before the run directory exists (in-process: no start-up cost)."""
    out = tmp_path / "out"
    assert cli.main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bpo-jax: error:"), err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists()


def test_existing_nonempty_out_dir_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    proc = run_cli("train", "--out", str(out))
    assert_one_line_error(proc, "exists and is not empty", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


def test_envs_lists_gymnax_and_rejects_unknown_suite():
    proc = run_cli("envs", "--suite", "gymnax")
    assert proc.returncode == 0 and "gymnax/CartPole-v1" in proc.stdout.splitlines()
    assert_one_line_error(run_cli("envs", "--suite", "nope"), "unknown suite")


def test_help_lists_every_hyperparameter_with_default():
    import dataclasses

    from bpo_jax.config import Config

    text = run_cli("train", "--help").stdout
    for f in dataclasses.fields(Config):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "1e-3 for BPO, 2.5e-4 for PPO" in " ".join(text.split())


def test_parser_round_trips_config_fields():
    args = cli.build_parser().parse_args(
        ["train", "--algo", "ppo", "--hidden-sizes", "32,16", "--eps-low", "0.1", "--no-use-median",
         "--value-clip", "none", "--bpo-lambda", "0.01"])
    config = cli._config_from_args(args)
    assert config.algo == "ppo" and config.hidden_sizes == (32, 16) and config.eps_low == 0.1
    assert config.use_median is False and config.value_clip is None and config.bpo_lambda == 0.01


@pytest.mark.slow
def test_small_run_writes_all_outputs(tmp_path):
    env = {**os.environ, "BPO_JAX_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("train", "--algo", "ppo", "--seeds", "2", "--total-steps", "4096", "--num-envs", "4",
                   "--num-steps", "64", "--hidden-sizes", "16", "--reports", "4", "--fast-compile", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = os.listdir(tmp_path / "runs")
    assert run_dir.startswith("gymnax_CartPole-v1__ppo__")
    path = tmp_path / "runs" / run_dir
    # Final outputs, checkpoints and TensorBoard runs; no INCOMPLETE marker: the run finished.
    assert sorted(os.listdir(path)) == ["checkpoints", "config.json", "curve.png", "metrics.csv", "summary.json", "tb"]
    assert sorted(os.listdir(path / "tb")) == ["seed_0", "seed_1"]
    assert sorted(os.listdir(path / "checkpoints")) == ["step_00000012", "step_00000016"]
    assert str(path.relative_to(tmp_path)) in proc.stdout
    assert "steps/s" in proc.stderr and "ETA" in proc.stderr
    summary = json.loads((path / "summary.json").read_text())
    for key in ("final_episode_return", "env_steps", "compile_seconds", "cached_programs", "train_seconds",
                "io_seconds", "steps_per_second"):
        assert key in summary
    assert summary["env_steps"] == 4096 and summary["num_seeds"] == 2
    assert 9 < summary["final_episode_return"] < 500
    rows = list(csv.DictReader(open(path / "metrics.csv")))
    assert len(rows) == 2 * 16 and {r["seed"] for r in rows} == {"0", "1"}
    assert {"env_steps", "episode_return_mean", "policy_loss", "approx_kl", "clip_fraction",
            "steps_per_second"} <= set(rows[0])
    config = json.loads((path / "config.json").read_text())
    assert config["algo"] == "ppo" and config["num_seeds"] == 2 and config["hidden_sizes"] == [16]
    assert config["lr"] == 2.5e-4 and config["ent_coef"] == 0.01  # resolved algorithm defaults
    # A second identical run gets its own folder and reuses the compilation cache.
    proc2 = run_cli("train", "--algo", "ppo", "--seeds", "2", "--total-steps", "4096", "--num-envs", "4",
                    "--num-steps", "64", "--hidden-sizes", "16", "--reports", "4", "--quiet", "--fast-compile",
                    cwd=tmp_path, env=env)
    assert proc2.returncode == 0, proc2.stderr
    assert len(os.listdir(tmp_path / "runs")) == 2
    (run2,) = set(os.listdir(tmp_path / "runs")) - {run_dir}
    summary2 = json.loads((tmp_path / "runs" / run2 / "summary.json").read_text())
    assert summary2["final_episode_return"] == summary["final_episode_return"]
    # At least the chunk program comes from the cache (JAX does not store programs that compile in
    # under the 0.5 s threshold set by runner.enable_compilation_cache).
    assert summary["cached_programs"] == 0 and summary2["cached_programs"] >= 1


def test_preset_sets_paper_values_and_flags_override_it():
    """paper/Hopper-v4 carries digest section 6.1's per-algorithm rows; explicit flags win."""
    bpo = cli._config_from_args(cli.parse_args(["train", "--preset", "paper/Hopper-v4"]))
    assert (bpo.env, bpo.algo, bpo.num_envs, bpo.num_steps, bpo.minibatch_size) == ("mjx/Hopper-v4", "bpo", 4, 512, 32)
    assert (bpo.lr, bpo.eps, bpo.bpo_lambda, bpo.gamma, bpo.num_epochs) == (9.808e-5, 0.25, 10.0, 0.999, 10)
    assert (bpo.hidden_sizes, bpo.activation, bpo.anneal_lr, bpo.normalize_obs) == ((256, 256), "relu", False, False)
    ppo = cli._config_from_args(cli.parse_args(["train", "--preset", "paper/Hopper-v4", "--algo", "ppo", "--seed", "7"]))
    assert (ppo.algo, ppo.num_envs, ppo.minibatch_size, ppo.num_epochs, ppo.gae_lambda) == ("ppo", 1, 32, 5, 0.99)
    assert (ppo.vf_coef, ppo.ent_coef, ppo.max_grad_norm, ppo.seed) == (0.835671, 0.00229519, 0.7, 7)
    override = cli._config_from_args(cli.parse_args(["train", "--preset", "fast/Ant-v4", "--num-envs", "64"]))
    assert (override.num_envs, override.bpo_lambda, override.normalize_obs) == (64, 0.001, True)


def test_env_options_reach_the_environment():
    config = cli._config_from_args(cli.parse_args(
        ["train", "--env", "gymnax/Pendulum-v1", "--env-options", "max_steps_in_episode=7, max_speed=4.5"]))
    assert config.env_kwargs() == {"max_steps_in_episode": 7, "max_speed": 4.5}
    from bpo_jax.train import make_trainer

    params = make_trainer(config.replace(num_envs=1, num_minibatches=1, total_steps=128)).env._params
    assert (params.max_steps_in_episode, params.max_speed) == (7, 4.5)
