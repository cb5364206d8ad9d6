"""The training program: determinism, vmap over seeds and configurations, truncation
bootstrapping on a probe with a known value, NaN detection, chunked driving, the matmul
precision every program is traced at."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import Config, ConfigError, HParams, make_train, make_trainer
from bpo_jax import runner
from bpo_jax.envs.base import Discrete
from bpo_jax.export import policy_function
from bpo_jax.networks import init_params, make_network
from tests import probes
from tests.compiling import compile_fast, compile_full

probes.register()

TINY = Config(num_envs=2, num_steps=16, num_epochs=2, num_minibatches=2, hidden_sizes=(16,), total_steps=2 * 16 * 6)


def _leaves_equal(a, b):
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def tiny_vmapped():
    return jax.jit(jax.vmap(make_train(TINY)))


def test_same_seed_same_result_on_cpu(tiny_vmapped):
    keys = runner.seed_keys(7, 2)
    (s1, m1), (s2, m2) = tiny_vmapped(keys), tiny_vmapped(keys)
    assert _leaves_equal(s1.params, s2.params) and _leaves_equal(m1, m2)
    # Different seeds are different runs.
    assert not np.allclose(s1.params["params"]["actor"]["Dense_0"]["kernel"][0],
                           s1.params["params"]["actor"]["Dense_0"]["kernel"][1])


def test_seed_i_is_fold_in_of_the_seed_whatever_the_number_of_seeds():
    """The documented derivation (runs published with a seed stay reproducible): seed i's key is
    fold_in(key(seed), i), so seed 0 of a 1-seed run is seed 0 of a 10-seed run."""
    for n in (1, 3, 10):
        keys = np.asarray(jax.random.key_data(runner.seed_keys(5, n)))
        want = np.stack([np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(5), i))) for i in range(n)])
        np.testing.assert_array_equal(keys, want)


def test_metrics_are_one_row_per_update(tiny_vmapped):
    _, m = tiny_vmapped(runner.seed_keys(0, 2))
    assert set(["episode_return_mean", "episodes", "policy_loss", "value_loss", "median_loss",
                "approx_kl", "clip_fraction", "target_up_fraction", "grad_norm"]) <= set(m)
    for name, v in m.items():
        assert v.shape == (2, TINY.num_updates), name


def test_fast_compile_computes_the_same_run():
    """``--fast-compile`` (runner.FAST_COMPILE) changes how XLA compiles, not what: the same
    run as at XLA's defaults (``FULL``) up to float rounding."""
    keys = runner.seed_keys(4, 2)
    train = jax.vmap(make_train(TINY))
    (s1, m1), (s2, m2) = compile_full(train, keys)(keys), compile_fast(train, keys)(keys)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m1["policy_loss"], m2["policy_loss"], rtol=1e-3, atol=1e-6)


def test_vmap_over_configurations_matches_separate_runs():
    """A batch of HParams (different lr and eps) is one program whose rows equal the separate runs."""
    cfgs = [TINY.replace(lr=1e-4, eps=0.1), TINY.replace(lr=3e-3, eps=0.3, bpo_lambda=0.01)]
    key = jax.random.key(1)
    train = make_train(TINY)
    stacked = HParams.stack([c.hparams() for c in cfgs])
    states, _ = compile_fast(jax.vmap(train, in_axes=(None, 0)), key, stacked)(key, stacked)
    single = compile_fast(train, key, cfgs[0].hparams())
    for i, cfg in enumerate(cfgs):
        s, _ = single(key, cfg.hparams())
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(states.params)):
            np.testing.assert_allclose(a, b[i], rtol=2e-4, atol=2e-5)
    kernel = states.params["params"]["actor"]["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1])


def test_a_stacked_grid_without_vmap_is_named():
    """It failed 14 frames inside JAX: Incompatible shapes for broadcasting (16, 4) and (2,)."""
    stacked = HParams.stack([TINY.hparams(), TINY.replace(lr=1e-3).hparams()])
    with pytest.raises(ValueError, match=r"one scalar per field, got shapes \[\(2,\)\]: train a stacked grid "
                                         r"\(HParams.stack\) under jax.vmap\(train, in_axes=\(None, 0\)\)"):
        make_train(TINY)(jax.random.key(0), stacked)


def test_swept_asymmetric_bounds_equal_the_configuration_run_alone():
    """Swept (0.1, 0.3) bounds on a base of (0.2, 0.2) train the median head at its own
    quantile level p = 0.25, exactly as the (0.1, 0.3) configuration built and run alone."""
    asym = TINY.replace(eps_low=0.1, eps_high=0.3)
    key = jax.random.key(2)
    stacked = HParams.stack([TINY.hparams(), asym.hparams()])
    swept, _ = compile_fast(jax.vmap(make_train(TINY), in_axes=(None, 0)), key, stacked)(key, stacked)
    alone, _ = compile_fast(make_train(asym), key)(key)
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(swept.params)):
        np.testing.assert_allclose(a, b[1], rtol=2e-4, atol=2e-5)
    # The median head (Dense_1 on the critic trunk) of the symmetric member differs: the sweep is no no-op.
    head = swept.params["params"]["critic"]["Dense_1"]["kernel"]
    assert not np.allclose(head[0], head[1], rtol=2e-4, atol=2e-5)


