"""Config: the sweepable set declared once, algorithm defaults and the settings refused."""
import dataclasses
import re

import jax
import numpy as np
import pytest

from bpo_jax import Config, ConfigError, HParams, algorithms, losses
from bpo_jax.config import SWEEPABLE
from bpo_jax.envs.base import Box, Discrete


def test_hparams_fields_are_the_fields_declared_sweepable():
    declared = [f.name for f in dataclasses.fields(Config) if f.metadata["sweep"]]
    assert tuple(declared) == SWEEPABLE == tuple(f.name for f in dataclasses.fields(HParams))
    hp = Config(eps_low=0.1, eps_high=0.3, lr=3e-4).hparams()
    assert len(jax.tree.leaves(hp)) == len(SWEEPABLE)
    np.testing.assert_allclose([hp.eps_low, hp.eps_high, hp.lr], [0.1, 0.3, 3e-4], rtol=1e-6)


def test_symmetric_eps_fills_both_bounds():
    hp = Config(eps=0.25).hparams()
    np.testing.assert_allclose([hp.eps_low, hp.eps_high], [0.25, 0.25], rtol=1e-6)


@pytest.mark.parametrize("algo", algorithms.names())
def test_algorithm_defaults_fill_unset_fields(algo):
    full = Config(algo=algo).resolved()
    for name, value in algorithms.get(algo).defaults.items():
        assert getattr(full, name) == value
    assert Config(algo=algo, lr=0.123).resolved().lr == 0.123


def test_unknown_algorithm_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown `algo` 'sac'; valid: bpo, ppo"):
        Config(algo="sac").validate()


@pytest.mark.parametrize("field, value", [("bpo_lambda", 0.1), ("use_median", False), ("loss_type", "TV"),
                                          ("median_hidden_sizes", (64,))])
def test_bpo_only_settings_are_refused_for_ppo(field, value):
    with pytest.raises(ConfigError, match=f"`{field}` applies only to `algo` bpo"):
        Config(algo="ppo", **{field: value}).validate()


def test_ppo_only_settings_are_refused_for_bpo():
    with pytest.raises(ConfigError, match="`normalize_advantages` applies only to `algo` ppo"):
        Config(algo="bpo", normalize_advantages=False).validate()


@pytest.mark.parametrize("changes,message", [
    (dict(seed="0"), "`seed` must be an integer, got '0'"),
    (dict(seed=1.5), "`seed` must be an integer, got 1.5"),
    (dict(adv_std_ddof=2), "`adv_std_ddof` must be 0 (population std) or 1 (unbiased), got 2"),
    (dict(adv_std_ddof=True), "`adv_std_ddof` must be an integer, got True"),
    (dict(adv_std_ddof=1, num_envs=2, num_steps=2, num_minibatches=4), "`adv_std_ddof` 1 needs minibatches of 2"),
    (dict(seed=2**40), "`seed` must be in [0, 2**32)"),
    (dict(total_steps=2048.0), "`total_steps` must be an integer, got 2048.0"),
    (dict(num_envs=True), "`num_envs` must be an integer, got True"),  # a bool is not a count
    (dict(hidden_sizes=[64, 64]), "`hidden_sizes` must be a tuple of integers, got [64, 64]"),
    (dict(hidden_sizes=(8.5,)), "`hidden_sizes` must be a tuple of integers"),
    (dict(normalize_obs="False"), "`normalize_obs` must be true or false, got 'False'"),  # was truthy: normalised
    (dict(lr="1e-3"), "`lr` must be a number or None, got '1e-3'"),
    (dict(gamma=None), "`gamma` must be a number, got None"),
    (dict(algo=None), "`algo` must be a string, got None"),
    (dict(env_options="max_steps_in_episode=10"), "`env_options` must be a tuple of strings"),
    (dict(policy_obs_dim=3), "`policy_obs_dim` applies to isaaclab/ environments only"),
    (dict(env_options=("max_steps_in_episode=10", "max_steps_in_episode=20")), "given twice"),
    # make()'s own arguments: a TypeError "got multiple values for keyword argument" once
    (dict(env_options=("num_envs=3",)), "env option num_envs is the run's `num_envs`: set that instead"),
    (dict(env_options=("reset_pool=2",)), "env option reset_pool is the run's `reset_pool`"),
    (dict(env_options=("name=x",)), "env option name is the run's `env`"),
    (dict(env_options=("asymmetric_critic=True",)), "env option asymmetric_critic is the run's `asymmetric_critic`"),
])
def test_a_value_of_the_wrong_type_is_named_before_jax_sees_it(changes, message):
    """A string, float or list where the field declares otherwise once reached JAX as a shape or
    a key and failed deep inside, after the run directory existed (or trained with the wrong
    meaning: normalize_obs='False' normalised)."""
    with pytest.raises(ConfigError) as e:
        Config(**changes).validate()
    assert message in str(e.value)


