"""bpo_jax.shuffle: packed-key permutations are permutations, uniform, and deterministic."""
import itertools
import math

import jax
import numpy as np
import pytest

from bpo_jax import shuffle


@pytest.mark.parametrize("n", [1, 2, 3, 7, 128, 500, 512, 4099])
def test_every_result_is_a_permutation(n):
    perms = jax.vmap(lambda k: shuffle.permutation(k, n))(jax.random.split(jax.random.key(n), 8))
    for p in np.asarray(perms):
        np.testing.assert_array_equal(np.sort(p), np.arange(n))


def test_all_orders_of_four_items_are_equally_likely():
    """Chi-square over the 24 orders of 4 items from 24,000 keys (one round, 30 random bits)."""
    draws = np.asarray(jax.vmap(lambda k: shuffle.permutation(k, 4))(jax.random.split(jax.random.key(0), 24_000)))
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(p)] for p in draws], minlength=24)
    chi2 = ((counts - 1000.0) ** 2 / 1000.0).sum()
    assert chi2 < 49.7, chi2  # the 0.999 quantile of chi-square with 23 degrees of freedom


def test_each_item_lands_anywhere_in_a_multi_round_shuffle():
    """n = 512 takes two rounds; where item 0 ends up is uniform over the 512 positions
    (chi-square over 8 bins of 64 positions, 4,000 keys)."""
    assert shuffle.rounds(512) == 2
    perms = np.asarray(jax.vmap(lambda k: shuffle.permutation(k, 512))(jax.random.split(jax.random.key(1), 4_000)))
    where = np.argmax(perms == 0, axis=1)
    counts = np.bincount(where // 64, minlength=8)
    chi2 = ((counts - 500.0) ** 2 / 500.0).sum()
    assert chi2 < 24.3, chi2  # the 0.999 quantile with 7 degrees of freedom


def test_rounds_follow_jax_permutation_tie_bound():
    """ceil(3 ln n / ln 2^r) with r = 32 - ceil(log2 n) random bits: jax.random.permutation's rule
    for its 32-bit keys, applied to the bits left beside the packed position."""
    for n in (2, 100, 512, 4096, 65536, 1 << 20):
        r = 32 - math.ceil(math.log2(n))
        assert shuffle.rounds(n) == math.ceil(3 * math.log(n) / (r * math.log(2)))


def test_same_key_same_permutation_and_keys_differ():
    a = shuffle.permutation(jax.random.key(5), 512)
    np.testing.assert_array_equal(a, shuffle.permutation(jax.random.key(5), 512))
    assert not np.array_equal(a, shuffle.permutation(jax.random.key(6), 512))


def test_beyond_the_packed_range_it_is_jax_permutation():
    n = shuffle.MAX_PACKED + 1
    key = jax.random.key(2)
    np.testing.assert_array_equal(shuffle.permutation(key, n), jax.random.permutation(key, n))
