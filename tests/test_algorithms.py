"""The algorithm objects of bpo_jax.algorithms (base.py, bpo.py, ppo.py) against independent
float64 NumPy references written from the spec, not from the library's loss kernels.

Spec: the reference digest of the paper (shared/reference/bpo-paper.md beside the checkout), sections:
* 1.5  target ratio rho* = c_l + (c_h - c_l) * sigmoid((Q - u(s)) / lambda), u the
       (1 - p)-quantile threshold, p = (1 - c_l) / (c_h - c_l);
* 1.6  the median head's logistic (pinball-like) loss softplus(Q_hat - u) - p (Q_hat - u)
       (p = 1/2 in the reference code; bpo_jax.losses.quantile_level generalises it to the
       asymmetric bounds, as 1.5 and 3.4 item 7 ask);
* 3.2  sb3 adv_TV: mean |rho - rho*| * |Q_hat - V_current.detach()|, target from the median
       head (use_median) or V (ablation), detached;
* 3.3  rsl_rl: logit clamp of (Q_hat - u)/lambda, the extra tv_loss_coef * mean|rho* - rho| term,
       the offline weight |A_GAE normalised over the batch| (online_adv=False), and values and
       GAE returns recomputed with the current critic once per epoch, effective from the next
       epoch, while the advantages stay the rollout's;
* 4    PPO's clipped surrogate (with per-minibatch advantage normalisation, PureJaxRL).

Every test but the last two calls ``Algorithm.loss`` / ``Algorithm.prepare`` directly on
random float32 inputs (fixed seeds) with values where the clamp and the clip are active; the
last two run one ``learn`` (a single update) on a fixed CartPole rollout.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import algorithms, losses, presets
from bpo_jax.algorithms import BPO, PPO, Batch, LossInputs
from bpo_jax.config import Config, ConfigError
from bpo_jax.networks import make_network
from bpo_jax.train import make_trainer

RTOL, ATOL = 1e-5, 1e-6
N = 257  # odd, not a power of two: no accidental symmetry in the means


# ----------------------------------------------------------------------------- NumPy references


def f64(x):
    return np.asarray(x, dtype=np.float64)


def np_sigmoid(x):
    x = f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def np_softplus(x):
    x = f64(x)
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def np_target(q_hat, baseline, eps_low, eps_high, lam, clamp=None):
    """Paper 1.5: rho* = c_l + (c_h - c_l) sigmoid((Q_hat - u)/lambda); rsl_rl clamps the logit."""
    z = (f64(q_hat) - f64(baseline)) / lam
    if clamp is not None:
        z = np.clip(z, -clamp, clamp)
    c_l, c_h = 1.0 - eps_low, 1.0 + eps_high
    return c_l + (c_h - c_l) * np_sigmoid(z)


def np_quantile_loss(q_hat, u, p):
    """Paper 1.6 (at level p of 1.5): softplus(Q_hat - u) - p (Q_hat - u), per sample."""
    x = f64(q_hat) - f64(u)
    return np_softplus(x) - p * x


def np_normalize(a):
    """(a - mean) / (std + 1e-8), population std (base.normalize's documented form)."""
    a = f64(a)
    return (a - a.mean()) / (a.std() + 1e-8)


def np_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """GAE over [T, B], termination (no bootstrap) and truncation (bootstrap, cut the trace) apart."""
    rewards, values, next_values = f64(rewards), f64(values), f64(next_values)
    terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
    adv = np.zeros_like(values)
    last = np.zeros(values.shape[1])
    for t in reversed(range(values.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * (~terminated[t]) - values[t]
        last = delta + gamma * lam * (~(terminated[t] | truncated[t])) * last
        adv[t] = last
    return adv, adv + values


# ----------------------------------------------------------------------------- inputs


def make_inputs(seed, n=N, log_ratio_scale=0.3):
    """Random float32 LossInputs.  V, u and Q_hat are drawn apart, so the target from u differs
    from the one from V and the weight |Q_hat - V_current| from |A| and from 1."""
    rng = np.random.default_rng(seed)
    value_old = rng.normal(size=n) * 2.0
    advantage = 1.5 + rng.normal(size=n) * 3.0  # non-zero mean and non-unit scale: normalising matters
    q_hat = value_old + advantage
    value = value_old + rng.normal(size=n) * 0.7  # the current critic has moved
    median = value + rng.normal(size=n) * 1.5  # the median head is not the value head
    log_ratio = rng.normal(size=n) * log_ratio_scale  # |rho - 1| > eps for many samples
    c = lambda x: jnp.asarray(x, jnp.float32)
    batch = Batch(obs=c(rng.normal(size=(n, 3))), action=c(rng.normal(size=(n, 2))), log_prob=c(rng.normal(size=n)),
                  value=c(value_old), advantage=c(advantage), q_hat=c(q_hat))
    return LossInputs(batch=batch, log_ratio=c(log_ratio), ratio=jnp.exp(c(log_ratio)), value=c(value), median=c(median))


def bpo_call(seed=0, **cfg):
    config = Config(algo="bpo", **cfg).validate()
    algo = config.algorithm
    assert isinstance(algo, BPO)
    x = make_inputs(seed)
    x = x.replace(batch=algo.prepare(config, x.batch))
    pi_loss, head_loss, metrics = algo.loss(config, config.hparams(), x)
    return config, x, float(pi_loss), float(head_loss), {k: float(v) for k, v in metrics.items()}


def bpo_reference(x, *, eps_low, eps_high, lam, use_median=True, online_adv=True, clamp=None, tv_coef=0.0):
    """(policy loss, per-sample target) of the paper's adv_TV from x's float32 inputs, in float64."""
    b = x.batch
    baseline = x.median if use_median else x.value
    target = np_target(b.q_hat, baseline, eps_low, eps_high, lam, clamp)
    rho = np.exp(f64(x.log_ratio))
    weight = f64(b.q_hat) - f64(x.value) if online_adv else f64(b.advantage)
    loss = np.mean(np.abs(rho - target) * np.abs(weight)) + tv_coef * np.mean(np.abs(rho - target))
    return loss, target


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- BPO loss


@pytest.mark.parametrize("use_median", [True, False])
def test_bpo_adv_tv_loss_matches_paper_with_median_head_or_value_baseline(use_median):
    """Paper 3.2: mean |rho - rho*| |Q_hat - V|, rho* from the median head u (or V, the ablation)."""
    lam = 0.7  # a soft target, so its baseline shows in the loss, not just its sign
    config, x, pi_loss, head_loss, metrics = bpo_call(bpo_lambda=lam, use_median=use_median)
    expected, target = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam, use_median=use_median)
    close(pi_loss, expected)
    rho = np.exp(f64(x.log_ratio))
    close(metrics["ratio_target_gap"], np.mean(np.abs(rho - target)))
    assert metrics["target_up_fraction"] == pytest.approx(np.mean(target > 1.0), abs=1e-6)
    # The test has power: the other baseline gives a clearly different loss.
    other, _ = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam, use_median=not use_median)
    assert abs(other - expected) > 1e-3 * expected
    if use_median:
        u_loss = np.mean(np_quantile_loss(x.batch.q_hat, x.median, 0.5))
        close(metrics["median_loss"], u_loss)
        close(head_loss, 0.5 * u_loss)  # u_coef 0.5 (the sb3 reference)
    else:
        assert head_loss == 0.0 and metrics["median_loss"] == 0.0


def test_bpo_default_lambda_gives_the_sign_target_from_the_median():
    """Paper 1.5 / 3.1: at the default lambda = 0.001 the target is c_h where Q_hat > u, c_l where
    Q_hat < u (u the median head, not V), weighted by |Q_hat - V_current|."""
    config, x, pi_loss, _, metrics = bpo_call(seed=3)
    q, u = f64(x.batch.q_hat), f64(x.median)
    assert np.min(np.abs(q - u)) > 0.02  # every |logit| > 20 at lambda = 1e-3: sigmoid within 3e-9 of 0 or 1
    sign_target = np.where(q > u, 1.2, 0.8)
    rho = np.exp(f64(x.log_ratio))
    close(pi_loss, np.mean(np.abs(rho - sign_target) * np.abs(q - f64(x.value))))
    assert metrics["target_up_fraction"] == pytest.approx(np.mean(q > u), abs=1e-6)
    assert np.mean(q > u) != np.mean(q > f64(x.value))  # V as the threshold would move other samples


def test_bpo_policy_loss_gradient_flows_through_the_ratio_only():
    """Paper 3.2 / 8.1-2: target and weight are detached, so the policy loss gives the value and
    median heads no gradient; d/d log rho is sign(rho - rho*) |Q_hat - V| rho / N."""
    lam = 0.5
    config = Config(algo="bpo", bpo_lambda=lam).validate()
    hp, algo, x = config.hparams(), config.algorithm, make_inputs(4)

    def policy_loss(log_ratio, value, median):
        return algo.loss(config, hp, x.replace(log_ratio=log_ratio, ratio=jnp.exp(log_ratio), value=value,
                                                median=median))[0]

    g_lr, g_v, g_u = jax.grad(policy_loss, argnums=(0, 1, 2))(x.log_ratio, x.value, x.median)
    _, target = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam)
    rho = np.exp(f64(x.log_ratio))
    expected = np.sign(rho - target) * np.abs(f64(x.batch.q_hat) - f64(x.value)) * rho / N
    np.testing.assert_allclose(g_lr, expected, rtol=RTOL, atol=1e-7)
    assert not np.any(np.asarray(g_v)) and not np.any(np.asarray(g_u))


