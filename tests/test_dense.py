"""bpo_jax.dense: the same function and gradients as ``x @ W`` (NumPy references), and on the CPU
a kernel gradient that XLA runs as a row-major matmul."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from bpo_jax import dense


def _data(shape_x, out, seed=0):
    kx, kw, kg = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, shape_x)
    w = jax.random.normal(kw, (shape_x[-1], out))
    g = jax.random.normal(kg, shape_x[:-1] + (out,))
    return x, w, g


@pytest.mark.parametrize("shape_x, out", [((128, 64), 64), ((128, 64), 2), ((3, 16, 5), 7)])
def test_matmul_and_its_gradients_equal_the_closed_forms(shape_x, out):
    """y = x W; dL/dx = g W^T, dL/dW = x^T g (batch axes summed), against float64 NumPy."""
    x, w, g = _data(shape_x, out)
    y, vjp = jax.vjp(dense.matmul, x, w)
    dx, dw = vjp(g)
    x64, w64, g64 = (np.asarray(a, np.float64) for a in (x, w, g))
    np.testing.assert_allclose(y, x64 @ w64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, g64 @ w64.T, rtol=1e-5, atol=1e-5)
    flat_x, flat_g = x64.reshape(-1, x64.shape[-1]), g64.reshape(-1, g64.shape[-1])
    np.testing.assert_allclose(dw, flat_x.T @ flat_g, rtol=1e-5, atol=1e-4)


def test_gradients_under_vmap_equal_jax_own():
    """N networks vmapped (seeds) get each its own gradient, as JAX's own matmul gives."""
    x, w, _ = _data((4, 32, 8), 6)
    ws = jnp.stack([w * (i + 1) for i in range(4)])
    loss = lambda mm: lambda x, w: jnp.sum(jnp.tanh(mm(x, w)) ** 2)
    ours = jax.vmap(jax.grad(loss(dense.matmul), (0, 1)))(x, ws)
    theirs = jax.vmap(jax.grad(loss(jnp.matmul), (0, 1)))(x, ws)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _dots(hlo: str) -> list[str]:
    return [line for line in hlo.splitlines() if re.search(r"\bdot\(", line)]


def test_on_the_cpu_the_kernel_gradient_is_a_row_major_matmul():
    """JAX's own kernel gradient contracts x over its leading axis (a dot XLA:CPU gives Eigen);
    ours materialises x^T so the dot contracts the left operand's last axis."""
    x, w, _ = _data((128, 64), 64)
    compiled = lambda mm: jax.jit(jax.grad(lambda w: jnp.sum(jnp.tanh(mm(x, w))), 0)).lower(w).compile().as_text()
    theirs, ours = compiled(jnp.matmul), compiled(dense.matmul)
    assert any("lhs_contracting_dims={0}" in d for d in _dots(theirs))  # what we avoid (else this test is moot)
    assert not any("lhs_contracting_dims={0}" in d for d in _dots(ours))
    assert "transpose" in ours


def test_dense_has_flax_dense_parameters_and_outputs():
    x = jax.random.normal(jax.random.key(1), (10, 3))
    ours, theirs = dense.Dense(5), nn.Dense(5)
    params = theirs.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)


def test_other_contractions_are_refused():
    x, w, _ = _data((4, 3), 2)
    with pytest.raises(NotImplementedError, match="only x @ kernel"):
        dense.dot_general(x, w.T, (((1,), (1,)), ((), ())))


@pytest.mark.parametrize("rows", [1, 4, 8, 32])
def test_product_equals_the_matmul_for_few_and_many_rows(rows):
    """A few rows (a rollout step's environments) are multiplied by a fused multiply-and-sum on
    the CPU, more by the matmul: the same product to float rounding, vmapped too."""
    x, w, _ = _data((rows, 64), 64)
    np.testing.assert_allclose(dense.product(x, w), np.asarray(x, np.float64) @ np.asarray(w, np.float64),
                               rtol=1e-5, atol=1e-4)
    xs = jnp.stack([x, 2 * x, -x])
    np.testing.assert_allclose(jax.vmap(dense.product, (0, None))(xs, w), jnp.einsum("sri,io->sro", xs, w),
                               rtol=1e-5, atol=1e-4)


def test_on_the_cpu_a_few_rows_are_a_multiply_and_sum_not_a_matmul():
    compiled = lambda rows: jax.jit(dense.product).lower(*_data((rows, 64), 64)[:2]).compile().as_text()
    assert not _dots(compiled(4)) and "reduce" in compiled(4)
    assert _dots(compiled(32))  # a matmul (alone or inside a library fusion)


def test_on_the_cpu_a_narrow_kernel_gradient_transposes_the_smaller_operand():
    """A head's kernel gradient (O < I) is (g^T x)^T: the [N, O] gradient is transposed, not the
    [N, I] input, and the dot stays row-major; the value is x^T g (float64 NumPy)."""
    x, w, g = _data((128, 64), 2)
    fn = jax.jit(lambda x, w: jax.vjp(dense.matmul, x, w)[1](g)[1])
    hlo = fn.lower(x, w).compile().as_text()
    assert not any("lhs_contracting_dims={0}" in d for d in _dots(hlo))
    assert any("f32[2,64]" in d for d in _dots(hlo))  # g^T x, the small operand transposed
    np.testing.assert_allclose(fn(x, w), np.asarray(x, np.float64).T @ np.asarray(g, np.float64), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rows, fused", [(2, True), (8, True), (9, False)])
def test_on_the_cpu_two_to_eight_rows_are_a_multiply_and_sum(rows, fused):
    """The documented range of the fused product: 2 to 8 rows are one multiply-and-sum (no dot),
    from 9 rows on the matmul; the value is x @ W either way (float64 NumPy)."""
    x, w, _ = _data((rows, 16), 8)
    hlo = jax.jit(dense.product).lower(x, w).compile().as_text()
    assert (not _dots(hlo)) == fused
    np.testing.assert_allclose(dense.product(x, w), np.asarray(x, np.float64) @ np.asarray(w, np.float64),
                               rtol=1e-5, atol=1e-5)


def test_dot_general_refuses_a_contraction_over_another_input_axis():
    """Only ``x @ kernel`` (the input's last axis with the kernel's first) is computed: a
    contraction over the input's first axis, which nn.Dense never asks for, is refused by name
    rather than computed as something else or failing inside the matmul."""
    x, _, _ = _data((4, 3), 2)  # contract x's axis 0 (size 4) with a [4, 2] kernel's axis 0
    kernel = jnp.ones((4, 2))
    with pytest.raises(NotImplementedError, match="only x @ kernel"):
        dense.dot_general(x, kernel, (((0,), (0,)), ((), ())))


def test_dot_general_refuses_a_precision_it_would_ignore():
    """A requested precision (or accumulation type) is refused, not silently dropped."""
    x, w, _ = _data((4, 3), 2)
    with pytest.raises(NotImplementedError, match="precision"):
        dense.dot_general(x, w, (((1,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    with pytest.raises(NotImplementedError, match="precision"):
        dense.dot_general(x, w, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


