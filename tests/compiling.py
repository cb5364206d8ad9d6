"""Compiling in the test session.

The suite checks behaviour, not speed, and most of its programs run for milliseconds but compile
for seconds (a tiny CartPole training chunk: 7.1 s at XLA:CPU's defaults, 1.7 s with
:data:`bpo_jax.runner.FAST_COMPILE`, on a 2-core CPU).  So ``tests/conftest.py`` sets those
options as ``XLA_FLAGS`` for the whole session, CLI subprocesses included: every program a test
compiles without options of its own compiles cheaply.  A program that runs long (a learning run)
would run up to 2x slower that way; it passes :data:`FULL`, XLA:CPU's own defaults.
"""
import jax

from bpo_jax.runner import FAST_COMPILE

# XLA:CPU's defaults for the options FAST_COMPILE changes, stated explicitly: options given to
# a compile take precedence over XLA_FLAGS.
FULL = {"xla_backend_optimization_level": 3, "xla_llvm_disable_expensive_passes": False,
        "xla_cpu_use_fusion_emitters": True}
assert FULL.keys() == FAST_COMPILE.keys()


def fast_compile_flags() -> str:
    """:data:`FAST_COMPILE` as ``XLA_FLAGS`` words."""
    return " ".join(f"--{k}={str(v).lower()}" for k, v in FAST_COMPILE.items())


def compile_fast(fn, *args, static_argnums=()):
    """``fn`` jitted and compiled with :data:`FAST_COMPILE` for the shapes of ``args`` (static
    arguments included, as for ``jax.jit(...).lower``)."""
    return jax.jit(fn, static_argnums=static_argnums).lower(*args).compile(FAST_COMPILE)


def compile_full(fn, *args, static_argnums=()):
    """The same with :data:`FULL`: for programs that run long."""
    return jax.jit(fn, static_argnums=static_argnums).lower(*args).compile(FULL)