def test_bpo_median_head_loss_gradient_fits_the_quantile():
    """Paper 1.6: d/du of softplus(Q_hat - u) - p (Q_hat - u) is p - sigmoid(Q_hat - u) (zero in
    expectation at the (1-p)-quantile), times u_coef / N, here with p = 0.1 / 0.4 = 1/4."""
    config = Config(algo="bpo", eps_low=0.1, eps_high=0.3, u_coef=0.8).validate()
    hp, algo, x = config.hparams(), config.algorithm, make_inputs(5)
    g_u = jax.grad(lambda u: algo.loss(config, hp, x.replace(median=u))[1])(x.median)
    expected = 0.8 * (0.25 - np_sigmoid(f64(x.batch.q_hat) - f64(x.median))) / N
    np.testing.assert_allclose(g_u, expected, rtol=RTOL, atol=1e-8)


def test_bpo_offline_weight_is_the_batch_normalised_gae_advantage():
    """Paper 3.3 (rsl_rl online_adv=False): prepare normalises the GAE advantages over the whole
    batch, and the weight is |A_norm| (not |Q_hat - V_current|); online_adv=True leaves the batch."""
    lam = 0.7
    config_on = Config(algo="bpo").validate()
    raw = make_inputs(6).batch
    same = config_on.algorithm.prepare(config_on, raw)
    for name in ("advantage", "q_hat", "value", "log_prob", "obs", "action"):
        np.testing.assert_array_equal(getattr(same, name), getattr(raw, name))

    config, x, pi_loss, _, _ = bpo_call(seed=6, bpo_lambda=lam, online_adv=False)
    close(f64(x.batch.advantage), np_normalize(raw.advantage))
    for name in ("q_hat", "value", "log_prob", "obs", "action"):  # only the advantage changes
        np.testing.assert_array_equal(getattr(x.batch, name), getattr(raw, name))
    expected, _ = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam, online_adv=False)
    close(pi_loss, expected)
    online, _ = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam, online_adv=True)
    assert abs(online - expected) > 1e-3 * expected


