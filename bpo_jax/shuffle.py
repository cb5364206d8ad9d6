"""Random permutations for minibatch shuffling, in sorts that XLA:CPU runs fast.

``jax.random.permutation(key, n)`` sorts n random 32-bit keys carrying the indices along (a
two-operand sort).  XLA:CPU runs a two-operand sort through a generic comparator, 3.6x
slower than a sort of one uint32 array (512 samples: 128 us against 35 us on a 2-core EPYC,
``benchmarks/RESULTS.md``), and a PPO update shuffles its batch once per epoch.  Here each
round sorts ONE uint32 array whose high ``32 - ceil(log2 n)`` bits are random and whose low
bits are the position, so the position comes out of the sorted keys themselves.

Ties.  Items whose random bits are equal come out of the sort in position order.  A round then
swaps each isolated tied pair (two neighbours in the sorted order with equal random bits, not
tied to a third) on a coin, a random bit the sort did not use, so the round's order is exactly
uniform unless three items tie: a chance of at most C(n, 3) / 4^bits per round (512 items, 23
random bits: 3.2e-7).  Rounds compose (each applied to the previous one's order), and where
one round's chance of a triple is below jax.random.permutation's chance of any tie in its one
32-bit round, C(n, 2) / 2^32 (up to n = 2,048), one round is used; above, ``ceil(3 ln n / ln
2^bits)`` rounds, the bound jax.random.permutation uses for its 32-bit keys, applied to the
random bits left beside the position.  The result is always a permutation of ``arange(n)``.

An update's epochs each need a permutation, all known before the first: :func:`permutations`
draws the random bits of all of them at once (one Threefry hash to compile and run, not one
per epoch and round) and sorts them as one batch.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MAX_PACKED = 1 << 20  # above this the random bits left (< 12) make the rounds too many


def _index_bits(n: int) -> int:
    """Low bits of a packed key that hold the position, ceil(log2 n) (at least 1)."""
    return max(1, math.ceil(math.log2(n)))


def rounds(n: int) -> int:
    """Sort rounds for a permutation of n items (module docstring): 1 where a round's chance of
    three tied items, C(n, 3) / 4^bits, is below C(n, 2) / 2^32; else ceil(3 ln n / ln 2^bits),
    bits = 32 - ceil(log2 n) random bits per key."""
    bits = 32 - _index_bits(n)
    if math.comb(n, 3) / 4.0 ** bits <= math.comb(n, 2) / 2.0 ** 32:
        return 1
    return max(1, math.ceil(3 * math.log(n) / (bits * math.log(2))))


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of ``arange(n)``, int32 [n] (``n`` static).  Distribution as
    ``jax.random.permutation``'s (up to ties, see the module docstring); not the same draws."""
    return permutations(key, 1, n)[0]


def permutations(key: jax.Array, count: int, n: int) -> jax.Array:
    """``count`` independent permutations of ``arange(n)``: int32 [count, n], from one draw."""
    if n > MAX_PACKED:
        return jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, count))
    return from_bits(jax.random.bits(key, (rounds(n), count, n), jnp.uint32))


def epoch_permutations(key: jax.Array, num_epochs: int, n: int, reshuffle: bool = True) -> jax.Array:
    """An update's minibatch orders, int32 [num_epochs, n]: a fresh permutation per epoch, or
    (``reshuffle`` off) one that every epoch reuses, as rsl_rl's rollout storage does."""
    if reshuffle:
        return permutations(key, num_epochs, n)
    return jnp.broadcast_to(permutation(key, n), (num_epochs, n))


def from_bits(bits: jax.Array) -> jax.Array:
    """The permutations that random ``bits`` [rounds, ..., n] (uint32) give: int32 [..., n]."""
    perm = None
    for round_bits in bits:
        order = _sorted_round(round_bits)
        perm = order if perm is None else jnp.take_along_axis(perm, order, axis=-1)
    return perm.astype(jnp.int32)


def _sorted_round(bits: jax.Array) -> jax.Array:
    """One round: positions [..., n] (uint32) in the order of the high bits of ``bits`` [..., n],
    isolated tied pairs swapped on a coin (each item's lowest bit, which the sort never sees)."""
    n = bits.shape[-1]
    shift = _index_bits(n)
    low = jnp.uint32((1 << shift) - 1)
    ordered = jax.lax.sort((bits & ~low) | jnp.arange(n, dtype=jnp.uint32))
    order = ordered & low
    if n < 2:
        return order
    random = ordered >> shift
    tie = random[..., 1:] == random[..., :-1]  # [..., n - 1]: slots p and p + 1 tie
    no = jnp.zeros_like(tie[..., :1])
    isolated = tie & ~jnp.concatenate([no, tie[..., :-1]], -1) & ~jnp.concatenate([tie[..., 1:], no], -1)
    coin = (jnp.take_along_axis(bits, order.astype(jnp.int32), axis=-1) & 1) == 1
    swap = isolated & coin[..., :-1]  # slot p swaps with p + 1; such pairs never overlap
    take_next = jnp.concatenate([swap, no], -1)
    take_previous = jnp.concatenate([no, swap], -1)
    next_ = jnp.concatenate([order[..., 1:], order[..., -1:]], -1)
    previous = jnp.concatenate([order[..., :1], order[..., :-1]], -1)
    return jnp.where(take_next, next_, jnp.where(take_previous, previous, order))
