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


# ------------------------------------------------------------------------------------------------
# The paper presets against the reference digest's tables (section 6), typed here from the digest
# and not from presets.py: an edit of a preset value shows as a difference from the paper.  Atari's
# are tests/test_atari.py's test_paper_presets_have_the_digest_settings.

def _minibatches(n_envs, n_steps, batch):
    return n_envs * n_steps // batch


# env: n_envs, n_steps, batch, lr, epochs, eps, lambda, gamma, gae_lambda, other  (digest 6.1, BPO)
MUJOCO_BPO = {
    "Ant": (1, 2048, 256, 1e-4, 10, 0.3, 0.001, 0.99, 0.95, {}),
    "Hopper": (4, 512, 32, 9.808e-5, 10, 0.25, 10.0, 0.999, 0.95, {}),
    "Humanoid": (1, 512, 128, 1e-4, 5, 0.2, 0.001, 0.99, 0.95, {"max_grad_norm": 2.0}),
    "Swimmer": (4, 1024, 256, 3e-4, 10, 0.1, 0.01, 0.9999, 0.98, {}),
}
# env: n_envs, n_steps, batch, lr, epochs, clip, vf_coef, ent_coef, gamma, gae_lambda, max_grad_norm  (6.1, PPO)
MUJOCO_PPO = {
    "Ant": (1, 512, 32, 1.90609e-5, 10, 0.1, 0.677239, 4.9646e-7, 0.98, 0.8, 0.6),
    "Hopper": (1, 512, 32, 9.808e-5, 5, 0.2, 0.835671, 0.00229519, 0.999, 0.99, 0.7),
    "Humanoid": (1, 512, 256, 3.56987e-5, 5, 0.3, 0.431892, 0.00238306, 0.98, 0.9, 2.0),
    "Swimmer": (4, 1024, 256, 6e-4, 10, 0.1, 0.5, 0.0, 0.9999, 0.98, 0.5),
}
# task: (PPO clip, ent, epochs), (BPO eps, ent, epochs, online_adv)  (6.3)
ISAACLAB = {
    "Anymal-C-rough": ((0.2, 0.005, 5), (0.25, 0.0, 5, True)),
    "G1-rough": ((0.2, 0.008, 5), (0.2, 0.0, 10, True)),
    "Go1-rough": ((0.2, 0.01, 5), (0.3, 0.001, 10, False)),
    "H1-rough": ((0.2, 0.01, 5), (0.2, 0.0, 5, False)),
}


def _assert_preset(name, algo, expected):
    got = presets.resolve(name, algo)
    wrong = {k: (got.get(k), v) for k, v in expected.items()
             if not (got.get(k) == v or (isinstance(v, float) and got.get(k) == pytest.approx(v, rel=1e-9)))}
    assert not wrong, f"{name} {algo}: (preset, digest) {wrong}"


@pytest.mark.parametrize("env", sorted(MUJOCO_BPO))
def test_the_mujoco_presets_are_the_digests(env):
    name = f"paper/{env}-v4"
    common = dict(hidden_sizes=(256, 256), activation="relu", init_std=1.0, normalize_obs=False,
                  normalize_rewards=False, anneal_lr=False)
    n_envs, n_steps, batch, lr, epochs, eps, lam, gamma, gae, other = MUJOCO_BPO[env]
    _assert_preset(name, "bpo", dict(common, num_envs=n_envs, num_steps=n_steps,
                                     num_minibatches=_minibatches(n_envs, n_steps, batch), lr=lr, num_epochs=epochs,
                                     eps=eps, bpo_lambda=lam, gamma=gamma, gae_lambda=gae, ent_coef=0.0, vf_coef=0.5,
                                     u_coef=0.5, use_median=True, value_clip=0.0,
                                     max_grad_norm=other.get("max_grad_norm", 1.0)))
    n_envs, n_steps, batch, lr, epochs, clip, vf, ent, gamma, gae, grad = MUJOCO_PPO[env]
    _assert_preset(name, "ppo", dict(common, num_envs=n_envs, num_steps=n_steps,
                                     num_minibatches=_minibatches(n_envs, n_steps, batch), lr=lr, num_epochs=epochs,
                                     eps=clip, vf_coef=vf, ent_coef=ent, gamma=gamma, gae_lambda=gae,
                                     max_grad_norm=grad, normalize_advantages=True, value_clip=0.0))


@pytest.mark.parametrize("task", sorted(ISAACLAB))
def test_the_isaaclab_presets_are_the_digests(task):
    common = dict(num_envs=4096, num_steps=24, num_minibatches=4, hidden_sizes=(512, 256, 128), activation="elu",
                  init_std=1.0, normalize_obs=False, gamma=0.99, gae_lambda=0.95, lr=1e-3, lr_schedule="adaptive",
                  desired_kl=0.01, max_grad_norm=1.0, vf_coef=1.0)
    (clip, ent, epochs), (eps, bpo_ent, bpo_epochs, online) = ISAACLAB[task]
    name = f"paper/isaaclab/{task}"
    _assert_preset(name, "ppo", dict(common, eps=clip, ent_coef=ent, num_epochs=epochs, value_clip=0.2,
                                     normalize_advantages=True))
    _assert_preset(name, "bpo", dict(common, eps=eps, ent_coef=bpo_ent, num_epochs=bpo_epochs, online_adv=online,
                                     bpo_lambda=0.01, use_median=True, loss_type="adv_TV", u_coef=1.0, value_clip=0.0))