def test_bpo_weight_is_not_uniform():
    """Paper 3.3's ablation: unweighted TV is a different loss (BPO_TV); adv_TV must weight by
    |Q_hat - V| sample by sample, so rescaling one sample's Q_hat - V gap rescales its term."""
    lam = 0.7
    config, x, pi_loss, _, _ = bpo_call(seed=7, bpo_lambda=lam)
    expected, target = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam)
    close(pi_loss, expected)
    rho = np.exp(f64(x.log_ratio))
    assert abs(np.mean(np.abs(rho - target)) - expected) > 1e-3 * expected  # the unweighted (ones) loss
    # loss_type TV is the unweighted one, and differs
    config_tv = Config(algo="bpo", bpo_lambda=lam, loss_type="TV").validate()
    tv = float(config_tv.algorithm.loss(config_tv, config_tv.hparams(), x)[0])
    close(tv, np.mean(np.abs(rho - target)))


def test_bpo_logit_clamp_clamps_the_scaled_gap():
    """Paper 3.3 (rsl_rl): z = (Q_hat - u)/lambda clamped to [-clamp, clamp] before the sigmoid."""
    lam, clamp = 0.5, 1.5
    config, x, pi_loss, _, metrics = bpo_call(seed=8, bpo_lambda=lam, logit_clamp=clamp)
    z = (f64(x.batch.q_hat) - f64(x.median)) / lam
    assert np.mean(np.abs(z) > clamp) > 0.3 and np.mean(np.abs(z) < clamp) > 0.1  # both regimes present
    expected, target = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam, clamp=clamp)
    close(pi_loss, expected)
    rho = np.exp(f64(x.log_ratio))
    close(metrics["ratio_target_gap"], np.mean(np.abs(rho - target)))
    assert target.max() < 1.0 + 0.2 * (2 * np_sigmoid(clamp) - 1) + 1e-12  # the clamp bounds the target
    unclamped, _ = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam)
    assert abs(unclamped - expected) > 1e-3 * expected


def test_bpo_tv_loss_coef_adds_the_unweighted_tv_term():
    """Paper 3.3 table (rsl_rl adv_TV): + tv_loss_coef * mean|rho* - rho| (bpo.py: ``pi_loss +
    config.tv_loss_coef * jnp.mean(jnp.abs(x.ratio - target))``), with the head loss unchanged."""
    lam, coef = 0.7, 0.75
    _, x, base, head0, _ = bpo_call(seed=9, bpo_lambda=lam)
    _, x2, pi_loss, head, _ = bpo_call(seed=9, bpo_lambda=lam, tv_loss_coef=coef)
    expected, target = bpo_reference(x2, eps_low=0.2, eps_high=0.2, lam=lam, tv_coef=coef)
    close(pi_loss, expected)
    rho = np.exp(f64(x2.log_ratio))
    close(pi_loss - base, coef * np.mean(np.abs(rho - target)))
    assert head == head0
    # Only in rsl_rl's adv_TV branch: the other divergences take no extra term.
    _, _, mse, _, _ = bpo_call(seed=9, bpo_lambda=lam, loss_type="MSE")
    _, _, mse_coef, _, _ = bpo_call(seed=9, bpo_lambda=lam, loss_type="MSE", tv_loss_coef=coef)
    assert mse_coef == mse


@pytest.mark.parametrize("eps_low,eps_high", [(0.1, 0.3), (0.4, 0.15), (1.0, 2.0)])
def test_bpo_asymmetric_bounds_target_and_quantile_level(eps_low, eps_high):
    """Paper 1.5 / 2.2: rho* in [1 - eps_low, 1 + eps_high] and the median head fits the
    (1 - p)-quantile, p = (1 - c_l)/(c_h - c_l) = eps_low / (eps_low + eps_high)."""
    lam = 0.6
    config, x, pi_loss, head_loss, metrics = bpo_call(
        seed=10, bpo_lambda=lam, eps_low=eps_low, eps_high=eps_high, u_coef=1.25)
    expected, target = bpo_reference(x, eps_low=eps_low, eps_high=eps_high, lam=lam)
    assert target.min() >= 1.0 - eps_low and target.max() <= 1.0 + eps_high
    close(pi_loss, expected)
    p = (1.0 - (1.0 - eps_low)) / ((1.0 + eps_high) - (1.0 - eps_low))
    u_loss = np.mean(np_quantile_loss(x.batch.q_hat, x.median, p))
    close(metrics["median_loss"], u_loss)
    close(head_loss, 1.25 * u_loss)
    assert abs(np.mean(np_quantile_loss(x.batch.q_hat, x.median, 0.5)) - u_loss) > 1e-3  # p != 1/2 shows
    rho = np.exp(f64(x.log_ratio))
    close(metrics["ratio_target_gap"], np.mean(np.abs(rho - target)))


@pytest.mark.parametrize("loss_type", ["TV", "log_TV", "MSE", "RKL", "FKL", "JS"])
def test_bpo_other_divergences(loss_type):
    """Paper 3.3 table (FKL without the stray -log pi_old term, as bpo_divergence documents)."""
    lam = 0.7
    _, x, pi_loss, _, _ = bpo_call(seed=11, bpo_lambda=lam, loss_type=loss_type)
    _, t = bpo_reference(x, eps_low=0.2, eps_high=0.2, lam=lam)
    lr = f64(x.log_ratio)
    rho = np.exp(lr)
    rkl = t * (np.log(t) - lr)
    fkl = rho * (lr - np.log(t))
    per = {"TV": np.abs(rho - t), "log_TV": np.abs(lr - np.log(t)), "MSE": (rho - t) ** 2,
           "RKL": rkl, "FKL": fkl, "JS": 0.5 * (rkl + fkl)}[loss_type]
    np.testing.assert_allclose(pi_loss, per.mean(), rtol=RTOL, atol=1e-6)