def test_truncation_bootstraps_from_final_observation():
    """ConstantReward: reward 1 forever, cut every 5 steps.  With gamma = 0.9 the value of the
    (constant) observation must approach 1/(1-gamma) = 10; treating cuts as terminal would
    give the mean 5-step return, about 3.7."""
    cfg = Config(env="probe/ConstantReward", algo="ppo", num_envs=4, num_steps=20, num_epochs=4,
                 num_minibatches=2, hidden_sizes=(8,), total_steps=4 * 20 * 150, lr=1e-2,
                 gamma=0.9, gae_lambda=0.95, ent_coef=0.0, anneal_lr=False)
    _, m = jax.jit(make_train(cfg))(jax.random.key(0))
    assert m["value_mean"][-1] == pytest.approx(10.0, abs=0.5)


def test_nan_is_detected_and_named():
    cfg = Config(env="probe/NaNReward", algo="bpo", num_envs=2, num_steps=10, num_epochs=1,
                 num_minibatches=1, hidden_sizes=(8,), total_steps=2 * 10 * 40)
    # NaN from the 301st step of each env, i.e. in update 31 (10 steps per update); named as the
    # env's (its first remedy was to lower the learning rate).
    with pytest.raises(runner.NonFiniteError, match=r"^probe/NaNReward returned a non-finite reward or observation "
                                                    r"in the rollout of update 31 \(seed index 0\)") as e:
        runner.run(cfg, num_seeds=1, reports=40, compiler_options=runner.FAST_COMPILE)
    # The error carries the rows of the good updates before it (for the run's metrics.csv).
    before = e.value.before.metrics()
    assert before["episode_return_mean"].shape == (1, 30) and e.value.before.steps_per_second().shape == (30,)
    assert np.isfinite(before["policy_loss"]).all() and not before["nonfinite"].any()


def test_the_first_bad_update_is_named_whichever_seed_it_is_in():
    flags = np.zeros((3, 4), bool)
    flags[0, 3] = flags[2, 1] = flags[1, 1] = True  # seed 0 at its 4th update, seeds 1 and 2 at their 2nd
    with pytest.raises(runner.NonFiniteError, match=r"at update 12 \(seed index 1\)") as e:
        runner._check_updates({"nonfinite": flags}, first_update=10, env="gymnax/CartPole-v1")
    assert (e.value.update, e.value.seed) == (12, 1)
    # A broken time limit before the first NaN is the one named.
    overflow = np.zeros((3, 4), bool)
    overflow[2, 0] = True
    with pytest.raises(runner.TimeLimitError, match=r"at update 11 \(seed index 2\)"):
        runner._check_updates({"nonfinite": flags, "bootstrap_overflow": overflow}, first_update=10, env="x")
    # The env's NaN in the same update as the loss's is the one named: it is the cause.
    env = np.zeros((3, 4), bool)
    env[1, 1] = True
    with pytest.raises(runner.NonFiniteError, match=r"^x returned a non-finite reward .* update 12 \(seed index 1\)"):
        runner._check_updates({"nonfinite": flags, "env_nonfinite": env}, first_update=10, env="x")


def test_runner_chunks_give_the_whole_run(tiny_vmapped):
    """The chunked driver (init + K-update chunks) computes the whole-run program (up to
    float rounding: the two are separately compiled programs)."""
    result = runner.run(TINY.replace(seed=3), num_seeds=2, reports=3)
    state, metrics = tiny_vmapped(runner.seed_keys(3, 2))
    for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.metrics["policy_loss"], metrics["policy_loss"], rtol=1e-3, atol=1e-6)
    assert result.env_steps[-1] == TINY.num_updates * TINY.batch_size
    assert result.compile_seconds > 0 and result.train_seconds > 0


