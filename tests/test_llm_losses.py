"""Token-level GBPO / GRPO losses, KL, aggregation and ratio metrics against NumPy."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax.llm import losses

RNG = np.random.default_rng(0)
B, T = 4, 5
LOGP = RNG.normal(-1.0, 0.5, (B, T)).astype(np.float32)
OLD = (LOGP + RNG.normal(0.0, 0.3, (B, T))).astype(np.float32)
REF = (LOGP + RNG.normal(0.0, 0.2, (B, T))).astype(np.float32)
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], np.float32)
ADV = np.array([1.5, -0.7, 0.0, -2.0], np.float32)
LOGIT = np.array([3.0, -1.0, 0.0, -50.0], np.float32)


def np_agg(x, m, mode):
    if mode == "token-mean":
        return (x * m).sum() / m.sum()
    if mode == "seq-mean-token-mean":
        return np.mean([(x[i] * m[i]).sum() / m[i].sum() for i in range(len(x))])
    return np.mean([(x[i] * m[i]).sum() for i in range(len(x))])


@pytest.mark.parametrize("mode", losses.AGG_MODES)
def test_aggregation_modes(mode):
    x = RNG.normal(size=(B, T)).astype(np.float32)
    np.testing.assert_allclose(losses.aggregate(jnp.array(x), jnp.array(MASK), mode), np_agg(x, MASK, mode), rtol=1e-5)


def test_aggregation_handles_empty_rows_and_bad_mode():
    m = MASK.copy()
    m[2] = 0
    x = np.ones((B, T), np.float32)
    assert float(losses.aggregate(jnp.array(x), jnp.array(m), "seq-mean-token-mean")) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        losses.aggregate(jnp.array(x), jnp.array(m), "sum")


def test_gbpo_loss_matches_numpy():
    cl, ch = 0.2, 0.3
    ratio = np.exp(np.clip(LOGP - OLD, -20, 20))
    target = 1 - cl + (cl + ch) / (1 + np.exp(-LOGIT))
    expected = np.abs(ratio - target[:, None]) * np.abs(ADV)[:, None]
    got = losses.gbpo_token_loss(jnp.array(LOGP), jnp.array(OLD), jnp.array(ADV), jnp.array(LOGIT), cl, ch)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The target stays inside the box; a tied response (logit 0) targets the box's midpoint.
    t = losses.gbpo_target_ratio(jnp.array(LOGIT), cl, ch)
    assert float(t.min()) >= 1 - cl - 1e-6 and float(t.max()) <= 1 + ch + 1e-6
    assert float(t[2]) == pytest.approx(1 - cl + (cl + ch) / 2)


def test_gbpo_pulls_overshoot_back():
    """Above the target the gradient lowers the ratio, below it raises it (a two-sided pull)."""
    target_logit, adv = jnp.array([10.0]), jnp.array([1.0])  # target 1.2
    grad = jax.grad(lambda lp: losses.gbpo_token_loss(lp, jnp.zeros((1, 1)), adv, target_logit, 0.2, 0.2).sum())
    assert float(grad(jnp.log(jnp.full((1, 1), 1.5)))[0, 0]) > 0  # overshoot: descend lowers the ratio
    assert float(grad(jnp.log(jnp.full((1, 1), 1.0)))[0, 0]) < 0


def test_log_ratio_is_clamped():
    got = losses.gbpo_token_loss(jnp.array([[100.0]]), jnp.array([[0.0]]), jnp.array([1.0]), jnp.array([0.0]), 0.2, 0.2)
    assert np.isfinite(float(got[0, 0])) and float(got[0, 0]) == pytest.approx(np.exp(20.0) - 1.0, rel=1e-5)


def test_grpo_loss_matches_numpy_with_dual_clip():
    cl, ch, c = 0.2, 0.28, 3.0
    logp = OLD + np.array([[0.0, 0.1, 0.5, 2.0, -1.0]] * B, np.float32)  # ratios inside, above, far above
    ratio = np.exp(logp - OLD)
    a = ADV[:, None]
    clipped = np.maximum(-a * ratio, -a * np.clip(ratio, 1 - cl, 1 + ch))
    expected = np.where(a < 0, np.minimum(-a * c, clipped), clipped)
    got = losses.grpo_token_loss(jnp.array(logp), jnp.array(OLD), jnp.array(ADV), cl, ch, c)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The dual clip is active somewhere: a negative advantage and ratio e^2 > 3.
    assert np.any((a < 0) & (ratio > c))


def test_kl_estimators():
    k1 = losses.kl_penalty(jnp.array(LOGP), jnp.array(REF), "k1")
    np.testing.assert_allclose(k1, LOGP - REF, rtol=1e-6)
    d = REF - LOGP
    k3 = losses.kl_penalty(jnp.array(LOGP), jnp.array(REF), "low_var_kl")
    np.testing.assert_allclose(k3, np.clip(np.exp(d) - d - 1, -10, 10), rtol=1e-5, atol=1e-7)
    assert float(k3.min()) >= 0
    with pytest.raises(ValueError):
        losses.kl_penalty(jnp.array(LOGP), jnp.array(REF), "k2")


@pytest.mark.parametrize("algo", losses.ALGOS)
def test_policy_loss_total_and_metrics(algo):
    cfg = losses.LossConfig(algo=algo, clip_low=0.2, clip_high=0.2, kl_coef=0.1, ent_coef=0.01,
                            agg_mode="seq-mean-token-sum").validate()
    ent = RNG.uniform(0, 2, (B, T)).astype(np.float32)
    x = losses.LossInputs(*map(jnp.array, (LOGP, OLD, REF, ent, MASK, ADV, LOGIT)))
    loss, m = losses.policy_loss(x, cfg)
    if algo == "gbpo":
        pg = losses.gbpo_token_loss(x.log_probs, x.old_log_probs, x.advantages, x.target_logits, 0.2, 0.2)
    else:
        pg = losses.grpo_token_loss(x.log_probs, x.old_log_probs, x.advantages, 0.2, 0.2)
    d = REF - LOGP
    expected = (np_agg(np.asarray(pg), MASK, "seq-mean-token-sum") - 0.01 * np_agg(ent, MASK, "seq-mean-token-sum")
                + 0.1 * np_agg(np.exp(d) - d - 1, MASK, "seq-mean-token-sum"))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    ratio = np.exp(LOGP - OLD)
    low, high = (ratio < 0.8) & (MASK > 0), (ratio > 1.2) & (MASK > 0)
    assert float(m["ratio_out_low_frac"]) == pytest.approx(low.sum() / MASK.sum())
    assert float(m["ratio_out_high_frac"]) == pytest.approx(high.sum() / MASK.sum())
    assert float(m["ratio_out_frac"]) == pytest.approx((low | high).sum() / MASK.sum())
    assert float(m["ratio_max"]) == pytest.approx(ratio[MASK > 0].max(), rel=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown algo"):
        losses.LossConfig(algo="ppo").validate()
    with pytest.raises(ValueError, match="clip"):
        losses.LossConfig(clip_low=1.5).validate()
    # NaN passed every comparison; a dual clip at or below 1 and negative weights were taken too.
    for changes, message in ((dict(clip_high=float("nan")), "clip_high must be finite, got nan"),
                             (dict(dual_clip=0.5), "dual_clip must be > 1, got 0.5"),
                             (dict(kl_coef=-1.0), "kl_coef and ent_coef must be >= 0, got -1.0 and 0.0")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            losses.LossConfig(**changes).validate()
