"""bpo_jax.presets: what is no preset is refused in one line, with the valid names."""
import pytest

from bpo_jax import presets


@pytest.mark.parametrize("name", [None, 123, ("paper/Hopper-v4",)])
def test_a_name_that_is_no_string_is_a_preset_error(name):
    """``resolve(None, "bpo")`` raised AttributeError ('NoneType' object has no attribute 'partition')."""
    for call in (lambda: presets.resolve(name, "bpo"), lambda: presets.summary(name),
                 lambda: presets.source(name, "bpo")):
        with pytest.raises(presets.PresetError) as e:
            call()
        assert "\n" not in str(e.value) and f"not {name!r}" in str(e.value) and "paper/Hopper-v4" in str(e.value)


@pytest.mark.parametrize("algo", [None, ["bpo"], 1])
def test_an_algo_that_is_no_string_is_a_preset_error(algo):
    for name in ("paper/Hopper-v4", "paper/Pong", "paper/isaaclab/G1-rough"):
        with pytest.raises(presets.PresetError, match=r"^preset '.*' has no .* settings; valid: bpo, ppo$"):
            presets.resolve(name, algo)


def test_the_summary_of_an_unknown_preset_is_refused_with_a_suggestion():
    """``summary("nope")`` described it as the paper's MuJoCo settings; ``fast/Pong`` as Atari's."""
    with pytest.raises(presets.PresetError, match=r"^unknown preset 'nope'; valid: paper/Ant-v4, "):
        presets.summary("nope")
    with pytest.raises(presets.PresetError, match=r"^unknown preset 'paper/Hoper-v4'; did you mean 'paper/Hopper-v4'"):
        presets.summary("paper/Hoper-v4")
    with pytest.raises(presets.PresetError, match=r"^unknown preset 'fast/Pong'"):
        presets.summary("fast/Pong")


def test_every_preset_has_a_summary_and_resolves_for_both_algorithms():
    for name in presets.names():
        assert presets.summary(name)
        assert {presets.resolve(name, a)["algo"] for a in ("bpo", "ppo")} == {"bpo", "ppo"}


def test_a_mujoco_budget_other_than_the_sweep_files_says_so():
    """paper/Humanoid-v4's 35M cited sweep files whose budgets are 50M (BPO) and 20M (PPO)."""
    for name in (n for n in presets.names() if n.endswith("-v4")):
        for algo in ("bpo", "ppo"):
            steps = presets.resolve(name, algo)["total_steps"]
            if steps != 20_000_000:
                assert f"budget {steps // 1_000_000}M steps, the range the paper's figure plots" in \
                    presets.source(name, algo), (name, algo)
    assert presets.source("paper/Humanoid-v4", "bpo").endswith("(its sweep files say 50M)")
    assert "budget" not in presets.source("paper/Hopper-v4", "ppo")
