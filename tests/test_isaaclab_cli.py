"""isaaclab/ without IsaacLab (this machine): presets, the CLI and the sweep fail in one line with
the install hint; importing the package needs neither torch nor rsl_rl."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bpo_jax import cli, presets, sweep
from bpo_jax.config import Config, ConfigError
from bpo_jax.envs import isaaclab, registry

HINT = "pip install 'bpo-jax[isaaclab]'"
TASKS = {"Anymal-C-rough": 1500, "G1-rough": 3000, "Go1-rough": 1500, "H1-rough": 3000}
pytestmark = pytest.mark.skipif(registry.installed("isaaclab"), reason="IsaacLab is installed here")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("bpo-jax: error: "), err
    return err


def test_importing_the_package_needs_no_torch():
    code = ("import sys; import bpo_jax, bpo_jax.cli, bpo_jax.host_loop, bpo_jax.export, bpo_jax.envs.isaaclab; "
            "print([m for m in ('torch', 'rsl_rl', 'isaaclab') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_paper_presets_have_the_digest_settings():
    assert [n for n in presets.names() if n.startswith("paper/isaaclab/")] == [f"paper/isaaclab/{t}" for t in TASKS]
    for task, iterations in TASKS.items():
        name = f"paper/isaaclab/{task}"
        for algo in ("bpo", "ppo"):
            config = Config(**presets.resolve(name, algo))
            config.validate()
            assert config.env.startswith("isaaclab/Isaac-Velocity-Rough-") and config.total_steps == iterations * 4096 * 24
            assert config.schedule == "adaptive" and config.hidden_sizes == (512, 256, 128) and config.vf_coef == 1.0
            assert "6.3" in presets.source(name, algo)
            # rsl_rl's storage: one minibatch permutation per update; its PPO normalises the
            # advantages over the whole batch (normalize_advantage_per_mini_batch=False)
            assert config.reshuffle_each_epoch is False
            assert algo == "bpo" or (config.normalize_advantages, config.normalize_advantages_per_minibatch) == \
                (True, False)
    g1 = presets.resolve("paper/isaaclab/G1-rough", "bpo")
    assert (g1["eps"], g1["num_epochs"], g1["bpo_lambda"], g1["logit_clamp"]) == (0.2, 10, 0.01, 10.0)
    assert presets.resolve("paper/isaaclab/Go1-rough", "bpo")["online_adv"] is False
    assert presets.resolve("paper/isaaclab/Anymal-C-rough", "ppo")["ent_coef"] == 0.005


def test_isaaclab_only_settings_are_refused_elsewhere():
    with pytest.raises(ConfigError, match="`init_at_random_ep_len` applies to isaaclab/ environments only"):
        Config(init_at_random_ep_len=True).validate()


@pytest.mark.parametrize("argv", [
    ["train", "--env", "isaaclab/Isaac-Velocity-Rough-G1-v0"],
    ["train", "--preset", "paper/isaaclab/Anymal-C-rough", "--algo", "ppo"],
])
def test_cli_without_isaaclab_fails_in_one_line_with_the_hint(argv, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([*argv, "--out", str(out)]) != 0
    err = _one_line_error(capsys)
    assert "'isaaclab'" in err and HINT in err
    assert not out.exists()  # nothing written before the check


def test_missing_torch_is_one_line_with_the_hint(monkeypatch):
    """An env of one's own needs torch, not Isaac Sim, which the hint told its user to install;
    an IsaacLab task needs both."""
    monkeypatch.setattr(registry, "installed", lambda module: module != "torch")
    with pytest.raises(registry.MissingDependencyError) as info:
        isaaclab.IsaacLabEnv(object())
    assert str(info.value) == ("the isaaclab/ suite needs 'torch', which is not installed: "
                               "pip install 'bpo-jax[isaaclab]' (torch, rsl-rl-lib)")
    with pytest.raises(registry.MissingDependencyError, match="needs 'torch'") as info:
        isaaclab.make("Isaac-Velocity-Rough-G1-v0")
    assert HINT in str(info.value) and "\n" not in str(info.value)


def test_an_env_that_is_no_vec_env_is_refused_in_one_line():
    """It was AttributeError: 'object' object has no attribute 'num_envs'."""

    class Half:
        num_envs = 4

        def step(self, actions):
            pass

    for env, missing in ((object(), "object has no num_envs, num_actions, get_observations, step"),
                         (Half(), "Half has no num_actions, get_observations")):
        with pytest.raises(TypeError) as info:
            isaaclab.IsaacLabEnv(env)
        assert str(info.value) == ("the env must be an rsl_rl VecEnv (num_envs, num_actions, get_observations(), "
                                   f"step(actions)) or an IsaacLabEnv; {missing}")


def test_sweep_plan_points_to_train_installed_or_not():
    """It said "install Isaac Sim and IsaacLab", after which the sweep is refused all the same:
    the host-driven runs are trained one preset at a time."""
    with pytest.raises(sweep.SweepError, match="run each isaaclab/ preset on its own: bpo-jax train --preset"):
        sweep.plan("paper/isaaclab", num_seeds=1)
