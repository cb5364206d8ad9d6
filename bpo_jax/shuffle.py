"""Random permutations for minibatch shuffling, in sorts that XLA:CPU runs fast.

``jax.random.permutation(key, n)`` sorts n random 32-bit keys carrying the indices along (a
two-operand sort).  XLA:CPU runs a two-operand sort through a generic comparator, 3.6x
slower than a sort of one uint32 array (512 samples: 128 us against 35 us on a 2-core EPYC,
``benchmarks/RESULTS.md``), and a PPO update shuffles its batch once per epoch.  Here each
round sorts ONE uint32 array whose high bits are random and whose low ``ceil(log2 n)`` bits
are the position, so the position comes out of the sorted keys themselves.

Two positions whose random bits are equal keep their order (as in any sort-based shuffle);
with fewer random bits than ``jax.random.permutation`` has, that happens more often, so this
runs more rounds, chosen by the same rule: the chance that a round leaves any two items tied is
about n^2 / 2^bits, and the number of rounds is ``ceil(3 ln n / ln 2^bits)``, the bound
``jax.random.permutation`` uses for its 32-bit keys.  Every round's order is applied to the
previous one, so the result is always a permutation of ``arange(n)``.
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
    """Sort rounds for a permutation of n items: ceil(3 ln n / ln 2^r), r = 32 - ceil(log2 n)
    random bits per key (at least 1)."""
    return max(1, math.ceil(3 * math.log(n) / ((32 - _index_bits(n)) * math.log(2))))


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of ``arange(n)``, int32 [n] (``n`` static).  Distribution as
    ``jax.random.permutation``'s (up to ties, see the module docstring); not the same draws."""
    if n > MAX_PACKED:
        return jax.random.permutation(key, n)
    low = jnp.uint32((1 << _index_bits(n)) - 1)
    position = jnp.arange(n, dtype=jnp.uint32)
    num = rounds(n)
    perm = None
    for round_key in (jax.random.split(key, num) if num > 1 else [key]):
        packed = (jax.random.bits(round_key, (n,), jnp.uint32) & ~low) | position
        order = jax.lax.sort(packed) & low
        perm = order if perm is None else perm[order]
    return perm.astype(jnp.int32)