# ----------------------------------------------------------------------------- PPO loss


def np_ppo(log_ratio, adv, eps_low, eps_high):
    rho = np.exp(f64(log_ratio))
    adv = f64(adv)
    return np.mean(-np.minimum(rho * adv, np.clip(rho, 1.0 - eps_low, 1.0 + eps_high) * adv))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.1, 0.3)])
def test_ppo_clipped_surrogate(normalize, eps_low, eps_high):
    """Paper 4: -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A), A normalised per minibatch
    (mean 0, population std + 1e-8) when normalize_advantages, raw otherwise; no head loss."""
    config = Config(algo="ppo", normalize_advantages=normalize, eps_low=eps_low, eps_high=eps_high).validate()
    algo = config.algorithm
    assert isinstance(algo, PPO) and algo is algorithms.get("ppo")
    x = make_inputs(12, log_ratio_scale=0.4)
    assert algo.prepare(config, x.batch) is x.batch  # PPO normalises per minibatch, in the loss
    rho = np.exp(f64(x.log_ratio))
    assert np.mean((rho < 1 - eps_low) | (rho > 1 + eps_high)) > 0.3  # the clip is active
    pi_loss, head_loss, metrics = algo.loss(config, config.hparams(), x)
    adv = np_normalize(x.batch.advantage) if normalize else f64(x.batch.advantage)
    close(float(pi_loss), np_ppo(x.log_ratio, adv, eps_low, eps_high))
    other = f64(x.batch.advantage) if normalize else np_normalize(x.batch.advantage)
    assert abs(np_ppo(x.log_ratio, other, eps_low, eps_high) - float(pi_loss)) > 1e-2
    assert float(head_loss) == 0.0 and metrics == {}


def test_ppo_normalisation_over_the_whole_batch_is_rsl_rls():
    """normalize_advantages_per_minibatch off: the batch is normalised once, before the epochs
    (rsl_rl's compute_returns), and a minibatch's loss takes those advantages as they are."""
    config = Config(algo="ppo", normalize_advantages_per_minibatch=False).validate()
    x = make_inputs(14, log_ratio_scale=0.4)
    prepared = config.algorithm.prepare(config, x.batch)
    np.testing.assert_allclose(f64(prepared.advantage), np_normalize(x.batch.advantage), rtol=1e-5, atol=1e-6)
    half = jax.tree.map(lambda a: a[:100], x.replace(batch=prepared))
    got = float(config.algorithm.loss(config, config.hparams(), half)[0])
    close(got, np_ppo(half.log_ratio, f64(half.batch.advantage), 0.2, 0.2))
    assert abs(got - np_ppo(half.log_ratio, np_normalize(half.batch.advantage), 0.2, 0.2)) > 1e-4
    with pytest.raises(ConfigError, match="`normalize_advantages_per_minibatch` applies only to `algo` ppo"):
        Config(algo="bpo", normalize_advantages_per_minibatch=False).validate()


def test_ppo_normalisation_is_per_minibatch():
    """The same samples in a minibatch with other samples give other normalised advantages:
    the loss of a sub-batch equals the NumPy loss with the sub-batch's own mean and std."""
    config = Config(algo="ppo").validate()
    x = make_inputs(13, log_ratio_scale=0.4)
    half = jax.tree.map(lambda a: a[:100], x)
    got = float(config.algorithm.loss(config, config.hparams(), half)[0])
    close(got, np_ppo(half.log_ratio, np_normalize(half.batch.advantage), 0.2, 0.2))


@pytest.mark.parametrize("case", ["ppo per minibatch", "ppo over the batch", "bpo offline"])
def test_adv_std_ddof_1_is_torchs_unbiased_std(case):
    """SB3 and rsl_rl divide by torch's .std() (n - 1): adv_std_ddof=1, which the paper presets
    set, against NumPy's ddof=1; the default (0) stays jnp.std's, PureJaxRL's."""
    algo, changes = {"ppo per minibatch": ("ppo", {}),
                     "ppo over the batch": ("ppo", {"normalize_advantages_per_minibatch": False}),
                     "bpo offline": ("bpo", {"online_adv": False})}[case]
    x = make_inputs(15, log_ratio_scale=0.4)
    x = jax.tree.map(lambda a: a[:32], x)  # a paper preset's 32-sample minibatch: sqrt(32/31) apart
    raw = f64(x.batch.advantage)
    for ddof in (0, 1):
        config = Config(algo=algo, adv_std_ddof=ddof, **changes).validate()
        prepared = config.algorithm.prepare(config, x.batch)
        adv = f64(prepared.advantage) if prepared is not x.batch else None
        unbiased = (raw - raw.mean()) / (raw.std(ddof=ddof) + 1e-8)
        if adv is not None:  # normalised before the epochs
            np.testing.assert_allclose(adv, unbiased, rtol=1e-5, atol=1e-6)
        if algo == "ppo":
            got = float(config.algorithm.loss(config, config.hparams(), x.replace(batch=prepared))[0])
            close(got, np_ppo(x.log_ratio, unbiased, 0.2, 0.2))
    assert presets.resolve("paper/Hopper-v4", "ppo")["adv_std_ddof"] == 1
    assert presets.resolve("paper/Pong", "ppo")["adv_std_ddof"] == 1
    assert presets.resolve("paper/isaaclab/Go1-rough", "bpo")["adv_std_ddof"] == 1  # its offline weight
    for name in ("paper/Hopper-v4", "paper/Pong", "paper/isaaclab/Anymal-C-rough"):  # BPO's online weight reads none
        assert "adv_std_ddof" not in presets.resolve(name, "bpo")
    assert Config().adv_std_ddof == 0  # PureJaxRL's CartPole defaults


# ----------------------------------------------------------------------------- recompute_returns (one learn)

