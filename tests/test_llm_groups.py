"""Group statistics, GRPO advantages and GBPO target logits against NumPy."""
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax.llm import groups


def numpy_reference(r, g, tau):
    """Per sample: (mean, std (ddof 1), median, advantage, target logit) of its group, computed
    group by group with np.mean / np.std / np.median (which interpolates for even sizes)."""
    r, g = np.asarray(r, np.float64), np.asarray(g)
    out = np.zeros((5, len(r)))
    for gid in np.unique(g):
        idx = np.flatnonzero(g == gid)
        x = r[idx]
        if len(x) == 1:
            out[:, idx] = [[x[0]], [0.0], [x[0]], [0.0], [0.0]]
            continue
        mean, std, med = x.mean(), x.std(ddof=1), np.median(x)
        out[0, idx], out[1, idx], out[2, idx] = mean, std, med
        out[3, idx] = (x - mean) / (std + 1e-6)
        out[4, idx] = (x - med) / (std + 1e-6) / tau
    return out


CASES = {
    # odd size, ties at the median: median 1, the two tied 1s get logit 0
    "odd_ties": ([0.0, 1.0, 1.0, 1.0, 0.0], [0, 0, 0, 0, 0]),
    # even size, binary 50/50 split: median 0.5, both sides move
    "even_split": ([1.0, 0.0, 1.0, 0.0], [0, 0, 0, 0]),
    # even size with distinct values: median interpolates between 2 and 3
    "even_interp": ([4.0, 2.0, 3.0, 1.0], [7, 7, 7, 7]),
    # non-contiguous groups with arbitrary ids, a size-1 group, and a constant group
    "mixed": ([1.0, 0.0, 5.0, 0.0, 1.0, 2.0, 2.0, 1.0, 3.0],
              [3, 9, 42, 3, 9, 5, 5, 3, 9]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_group_statistics_match_numpy(name):
    r, g = CASES[name]
    tau = 0.5
    ref = numpy_reference(r, g, tau)
    s = groups.group_stats(jnp.array(r), jnp.array(g))
    np.testing.assert_allclose(s.mean, ref[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.std, ref[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.median, ref[2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(groups.grpo_advantages(jnp.array(r), jnp.array(g)), ref[3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(groups.gbpo_target_logits(jnp.array(r), jnp.array(g), tau), ref[4],
                               rtol=1e-5, atol=1e-5)


def test_hand_computed_values():
    # Group [0, 1, 1]: mean 2/3, unbiased std sqrt(1/3), median 1.
    r, g = jnp.array([0.0, 1.0, 1.0]), jnp.array([0, 0, 0])
    std = np.sqrt(1 / 3)
    np.testing.assert_allclose(groups.grpo_advantages(r, g), [(-2 / 3) / std, (1 / 3) / std, (1 / 3) / std], rtol=1e-5)
    np.testing.assert_allclose(groups.gbpo_target_logits(r, g, 1.0), [-1 / std, 0.0, 0.0], rtol=1e-5)
    # Even group [0, 1]: median 0.5, std sqrt(0.5).
    np.testing.assert_allclose(groups.gbpo_target_logits(jnp.array([0.0, 1.0]), jnp.array([1, 1]), 2.0),
                               [-0.5 / np.sqrt(0.5) / 2, 0.5 / np.sqrt(0.5) / 2], rtol=1e-5)


def test_singleton_and_constant_groups_are_zero_and_finite():
    r, g = jnp.array([3.0, 1.0, 1.0, 1.0]), jnp.array([0, 1, 1, 1])
    adv = groups.grpo_advantages(r, g)
    logit = groups.gbpo_target_logits(r, g, 1e-4)
    assert np.all(np.isfinite(adv)) and np.all(np.isfinite(logit))
    np.testing.assert_array_equal(adv, 0.0)
    np.testing.assert_array_equal(logit, 0.0)
    assert int(groups.group_stats(r, g).count[0]) == 1


def test_no_std_normalisation():
    r, g = jnp.array([1.0, 0.0, 0.0, 3.0]), jnp.array([0, 0, 1, 1])
    np.testing.assert_allclose(groups.grpo_advantages(r, g, norm_by_std=False), [0.5, -0.5, -1.5, 1.5])


def test_a_gbpo_temperature_that_is_not_positive_is_refused():
    """temperature 0 gave logits [inf, -inf, nan, nan]; a negative one reversed the target."""
    r, g = jnp.array([1.0, 0.0, 0.5, 0.5]), jnp.array([0, 0, 1, 1])
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=f"temperature must be > 0, got {bad}"):
            groups.gbpo_target_logits(r, g, bad)
