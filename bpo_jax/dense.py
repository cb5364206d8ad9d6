"""Dense layers laid out for XLA:CPU: the kernel gradient as a row-major matmul, a few rows as one
multiply-and-sum.

A dense layer's kernel gradient is ``x^T g`` (x [N, I], g [N, O] -> [I, O]).  JAX's autodiff
writes it as a dot contracting both operands over their leading axis; XLA:CPU hands that layout
to Eigen, which runs it at about half the rate of the layer's forward matmul (YNNPACK's), and
for a narrow output ([64, 2]: a policy head) at a few percent of it.  Materialising ``x^T``
first (a copy that an optimisation barrier keeps XLA from folding back into the dot) gives a
row-major matmul that XLA:CPU runs through YNNPACK (benchmarks/RESULTS.md, 2026-12-05 evening:
a PureJaxRL-sized CartPole PPO run 2-4% faster with one seed, 5% with ten vmapped).

And the forward product of a few rows (a rollout step's handful of environments) is one
multiply-and-sum kernel instead of a matmul library call, whose overhead is most of such a tiny
product's time (:func:`product`: one CartPole PPO seed with 4 envs 4.5% faster).

Other backends get JAX's own formulation (``lax.platform_dependent``): GPU and TPU matmuls take
transposed operands natively.  Same function; on the CPU the kernel gradient is summed by
another matmul kernel, so it rounds differently from JAX's own (float rounding).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def weight_gradient(x: jax.Array, g: jax.Array) -> jax.Array:
    """``x^T g``: x [N, I], g [N, O] -> [I, O], the kernel gradient of ``x @ W``."""
    def row_major(a, b):  # a^T b with a row-major a^T that XLA cannot fold back into the dot
        return lax.optimization_barrier(a.T) @ b

    def cpu(x, g):
        if g.shape[-1] < x.shape[-1]:
            # A narrow output (a policy or value head): transpose the smaller operand,
            # x^T g = (g^T x)^T, the [O, I] product kept as it is (else XLA folds the flip back
            # into a dot that Eigen runs, ~4x slower) and flipped as a copy of O x I numbers.
            return lax.optimization_barrier(row_major(g, x)).T
        return row_major(x, g)

    return lax.platform_dependent(x, g, cpu=cpu, default=lambda x, g: x.T @ g)


# Rows for which the CPU computes ``x @ kernel`` as one multiply-and-sum kernel: below
# 2 rows XLA already does so itself, above 8 a matmul library call is faster (a tanh 4-64-64-2
# policy on 4 rows: 0.90 against 1.87 us; 8 rows 1.38 against 2.34; 16 rows 3.45 against 3.05).
FEW_ROWS = range(2, 9)


def product(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel``: x [..., I], kernel [I, O] -> [..., O].  On the CPU, for a few rows (a rollout
    step's handful of environments), a multiply-and-sum that XLA runs as one kernel instead of a
    library call whose overhead is most of a tiny matmul's time (float rounding differs)."""
    plain = lambda x, kernel: x @ kernel
    if math.prod(x.shape[:-1]) not in FEW_ROWS:
        return plain(x, kernel)
    fused = lambda x, kernel: jnp.sum(x[..., :, None] * kernel, axis=-2)
    return lax.platform_dependent(x, kernel, cpu=fused, default=plain)


@jax.custom_vjp
def matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel`` (:func:`product`): x [..., I], kernel [I, O] -> [..., O], with the kernel
    gradient computed by :func:`weight_gradient`."""
    return product(x, kernel)


def _matmul_fwd(x, kernel):
    return product(x, kernel), (x, kernel)


def _matmul_bwd(residuals, g):
    x, kernel = residuals
    dkernel = weight_gradient(x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]))
    # The input gradient keeps JAX's layout (XLA:CPU runs it well); for a first layer
    # (observations, not differentiated) the compiler drops it.
    return g @ kernel.T, dkernel


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general``'s signature as ``nn.Dense`` calls it (contract the input's last axis
    with the kernel's first, no batch axes) -> :func:`matmul`."""
    (lhs_contract, rhs_contract), batch = dimension_numbers
    if tuple(lhs_contract) != (lhs.ndim - 1,) or tuple(rhs_contract) != (0,) or any(batch) or rhs.ndim != 2:
        raise NotImplementedError(f"bpo_jax.dense.dot_general: only x @ kernel, got {dimension_numbers}")
    if precision is not None or preferred_element_type is not None:
        raise NotImplementedError("bpo_jax.dense.dot_general: precision and preferred_element_type are not supported")
    return matmul(lhs, rhs)


def Dense(features: int, **kwargs) -> nn.Dense:
    """``flax.linen.Dense`` computing :func:`matmul` (the few-rows product, the kernel gradient
    of :func:`weight_gradient`); same parameters, same names."""
    return nn.Dense(features, dot_general=dot_general, **kwargs)
