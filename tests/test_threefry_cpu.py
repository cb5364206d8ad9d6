"""The CPU lowering rule for JAX's Threefry hash: JAX's bits exactly, unrolled only for batched keys."""
import os
import subprocess
import sys

import jax
import jax.extend.random as jex_random
import jax.numpy as jnp
import numpy as np
import pytest
import bpo_jax.envs  # noqa: F401  (installs the rule, as every program that steps an env does)
from bpo_jax import threefry_cpu

# Random123's known-answer vector for Threefry-2x32 with 20 rounds (key, counter -> output).
KAT = ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))


def numpy_threefry(key, count):
    """Threefry-2x32, 20 rounds, in NumPy: key (k0, k1), count [2, n] -> [2, n] uint32."""
    rot = ((13, 15, 26, 6), (17, 29, 16, 24))
    k = [np.uint32(key[0]), np.uint32(key[1])]
    ks = k + [np.uint32(k[0] ^ k[1] ^ np.uint32(0x1BD11BDA))]
    x0, x1 = count[0] + ks[0], count[1] + ks[1]
    for block in range(5):
        for r in rot[block % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return np.stack([x0, x1])


def draws(key):
    """A few draws of the kinds training makes, from one key (vmappable over keys)."""
    a, b = jax.random.split(key)
    return (jax.random.key_data(jax.random.split(a, 3)), jax.random.bits(b, (512,), jnp.uint32),
            jax.random.uniform(a, (4, 4)), jax.random.normal(b, (7,)))


@pytest.fixture
def jax_own_lowering():
    """JAX's own CPU lowering (rolled loops) while the test body runs, then ours again."""
    assert threefry_cpu.register("rolled") and not threefry_cpu._installed
    yield
    assert threefry_cpu.install()


def test_installed_by_the_env_layer_not_by_the_package():
    """``import bpo_jax`` stays light (the command answers Ctrl-C while JAX loads); every program
    that steps an env imports bpo_jax.envs, which installs the rule."""
    code = ("import sys, bpo_jax, bpo_jax.threefry_cpu as t; a = t._installed, 'jax' in sys.modules; "
            "import bpo_jax.envs; print(a, t._installed)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(False, False) True"
    assert threefry_cpu._installed  # this process, which imported bpo_jax.envs


def test_known_answer_and_numpy_reference_scalar_and_batched_keys():
    (key, count, expected) = KAT
    out = jex_random.threefry_2x32(jnp.array(key, jnp.uint32), jnp.array(count, jnp.uint32))
    np.testing.assert_array_equal(np.asarray(out), np.array(expected, np.uint32))
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**32, (6, 2), dtype=np.uint32)
    counts = rng.integers(0, 2**32, (6, 2, 40), dtype=np.uint32)
    batched = jax.jit(jax.vmap(jex_random.threefry_2x32))(keys, counts.reshape(6, 80))  # one key per row
    for i in range(6):
        ref = numpy_threefry(keys[i], counts[i])
        np.testing.assert_array_equal(np.asarray(batched[i]).reshape(2, 40), ref)


def test_same_bits_as_jax_own_lowering(jax_own_lowering):
    keys = jax.random.split(jax.random.key(3), 5)

    def run():  # fresh functions, so nothing lowered under the other rule is reused from a cache
        one, many = jax.jit(lambda k: draws(k)), jax.jit(jax.vmap(lambda k: draws(k)))
        hlo = many.lower(keys).compile().as_text()
        return jax.tree.map(np.asarray, (one(keys[0]), many(keys))), " while(" in hlo

    theirs, theirs_rolled = run()
    assert threefry_cpu.install()
    ours, ours_rolled = run()
    assert theirs_rolled and not ours_rolled  # two different programs...
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)  # ...the same bits


def test_unknown_lowering_is_refused():
    with pytest.raises(ValueError, match="lowering must be"):
        threefry_cpu.register("fast")


def test_unrolled_only_for_batched_keys():
    keys = jax.random.split(jax.random.key(0), 4)
    one = jax.jit(lambda k: jax.random.bits(k, (64,), jnp.uint32)).lower(keys[0]).compile().as_text()
    many = jax.jit(jax.vmap(lambda k: jax.random.bits(k, (64,), jnp.uint32))).lower(keys).compile().as_text()
    assert " while(" in one  # JAX's rolled loop for a single key
    assert " while(" not in many  # one fused kernel for a key per row
    assert threefry_cpu.unrolls((4, 1)) and not threefry_cpu.unrolls(())


def test_opt_out_keeps_jax_lowering():
    env = dict(os.environ, **{threefry_cpu.OPT_OUT: "1"})
    code = "import bpo_jax.threefry_cpu as t, bpo_jax.envs; print(t._installed)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_opt_out_set_to_zero_keeps_the_rule():
    """``BPO_JAX_JAX_THREEFRY=0`` is documented as not opting out (anything but 0 does): the
    rule is installed as without the variable."""
    env = dict(os.environ, **{threefry_cpu.OPT_OUT: "0"})
    code = "import bpo_jax.threefry_cpu as t, bpo_jax.envs; print(t._installed)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