RECOMPUTE_CFG = dict(algo="bpo", num_envs=4, num_steps=32, num_epochs=2, num_minibatches=1, total_steps=128,
                     hidden_sizes=(16,), lr=0.05, anneal_lr=False, bpo_lambda=0.5)


@pytest.fixture(scope="module")
def rollout():
    """A fixed CartPole rollout [T, B] from the initial policy (with terminations inside it)."""
    trainer = make_trainer(Config(**RECOMPUTE_CFG))
    hp = trainer.config.hparams()
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    traj, env_state, key = jax.jit(trainer.collect)(state, hp)
    assert np.asarray(traj.terminated).any()
    return state, traj, env_state, key


def learn_with_spy(monkeypatch, rollout, **changes):
    """One ``learn`` on the fixed rollout; returns (trainer, new state, [per gradient step: the
    minibatch rows and ratios as the BPO loss saw them], the update's metrics), the rows recorded
    from inside the compiled update."""
    state, traj, env_state, key = rollout
    config = Config(**{**RECOMPUTE_CFG, **changes})
    algo = algorithms.get("bpo")
    seen = []

    def record(obs, q_hat, value, advantage, value_now, ratio):
        seen.append(dict(obs=np.asarray(obs), q_hat=np.asarray(q_hat), value=np.asarray(value),
                         advantage=np.asarray(advantage), value_now=np.asarray(value_now), ratio=np.asarray(ratio)))

    def spy(cfg, hp, x):
        jax.debug.callback(record, x.batch.obs, x.batch.q_hat, x.batch.value, x.batch.advantage, x.value,
                           x.ratio, ordered=True)
        return BPO.loss(algo, cfg, hp, x)

    monkeypatch.setattr(algo, "loss", spy)
    trainer = make_trainer(config)
    new_state, metrics = jax.jit(trainer.learn)(state, traj, env_state, key, config.hparams())
    jax.effects_barrier()
    monkeypatch.undo()
    return trainer, new_state, seen, jax.device_get(metrics)


def rows_of(seen_obs, flat_obs):
    """The index into the flat rollout of every row a minibatch holds (rows are unique states)."""
    d = np.abs(seen_obs[:, None, :] - flat_obs[None, :, :]).sum(-1)
    idx = d.argmin(1)
    assert np.all(d[np.arange(len(idx)), idx] == 0)
    assert len(np.unique(idx)) == len(idx)
    return idx


def np_targets(trainer, params, traj, gamma, lam):
    """NumPy GAE (advantages, returns, values) [T*B] of the rollout with the critic at ``params``."""
    network = make_network(trainer.config, trainer.env.action_space, trainer.env.obs_spec)
    T, B = traj.reward.shape
    v = f64(network.apply(params, traj.obs.reshape((T * B, -1)), method="values")[0]).reshape(T, B)
    nv = f64(network.apply(params, traj.final_obs.reshape((T * B, -1)), method="values")[0]).reshape(T, B)
    adv, q = np_gae(traj.reward, v, nv, traj.terminated, traj.truncated, gamma, lam)
    return adv.reshape(-1), q.reshape(-1), v.reshape(-1)


def with_truncations(traj):
    """The rollout with one time-out in envs 0 and 2 (steps where nothing ended), within the one
    truncation per env that CartPole's time limit lets a 32-step rollout hold."""
    truncated = np.array(traj.truncated)
    for t, b in ((10, 0), (20, 2)):
        assert not traj.terminated[t, b] and not truncated[t, b]
        truncated[t, b] = True
    return traj.replace(truncated=jnp.asarray(truncated))


def test_recompute_returns_is_rsl_rls_last_minibatch_refresh(monkeypatch, rollout):
    """Paper 3.3 (rsl_rl BPO): on the last minibatch of each epoch, after it is sliced and before
    its step, values and GAE returns are recomputed with the current critic (M-1 steps into the
    epoch) and reach the next epoch's minibatches; the advantages stay the rollout's, and so do
    the time-out bootstraps (baked into rsl_rl's rewards with V_old).  Off: the rollout's targets."""
    state, traj, env_state, key = rollout
    traj = with_truncations(traj)
    flat_obs = np.asarray(traj.obs).reshape(-1, traj.obs.shape[-1])
    gaes = []
    real_gae = losses.gae

    def gae_spy(rewards, values, next_values, *args):
        advantages, returns = real_gae(rewards, values, next_values, *args)
        jax.debug.callback(lambda v, nv, q: gaes.append((np.asarray(v).reshape(-1), np.asarray(nv), np.asarray(q))),
                           values, next_values, returns, ordered=True)
        return advantages, returns

    monkeypatch.setattr(losses, "gae", gae_spy)  # learn_with_spy undoes it when it returns
    _, after_on, steps, _ = learn_with_spy(monkeypatch, (state, traj, env_state, key), recompute_returns=True,
                                        num_epochs=3, num_minibatches=2)
    on = list(gaes)
    epochs, minibatches = 3, 2
    assert len(steps) == epochs * minibatches and len(on) == 1 + epochs  # the rollout's GAE, one per epoch
    (v0, nv0, q0), refreshed = on[0], on[1:]
    adv0 = np_gae(traj.reward, v0.reshape(traj.reward.shape), nv0, traj.terminated, traj.truncated, 0.99, 0.95)[0]
    truncated = np.asarray(traj.truncated)
    targets = [q0.reshape(-1)] + [q.reshape(-1) for _, _, q in refreshed]  # epoch e trains on targets[e]
    for e in range(epochs):
        v, nv, q = refreshed[e]
        last = steps[e * minibatches + minibatches - 1]
        idx = rows_of(last["obs"], flat_obs)
        # The critic of the recompute is the one the last minibatch's forward pass used.
        np.testing.assert_allclose(v[idx], last["value_now"], rtol=1e-5, atol=1e-6)
        assert np.max(np.abs(v - v0)) > 1e-3  # and it has moved since the rollout
        np.testing.assert_array_equal(nv[truncated], nv0[truncated])  # the time-outs' bootstraps: V_old
        assert np.max(np.abs(nv[~truncated] - nv0[~truncated])) > 1e-3
        expected = np_gae(traj.reward, v.reshape(nv.shape), nv, traj.terminated, traj.truncated, 0.99, 0.95)[1]
        np.testing.assert_allclose(q.reshape(-1), expected.reshape(-1), rtol=1e-5, atol=1e-5)
        for m in range(minibatches):  # every minibatch of epoch e, its last too, has epoch e's targets
            step = steps[e * minibatches + m]
            idx = rows_of(step["obs"], flat_obs)
            np.testing.assert_allclose(step["q_hat"], targets[e][idx], rtol=1e-5, atol=1e-5)
            close(step["advantage"], adv0.reshape(-1)[idx])
    assert np.max(np.abs(targets[1] - targets[0])) > 1e-2  # recomputing matters

    gaes.clear()
    monkeypatch.setattr(losses, "gae", gae_spy)  # learn_with_spy undid it
    _, after_off, steps, _ = learn_with_spy(monkeypatch, (state, traj, env_state, key), recompute_returns=False,
                                         num_epochs=3, num_minibatches=2)
    assert len(gaes) == 1
    for step in steps:
        idx = rows_of(step["obs"], flat_obs)
        np.testing.assert_allclose(step["q_hat"], q0.reshape(-1)[idx], rtol=1e-6)
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), after_on.params, after_off.params)
    assert max(jax.tree.leaves(diff)) > 1e-4