@pytest.mark.parametrize("n,reports,expected", [(976, 20, 16), (100, 20, 5), (7, 20, 1), (12, 5, 2)])
def test_chunk_size_divides_updates(n, reports, expected):
    k = runner.chunk_size(n, reports)
    assert k == expected and n % k == 0 and n // k >= min(n, reports)


def test_chunk_size_is_the_largest_divisor_within_the_target_even_for_huge_runs():
    rng = np.random.default_rng(0)
    for n, reports in zip(rng.integers(1, 5000, 300), rng.integers(1, 300, 300)):
        target = max(1, n // reports)
        assert runner.chunk_size(int(n), int(reports)) == max(d for d in range(1, target + 1) if n % d == 0)
    assert runner.chunk_size(2**31 - 1, 50) == 1  # a prime: found by the square-root search, not 43M tries
    assert runner.chunk_size(2**30, 50) == 2**24


def test_gaussian_std_stays_positive_and_finite():
    from bpo_jax.envs import Box
    from bpo_jax.networks import Actor

    actor = Actor(Box(low=-jnp.ones(2), high=jnp.ones(2), shape=(2,)), (8,), "tanh", init_std=1.0, min_std=1e-3)
    params = actor.init(jax.random.key(0), jnp.zeros((1, 3)))
    np.testing.assert_allclose(actor.apply(params, jnp.zeros((1, 3))).std, [1.0, 1.0], rtol=1e-5)
    # Drive the raw parameter far negative: the std floors at min_std, log-probs stay finite.
    params = jax.tree.map(lambda x: x, params)
    params["params"]["std_raw"] = jnp.full(2, -1e4)
    dist = actor.apply(params, jnp.zeros((1, 3)))
    np.testing.assert_allclose(dist.std, 1e-3, rtol=1e-5)
    assert np.isfinite(dist.log_prob(jnp.ones((1, 2)))).all() and np.isfinite(dist.entropy()).all()


def _dot_precisions(lowered) -> list[str]:
    """The precision attribute of every dot in a lowered program's StableHLO."""
    lines = [line for line in lowered.as_text().splitlines() if "stablehlo.dot_general" in line]
    assert lines, "no dot in the program"
    return [line.split("precision = [")[1].split(",")[0] if "precision = [" in line else "none" for line in lines]


@pytest.mark.parametrize("precision, expected", [("highest", "HIGHEST"), ("high", "HIGH"), ("default", "DEFAULT")])
def test_every_trainer_program_traces_at_the_run_precision(precision, expected):
    """Init, the update chunk (rollout, critic, minibatch steps) and the acting step: every dot
    carries the precision the config names, whatever the process-wide default is."""
    config = Config(total_steps=1024, matmul_precision=precision)
    trainer, hp = make_trainer(config), config.hparams()
    state = jax.eval_shape(trainer.init, jax.random.key(0), hp)
    programs = [jax.jit(trainer.init).lower(jax.random.key(0), hp),
                jax.jit(lambda s, h: trainer.update_chunk(s, h, 1)).lower(state, hp),
                # 16 rows: for 2-8 (a rollout step's few envs) the CPU takes a multiply-and-sum, no dot
                jax.jit(trainer.act).lower(state, jnp.zeros((16, 4)), jax.random.key(1))]
    with jax.default_matmul_precision("bfloat16" if precision != "default" else "highest"):
        programs.append(jax.jit(trainer.train).lower(jax.random.key(0)))  # the caller's setting does not leak in
    for lowered in programs:
        assert set(_dot_precisions(lowered)) == {expected}


def test_the_exported_policy_keeps_the_precision():
    config = Config(matmul_precision="highest")
    network = make_network(config, Discrete(2))
    params = init_params(network, jax.random.key(0), jnp.zeros((1, 4)))
    policy = policy_function(config, Discrete(2), params)
    assert set(_dot_precisions(jax.jit(policy).lower(jnp.zeros((16, 4))))) == {"HIGHEST"}


def test_an_unknown_precision_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown `matmul_precision` 'tf32'; valid: highest, high, default"):
        Config(matmul_precision="tf32").validate()


def test_the_pure_api_names_wrong_arguments():
    """make_train(dict), train(0) and train(key, {"lr": ...}) failed deep inside (AttributeError,
    invalid PRNG key data); a grid value validate refuses trained silently."""
    config = TINY.replace(total_steps=TINY.batch_size)
    with pytest.raises(TypeError, match="make_train takes a Config, got dict"):
        make_train(config.to_dict())
    train = make_train(config)
    with pytest.raises(TypeError, match=r"train takes a PRNG key \(jax.random.key\(seed\)\), got int"):
        train(0)
    with pytest.raises(TypeError, match="train's hp must be HParams"):
        train(jax.random.key(0), {"lr": 1.0})
    with pytest.raises(ConfigError, match="`bpo_lambda` must be > 0"):
        config.replace(algo="bpo", bpo_lambda=0.0).hparams()


# ---------------------------------------------------------- how the losses become optimiser steps

@pytest.mark.parametrize("algo", ["ppo", "bpo"])
def test_the_loss_differentiated_is_the_algorithms_sum(algo):
    """loss = policy + vf_coef * value + u_coef * median - ent_coef * entropy, per minibatch, so
    on the update's means as well (the CartPole PPO's vf_coef 0.25 is PureJaxRL's 0.5 times the
    0.5 its value loss carries; BPO's 0.5 is the reference's).  An entropy bonus large enough to
    show its sign."""
    config = TINY.replace(algo=algo, ent_coef=0.1, value_clip=0.2 if algo == "ppo" else None,
                          total_steps=TINY.batch_size * 2)
    _, m = compile_fast(make_train(config), jax.random.key(0))(jax.random.key(0))
    full = config.resolved()
    m = {k: np.asarray(v, np.float64) for k, v in m.items()}
    median = full.u_coef * m["median_loss"] if algo == "bpo" else 0.0
    expected = m["policy_loss"] + full.vf_coef * m["value_loss"] + median - 0.1 * m["entropy"]
    np.testing.assert_allclose(m["loss"], expected, rtol=1e-5, atol=1e-5)
    assert np.all(m["entropy"] > 0.5) and np.all(m["value_loss"] > 0.1)  # both terms visible in the sum
    assert full.vf_coef == {"ppo": 0.25, "bpo": 0.5}[algo]


def test_the_linear_schedule_decays_once_per_update_to_zero(monkeypatch):
    """PureJaxRL's ``linear_schedule``: lr * (1 - (count // (epochs * minibatches)) / updates),
    count the optimiser steps taken; constant within an update, never negative."""
    import optax

    seen = []
    real_adam = optax.adam
    monkeypatch.setattr(optax, "adam", lambda lr, **kw: seen.append(lr) or real_adam(lr, **kw))
    config = TINY.replace(lr=3e-4)
    trainer = make_trainer(config)
    trainer.init(jax.random.key(0), config.hparams())
    schedule, per_update, updates = seen[-1], config.num_epochs * config.num_minibatches, config.num_updates
    for count in range(per_update * updates):
        want = 3e-4 * (1.0 - (count // per_update) / updates)
        assert float(schedule(jnp.asarray(count))) == pytest.approx(want, rel=1e-5, abs=1e-12)
    assert float(schedule(jnp.asarray(per_update * updates - 1))) == pytest.approx(3e-4 / updates, rel=1e-5)


def test_gradients_are_clipped_to_the_global_norm_before_adam():
    """One update of E x M Adam steps, two configurations in one program.  A gradient clipped to
    norm 1e-9 leaves every coordinate below 1e-9, so Adam moves it by at most
    lr * 1e-9 / adam_eps per step; unclipped, Adam's first steps move coordinates by about lr."""
    config = TINY.replace(lr=1e-3, anneal_lr=False, total_steps=TINY.batch_size)
    key = jax.random.key(0)
    stacked = HParams.stack([config.replace(max_grad_norm=1e-9).hparams(), config.replace(max_grad_norm=1e9).hparams()])
    train = jax.vmap(make_train(config), in_axes=(None, 0))
    after, _ = compile_fast(train, key, stacked)(key, stacked)
    before = make_trainer(config).init(key, config.hparams()).params
    moved = [max(float(np.max(np.abs(a[i] - b))) for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(before)))
             for i in range(2)]
    steps = config.num_epochs * config.num_minibatches
    assert 0 < moved[0] <= steps * 1e-3 * 1e-9 / config.adam_eps * 1.001
    assert moved[1] > 0.5 * 1e-3
