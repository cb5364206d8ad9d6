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


@pytest.mark.parametrize("n, num_rounds, keys", [(512, 1, 4_000), (4096, 2, 1_000)])
def test_each_item_lands_anywhere(n, num_rounds, keys):
    """Where item 0 ends up is uniform over the n positions (chi-square over 8 bins), with one
    round (512 items) and with two (4,096)."""
    assert shuffle.rounds(n) == num_rounds
    perms = np.asarray(shuffle.permutations(jax.random.key(1), keys, n))
    where = np.argmax(perms == 0, axis=1)
    counts = np.bincount(where // (n // 8), minlength=8)
    chi2 = ((counts - keys / 8) ** 2 / (keys / 8)).sum()
    assert chi2 < 24.3, chi2  # the 0.999 quantile with 7 degrees of freedom


def test_rounds_one_round_while_a_triple_tie_is_rarer_than_jax_s_tie():
    """One round while C(n, 3) / 4^bits <= C(n, 2) / 2^32 (bits = 32 - ceil(log2 n)): up to 2,048
    items; above, jax.random.permutation's rule ceil(3 ln n / ln 2^bits)."""
    for n in (2, 3, 100, 512, 1024, 2048):
        assert shuffle.rounds(n) == 1
    for n in (2049, 4096, 65536, 1 << 20):
        bits = 32 - math.ceil(math.log2(n))
        assert math.comb(n, 3) / 4.0 ** bits > math.comb(n, 2) / 2.0 ** 32
        assert shuffle.rounds(n) == math.ceil(3 * math.log(n) / (bits * math.log(2)))


def _bits(high, coins):
    """Round bits [1, n] for 8 items (3 position bits): the given random parts and coin bits."""
    return np.array([[(h << 3) | c for h, c in zip(high, coins)]], np.uint32)[None]


def test_a_tied_pair_is_ordered_by_its_coin():
    """Items 2 and 5 share their random bits: position order when the first one's coin is 0,
    swapped when it is 1; every other item where its random bits put it."""
    high = [7, 3, 5, 1, 6, 5, 0, 2]  # sorted: 6, 3, 7, 1, {2, 5}, 4, 0
    coins = [0] * 8
    np.testing.assert_array_equal(shuffle.from_bits(_bits(high, coins))[0], [6, 3, 7, 1, 2, 5, 4, 0])
    coins[2] = 1
    np.testing.assert_array_equal(shuffle.from_bits(_bits(high, coins))[0], [6, 3, 7, 1, 5, 2, 4, 0])


def test_two_tied_pairs_swap_independently_and_a_triple_stays_a_permutation():
    high = [4, 4, 9, 9, 1, 1, 1, 0]  # pairs {0, 1}, {2, 3}; triple {4, 5, 6}
    coins = [1, 0, 0, 0, 1, 1, 1, 0]
    order = np.asarray(shuffle.from_bits(_bits(high, coins))[0])
    np.testing.assert_array_equal(order, [7, 4, 5, 6, 1, 0, 2, 3])  # the triple keeps position order


def test_a_tied_pair_is_in_either_order_half_the_time():
    """Two items with equal random bits (and random coins): each order in about half of 4,000
    draws, as an untied pair of a uniform permutation."""
    bits = jax.random.bits(jax.random.key(3), (1, 4_000, 2), np.uint32) & np.uint32(1)  # coins only
    first = np.asarray(shuffle.from_bits(bits))[:, 0]
    assert abs(np.mean(first == 0) - 0.5) < 0.03  # 4 standard deviations


def test_same_key_same_permutation_and_keys_differ():
    a = shuffle.permutation(jax.random.key(5), 512)
    np.testing.assert_array_equal(a, shuffle.permutation(jax.random.key(5), 512))
    assert not np.array_equal(a, shuffle.permutation(jax.random.key(6), 512))


def test_beyond_the_packed_range_it_is_jax_permutation():
    """Each of the permutations is jax.random.permutation under its own split of the key."""
    n = shuffle.MAX_PACKED + 1
    key = jax.random.key(2)
    perms = shuffle.permutations(key, 2, n)
    for k, p in zip(jax.random.split(key, 2), perms):
        np.testing.assert_array_equal(p, jax.random.permutation(k, n))


def test_epoch_permutations_fresh_per_epoch_or_one_reused():
    """reshuffle (PureJaxRL, SB3): the epochs' permutations are ``permutations``' (the default
    run's draws, unchanged), each its own; off (rsl_rl's storage): one permutation, every epoch."""
    key = jax.random.key(3)
    fresh = np.asarray(shuffle.epoch_permutations(key, 4, 96))
    np.testing.assert_array_equal(fresh, np.asarray(shuffle.permutations(key, 4, 96)))
    assert len({tuple(row) for row in fresh}) == 4
    reused = np.asarray(shuffle.epoch_permutations(key, 4, 96, reshuffle=False))
    assert reused.shape == (4, 96) and (reused == reused[0]).all()
    assert sorted(reused[0]) == list(range(96)) and (reused[0] != np.arange(96)).any()