def np_values(trainer, params, traj):
    """V(obs), V(final_obs) [T, B] of the rollout with the critic at ``params`` (network.apply)."""
    network = make_network(trainer.config, trainer.env.action_space, trainer.env.obs_spec)
    T, B = traj.reward.shape
    value = lambda obs: f64(network.apply(params, obs.reshape((T * B, -1)), method="values")[0]).reshape(T, B)
    return value(traj.obs), value(traj.final_obs)


def test_recompute_returns_targets_equal_an_independent_critic_pass(monkeypatch, rollout):
    """One minibatch: the refresh comes before the epoch's only step, so epoch 2 trains on the
    rollout's targets again and epoch 3 on the GAE of the critic after one step, its V(obs) and
    V(final_obs) evaluated here with network.apply, the time-outs' bootstraps the rollout's."""
    state, traj, env_state, key = rollout
    data = (state, traj := with_truncations(traj), env_state, key)
    trainer, _, steps, _ = learn_with_spy(monkeypatch, data, recompute_returns=True, num_epochs=3)
    _, after_one, _, _ = learn_with_spy(monkeypatch, data, recompute_returns=True, num_epochs=1)
    assert trainer.config.num_minibatches == 1 and len(steps) == 3
    truncated = np.asarray(traj.truncated)
    v0, nv0 = np_values(trainer, state.params, traj)
    v1, nv1 = np_values(trainer, after_one.params, traj)
    nv1 = np.where(truncated, nv0, nv1)
    adv0, q0 = np_gae(traj.reward, v0, nv0, traj.terminated, traj.truncated, 0.99, 0.95)
    q1 = np_gae(traj.reward, v1, nv1, traj.terminated, traj.truncated, 0.99, 0.95)[1]
    assert np.max(np.abs(q1 - q0)) > 1e-2
    flat_obs = np.asarray(traj.obs).reshape(-1, traj.obs.shape[-1])
    for step, (v, q) in zip(steps, ((v0, q0), (v0, q0), (v1, q1))):
        idx = rows_of(step["obs"], flat_obs)
        np.testing.assert_allclose(step["q_hat"], q.reshape(-1)[idx], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(step["value"], v.reshape(-1)[idx], rtol=1e-5, atol=1e-5)
        close(step["advantage"], adv0.reshape(-1)[idx])


def test_recompute_returns_with_offline_weight_keeps_normalised_rollout_advantages(monkeypatch, rollout):
    """Paper 3.3: with online_adv=False the weight stays the stale batch-normalised GAE advantage
    after the recompute (storage.advantages is reassigned, not rewritten)."""
    state, traj, _, _ = rollout
    flat_obs = np.asarray(traj.obs).reshape(-1, traj.obs.shape[-1])
    trainer, _, seen, _ = learn_with_spy(monkeypatch, rollout, recompute_returns=True, online_adv=False)
    adv0, _, _ = np_targets(trainer, state.params, traj, 0.99, 0.95)
    for step in seen:
        idx = rows_of(step["obs"], flat_obs)
        close(step["advantage"], np_normalize(adv0)[idx])


def test_minibatches_are_the_shuffles_permutations_and_clip_fraction_counts_their_ratios(monkeypatch, rollout):
    """Epoch e's minibatch m holds rows perm[e, m n:(m+1) n] of the flat rollout, perm from
    ``shuffle.epoch_permutations`` with the update key's second half; the clip fraction is the
    share of ratios outside [1 - eps_low, 1 + eps_high] over every minibatch (NumPy)."""
    from bpo_jax import shuffle

    _, traj, _, key = rollout
    trainer, _, steps, metrics = learn_with_spy(monkeypatch, rollout, num_epochs=3, num_minibatches=2,
                                                eps_low=0.1, eps_high=0.3)
    config = trainer.config
    n = config.batch_size // config.num_minibatches
    perms = np.asarray(shuffle.epoch_permutations(jax.random.split(key)[1], config.num_epochs, config.batch_size,
                                                  config.reshuffle_each_epoch))
    assert not np.array_equal(perms[0], perms[1])
    flat_obs = np.asarray(traj.obs).reshape(-1, traj.obs.shape[-1])
    assert len(steps) == 6
    for i, step in enumerate(steps):
        e, m = divmod(i, config.num_minibatches)
        np.testing.assert_array_equal(rows_of(step["obs"], flat_obs), perms[e, m * n:(m + 1) * n])
    ratios = np.concatenate([step["ratio"] for step in steps])
    clipped = np.mean((ratios < 0.9) | (ratios > 1.3))
    assert 0.05 < clipped < 0.95  # a fraction that tells the bounds apart
    assert float(metrics["clip_fraction"]) == pytest.approx(clipped, abs=1e-6)


def test_adaptive_lr_measures_kl_from_the_rollout_policy_to_the_current(monkeypatch, rollout):
    """rsl_rl's adaptive schedule reads KL(pi_old || pi_current) on each minibatch: the first
    distribution is the rollout policy's at the minibatch's observations (network.apply here),
    the second the parameters' after the steps so far.  KL is not symmetric (lr_schedule tests)."""
    from bpo_jax import lr_schedule

    adaptive = Config(**{**RECOMPUTE_CFG, "lr_schedule": "adaptive", "num_minibatches": 2})
    state = rollout[0]  # the rollout's, with the adaptive schedule's optimiser state (the lr in it)
    state = state.replace(opt_state=make_trainer(adaptive).init(jax.random.key(0), adaptive.hparams()).opt_state)
    kls, real_kl = [], lr_schedule.policy_kl

    def kl_spy(old, new):
        jax.debug.callback(lambda a, b: kls.append((np.asarray(a), np.asarray(b))), old.logits, new.logits,
                           ordered=True)
        return real_kl(old, new)

    monkeypatch.setattr(lr_schedule, "policy_kl", kl_spy)  # learn_with_spy undoes it when it returns
    trainer, _, steps, _ = learn_with_spy(monkeypatch, (state, *rollout[1:]), lr_schedule="adaptive",
                                          num_minibatches=2)
    network = make_network(trainer.config, trainer.env.action_space, trainer.env.obs_spec)
    assert len(kls) == len(steps) == 4
    for i, (step, (old, new)) in enumerate(zip(steps, kls)):
        np.testing.assert_allclose(old, network.apply(state.params, step["obs"], method="policy").logits,
                                   rtol=1e-5, atol=1e-6)
        if i:  # the policy has moved since the rollout
            assert np.max(np.abs(new - old)) > 1e-3


# ------------------------------------------------------------------------------------ plug-ins
class VPG(algorithms.Algorithm):
    """A plug-in as the docs describe: vanilla policy gradient on the GAE advantage."""

    name = "vpg-test"
    description = "vanilla policy gradient (a test plug-in)"
    defaults = {"lr": 1e-3, "ent_coef": 0.0, "vf_coef": 0.5, "value_clip": 0.0}
    metrics = {"adv_std": "losses/adv_std_test"}

    def loss(self, config, hp, x):
        return -(x.ratio * x.batch.advantage).mean(), 0.0, {"adv_std": x.batch.advantage.std()}


@pytest.fixture
def registry():
    """algorithms' registry, restored after the test (a plug-in must not leak into other tests)."""
    saved = dict(algorithms._REGISTRY)
    yield
    algorithms._REGISTRY.clear()
    algorithms._REGISTRY.update(saved)


@pytest.mark.parametrize("defaults,message", [
    ({}, "`lr` is not set and `algo` vpg-test has no default for it: set `lr`, or give it in Bare.defaults"),
    ({"lr": 1e-3, "ent_coef": 0.0, "vf_coef": 0.5}, "`value_clip` is not set and `algo` vpg-test has no default"),
])
def test_a_plugins_missing_or_wrong_defaults_are_named(registry, defaults, message):
    """A plug-in without defaults compared None with a number inside Config.validate."""
    bare = type("Bare", (VPG,), {"defaults": defaults})
    algorithms.register(bare())
    with pytest.raises(ConfigError) as e:
        Config(algo="vpg-test").validate()
    assert message in str(e.value)


def test_a_plugin_without_defaults_trains_on_settings_given_in_full(registry):
    algorithms.register(type("Bare", (VPG,), {"defaults": {}})())
    full = Config(algo="vpg-test", lr=1e-3, ent_coef=0.0, vf_coef=0.5, value_clip=0.0).validate()
    assert (full.resolved().lr, full.resolved().value_clip) == (1e-3, 0.0)


@pytest.mark.parametrize("call,error,message", [
    (lambda: algorithms.register(type("P", (PPO,), {"description": "mine"})()), ValueError,
     "algorithm 'ppo' is already registered; pass replace=True"),
    (lambda: algorithms.register(VPG), TypeError, "register takes an Algorithm instance (e.g. MyAlgorithm()), got "
                                                  "the class VPG"),
    (lambda: algorithms.register(type("S", (VPG,), {"name": "my/algo"})()), ValueError, "it names run directories"),
    (lambda: algorithms.register(type("E", (VPG,), {"name": ""})()), ValueError, "got ''"),
    (lambda: algorithms.register(type("C", (VPG,), {"metrics": {"entropy": "mine/entropy"}})()), ValueError,
     "vpg-test's metric 'entropy' is one every algorithm reports"),
    (lambda: algorithms.register(type("T", (VPG,), {"metrics": {"median_loss": "mine/median"}})()), ValueError,
     "vpg-test's metric 'median_loss' is bpo's under the tag 'losses/median_loss'"),
    # Such a plug-in broke every Config, the built-ins' too (an AttributeError in validate).
    (lambda: algorithms.register(type("F", (VPG,), {"own_fields": ("learning_rate",)})()), ValueError,
     "unknown Config field in algorithm vpg-test's own_fields 'learning_rate'"),
    (lambda: algorithms.register(type("D", (VPG,), {"defaults": {**VPG.defaults, "learning_rate": 1e-3}})()),
     ValueError, "unknown Config field in algorithm vpg-test's defaults 'learning_rate'"),
    (lambda: algorithms.register(type("L", (VPG,), {"defaults": {**VPG.defaults, "lr": "fast"}})()), ValueError,
     "algorithm vpg-test's default for `lr` must be a number or None, got 'fast'"),
    # metrics.csv got two seed columns (plot then read 1 seed); TensorBoard tags written twice.
    (lambda: algorithms.register(type("S", (VPG,), {"metrics": {"seed": "mine/seed"}})()), ValueError,
     "vpg-test's metric 'seed' is a column metrics.csv always has; rename it"),
    (lambda: algorithms.register(type("G", (VPG,), {"metrics": {"adv": "charts/episode_return"}})()), ValueError,
     "vpg-test's metric 'adv' has the TensorBoard tag 'charts/episode_return', metric 'episode_return_mean''s"),
    (lambda: algorithms.register(type("U", (VPG,), {"metrics": {"adv": "losses/median_loss"}})()), ValueError,
     "vpg-test's metric 'adv' has the TensorBoard tag 'losses/median_loss', metric 'median_loss''s"),
    (lambda: algorithms.register(type("W", (VPG,), {"metrics": {"a": "mine/x", "b": "mine/x"}})()), ValueError,
     "vpg-test's metric 'b' has the TensorBoard tag 'mine/x', metric 'a''s"),
    (lambda: algorithms.register(type("Q", (VPG,), {"metrics": {"sps": "perf/steps_per_second"}})()), ValueError,
     "vpg-test's metric 'sps' has the TensorBoard tag 'perf/steps_per_second', where runs log their throughput"),
])
def test_register_refuses_what_would_break_other_runs(registry, call, error, message):
    before = dict(algorithms._REGISTRY)
    with pytest.raises(error) as e:
        call()
    assert message in str(e.value) and algorithms._REGISTRY == before


def test_register_replaces_a_name_only_when_asked(registry):
    mine = type("P", (PPO,), {"description": "mine"})()
    assert algorithms.register(mine, replace=True) is mine and algorithms.get("ppo") is mine


@pytest.mark.parametrize("loss,message", [
    (lambda x: (x.ratio.mean(), 0.0), "must return (policy loss, heads loss, metrics), got a tuple of 2"),
    (lambda x: (-(x.ratio * x.batch.advantage), 0.0, {"adv_std": 0.0}), "returned a policy loss of shape (64,)"),
    (lambda x: (x.ratio.mean(), jnp.zeros(2), {"adv_std": 0.0}), "returned a heads loss of shape (2,)"),
    (lambda x: (x.ratio.mean(), 0.0, {}), "misses adv_std: its metrics must be those of L.metrics"),
    (lambda x: (x.ratio.mean(), 0.0, {"adv_std": 0.0, "loss": 1.0}), "returns loss, not declared"),
    (lambda x: (x.ratio.mean(), 0.0, {"adv_std": x.ratio}), "returned metric 'adv_std' of shape (64,)"),
    (lambda x: (x.ratio.mean(), 0.0, [0.0]), "must return its metrics as a dict, got list"),
    # The plug-in's own error, or a Python branch on a traced value: a full traceback before.
    (lambda x: {}["oops in loss"], "failed while traced on the minibatch's shapes at"),
    (lambda x: (x.ratio.mean(), 0.0, {"adv_std": 0.0}) if x.ratio.mean() > 0 else None,
     "TracerBoolConversionError"),
])
def test_a_plugin_loss_that_breaks_the_contract_is_named_before_anything_is_written(registry, tmp_path, loss,
                                                                                     message):
    """A per-sample loss failed inside jax.grad, a missing metric vanished from the CSV."""
    from bpo_jax.session import RunSession

    algorithms.register(type("L", (VPG,), {"loss": lambda self, config, hp, x: loss(x)})())
    config = Config(algo="vpg-test", num_envs=4, num_steps=32, num_minibatches=2, hidden_sizes=(8,), total_steps=512)
    with pytest.raises(algorithms.LossContractError) as e:
        RunSession.start(config, out=str(tmp_path / "run"))
    assert str(e.value).startswith("algorithm vpg-test's loss ") and message in str(e.value)
    assert not (tmp_path / "run").exists()


def test_the_same_plugin_class_defined_again_registers_again(registry):
    """A notebook cell run twice defines the class anew; the second register replaced nothing
    and was refused."""
    first = algorithms.register(VPG())
    again = type("VPG", (algorithms.Algorithm,), dict(VPG.__dict__))()
    assert algorithms.register(again) is again and algorithms.get("vpg-test") is again is not first
    with pytest.raises(ValueError, match="metric 'nonfinite' is one every algorithm reports"):
        algorithms.register(type("N", (VPG,), {"name": "n", "metrics": {"nonfinite": "x/nonfinite"}})())


def test_a_plugins_numpy_default_is_its_number(registry):
    algorithms.register(type("Np", (VPG,), {"defaults": {**VPG.defaults, "lr": np.float32(1e-3)}})())
    assert Config(algo="vpg-test").validate().resolved().lr == pytest.approx(1e-3)


def test_a_plugin_may_read_adv_std_ddof(registry):
    """A plug-in reads neither PPO's nor BPO's normalisation switch: --adv-std-ddof is its to use
    (base.normalize takes it), not refused as a setting that changes nothing."""
    algorithms.register(VPG())
    Config(algo="vpg-test", adv_std_ddof=1).validate().check_read(["adv_std_ddof"], continuous=False)
    with pytest.raises(ConfigError, match="`adv_std_ddof` 1 changes nothing here"):
        Config(algo="bpo", adv_std_ddof=1).validate().check_read(["adv_std_ddof"], continuous=False)