@pytest.mark.parametrize("changes,message", [
    (dict(gamma=1.5), "`gamma` must be in [0, 1], got 1.5"),
    (dict(gamma=-0.1), "`gamma` must be in [0, 1], got -0.1"),
    (dict(gae_lambda=1.01), "`gae_lambda` must be in [0, 1], got 1.01"),
    (dict(eps_low=1.5), "`eps_low` (or `eps`) must be in (0, 1]"),  # a negative lower ratio bound
    (dict(eps=0.0), "`eps_low` (or `eps`) must be in (0, 1]"),
    (dict(eps_high=0.0), "`eps_high` (or `eps`) must be > 0, got 0.0"),
    (dict(init_std=0.1, min_std=0.1), "need `init_std` > `min_std` >= 0, got 0.1 and 0.1"),  # softplus of -inf
    (dict(min_std=-0.1), "need `init_std` > `min_std` >= 0"),
])
def test_a_value_out_of_its_range_is_refused_by_the_config_itself(changes, message):
    """The Python API's own checks (the CLI's argument parsing refuses some of these earlier)."""
    with pytest.raises(ConfigError) as e:
        Config(**changes).validate()
    assert message in str(e.value)
    Config(gamma=1.0, gae_lambda=0.0, eps_low=1.0, init_std=0.11, min_std=0.1).validate()  # the edges are valid


def test_integers_are_numbers():
    Config(lr=1, gamma=1, ent_coef=0).validate()


def test_numpy_scalars_are_taken_as_the_numbers_they_hold():
    """A setting read from an array (np.linspace, a loaded file) is its value: to the checks,
    to config.json (json cannot write np.float32) and to equality with the plain setting."""
    c = Config(lr=np.float32(0.5), num_envs=np.int64(8), hidden_sizes=(np.int32(32), 16),
               normalize_obs=np.bool_(True)).validate()
    assert (type(c.lr), type(c.num_envs), type(c.hidden_sizes[0]), type(c.normalize_obs)) == (float, int, int, bool)
    assert c == Config(lr=float(np.float32(0.5)), num_envs=8, hidden_sizes=(32, 16), normalize_obs=True)
    assert c.replace(num_envs=np.int16(4)).num_envs.__class__ is int
    with pytest.raises(ConfigError, match="`num_envs` must be an integer, got 8.0"):
        Config(num_envs=np.float64(8.0)).validate()


@pytest.mark.parametrize("field", ["lr", "gamma", "ent_coef", "reward_scale", "init_std", "bpo_lambda"])
def test_an_infinite_setting_is_refused(field):
    with pytest.raises(ConfigError, match=f"^`{field}` must be finite, got inf$"):
        Config(**{field: float("inf")}).validate()


@pytest.mark.parametrize("field,value,message", [
    ("eps_high", 1e300, "`eps_high` = 1e+300 is past float32's range"),  # inf inside the programs: a NaN stop blaming lr
    ("max_grad_norm", -3.5e38, "`max_grad_norm` = -3.5e+38 is past float32's range"),  # finite in float64, not float32
    ("reward_scale", 1e-40, "`reward_scale` = 1e-40 is below float32's smallest normal number"),  # flushed to 0
])
def test_a_setting_that_float32_cannot_hold_is_refused(field, value, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        Config(**{field: value}).validate()
    Config(**{field: 3e38 if value > 1 else 2e-38}).validate()  # inside float32's normal range


@pytest.mark.parametrize("field", ["max_grad_norm", "obs_clip", "reward_clip", "value_clip"])
def test_an_infinite_clip_means_no_clipping(field):
    Config(**{field: float("inf")}).validate()


def test_tanh_squash_is_refused_on_discrete_actions():
    with pytest.raises(ConfigError, match="continuous actions only"):
        Config(action_squash="tanh").validate_env(Discrete(2))
    Config(action_squash="tanh").validate_env(Box(low=-np.ones(1), high=np.ones(1), shape=(1,)))


@pytest.mark.parametrize("loss_type", ["log_TV", "FKL"])
def test_log_target_losses_refuse_the_cem_limit(loss_type):
    with pytest.raises(ConfigError, match="needs `eps_low` < 1"):
        Config(loss_type=loss_type, eps_low=1.0).validate()


@pytest.mark.parametrize("loss_type", ["adv_TV", "TV", "MSE", "RKL"])
def test_cem_limit_losses_stay_finite_at_a_zero_target(loss_type):
    """eps_low = 1 (c_l = 0): far below the threshold the target ratio is exactly 0."""
    Config(loss_type=loss_type, eps_low=1.0).validate()
    target = losses.bpo_target_ratio(np.array([-100.0, 0.0, 100.0]), np.zeros(3), 1.0, 0.5, 0.01)
    assert float(target[0]) == 0.0
    log_ratio = np.array([0.1, -0.2, 0.3])
    value, grad = jax.value_and_grad(lambda lr: losses.bpo_divergence(lr, target, np.ones(3), loss_type).sum())(log_ratio)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if loss_type == "RKL":  # 0 log 0 = 0: the zero-target sample contributes nothing
        per = losses.bpo_divergence(log_ratio, target, np.ones(3), loss_type)
        assert float(per[0]) == 0.0


def test_env_options_read_python_literals_and_inf():
    """Values are Python literals where they parse as one; inf (no literal) too, so a range such
    as mjx's healthy_z_range=(0.7, inf) can be given on the command line; a word holding 'inf'
    stays text."""
    kw = Config(env_options=("healthy_z_range=(0.8,inf)", "a=-inf", "n=3", "flag=True", "path=/data/inf/x",
                             "label=info")).env_kwargs()
    assert kw == {"healthy_z_range": (0.8, float("inf")), "a": float("-inf"), "n": 3, "flag": True,
                  "path": "/data/inf/x", "label": "info"}


def test_inf_in_quotes_stays_text():
    """Every word inf was rewritten before parsing, in strings too: '/data/inf/m.xml' became '/data/1e999/m.xml'."""
    kw = Config(env_options=("model='/data/inf/m.xml'", "tag='inf'", "pair=('inf', inf)")).env_kwargs()
    assert kw == {"model": "/data/inf/m.xml", "tag": "inf", "pair": ("inf", float("inf"))}


def test_stacking_needs_hparams():
    with pytest.raises(TypeError, match=r"HParams.stack takes a non-empty list of HParams \(Config.hparams\(\)\), got \[\]"):
        HParams.stack([])
    with pytest.raises(TypeError, match="got \\[Config"):
        HParams.stack([Config()])


CONTINUOUS, DISCRETE = True, False  # whether the env acts continuously


@pytest.mark.parametrize("changes, space, message", [
    (dict(obs_clip=3.0), CONTINUOUS, "`obs_clip` 3.0 changes nothing here: it is read only with `normalize_obs` on"),
    (dict(obs_norm_window=100), CONTINUOUS, "`obs_norm_window` 100 changes nothing here"),
    (dict(reward_clip=1.0), CONTINUOUS, "read only with `normalize_rewards` on"),
    (dict(desired_kl=0.5), CONTINUOUS, "read only with `lr_schedule` adaptive"),
    (dict(eps=0.3, eps_low=0.2, eps_high=0.2), CONTINUOUS, "read only with `eps_low` or `eps_high` unset"),
    (dict(init_std=5.0), DISCRETE, "`init_std` 5.0 changes nothing here: it is read only with continuous actions"),
    (dict(min_std=0.1), DISCRETE, "`min_std` 0.1 changes nothing here: it is read only with continuous actions; drop it"),
    (dict(use_median=False, u_coef=5.0), CONTINUOUS, "`u_coef` 5.0 changes nothing here"),
    (dict(adv_std_ddof=1), CONTINUOUS,
     "`adv_std_ddof` 1 changes nothing here: it is read only with advantages normalised (PPO's"),
    (dict(algo="ppo", normalize_advantages=False, adv_std_ddof=1), CONTINUOUS, "`adv_std_ddof` 1 changes nothing"),
    (dict(loss_type="MSE", tv_loss_coef=0.5), CONTINUOUS,
     "`tv_loss_coef` 0.5 changes nothing here: it is read only with `loss_type` adv_TV"),
    (dict(separate_median=True, median_hidden_sizes=(32,)), CONTINUOUS,
     "`median_hidden_sizes` 32 changes nothing here: it is read only with `use_median` on and `separate_median` off"),
    (dict(anneal_lr=False, lr_schedule="linear"), CONTINUOUS, "`lr_schedule` linear anneals the learning rate"),
    (dict(algo="ppo", normalize_advantages=False, normalize_advantages_per_minibatch=False), DISCRETE,
     "`normalize_advantages_per_minibatch` False changes nothing here: it is read only with `normalize_advantages` on"),
    (dict(num_epochs=1, reshuffle_each_epoch=False), DISCRETE,
     "`reshuffle_each_epoch` False changes nothing here: it is read only with more than one epoch"),
])
def test_a_setting_given_that_the_run_would_not_read_is_refused(changes, space, message):
    """Each flag was accepted and trained the run without it (metrics.csv byte-identical) while
    config.json recorded the value."""
    config = Config(**changes).validate()  # a checkpoint's config still loads
    with pytest.raises(ConfigError) as e:
        config.check_read(list(changes), continuous=space)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    config.check_read((), continuous=space)  # what a preset set is no flag to drop


def test_settings_read_where_they_apply_and_a_preset_s_values_pass():
    for changes, space in ((dict(obs_clip=3.0, normalize_obs=True), CONTINUOUS), (dict(init_std=0.5), CONTINUOUS),
                           (dict(eps=0.3, eps_low=0.2), CONTINUOUS), (dict(desired_kl=0.02, lr_schedule="adaptive"),
                                                                      CONTINUOUS),
                           (dict(anneal_lr=False, lr_schedule="adaptive"), DISCRETE),
                           (dict(algo="ppo", adv_std_ddof=1), DISCRETE), (dict(online_adv=False, adv_std_ddof=1), DISCRETE)):
        Config(**changes).check_read(list(changes), continuous=space)
    from bpo_jax import presets

    # A preset's eps (0.25) left unread by the asymmetric bounds given on top of it, its median
    # widths by --no-use-median: the flags given are read, the preset's values are not the user's.
    hopper = presets.resolve("paper/Hopper-v4", "bpo")
    for given in (dict(eps_low=0.2, eps_high=0.2), dict(use_median=False)):
        Config(**{**hopper, **given}).check_read(list(given), continuous=CONTINUOUS)
    for name in presets.names():
        for algo in ("bpo", "ppo"):
            config = Config(**presets.resolve(name, algo))
            config.check_read((), continuous=not config.env.startswith("atari/"))
