"""Compiling for tests whose programs run for milliseconds but compile for seconds to tens of
seconds (MJX physics on a 2-core CPU): :data:`bpo_jax.runner.FAST_COMPILE`, the options behind
``bpo-jax train --fast-compile``, cut the compile time by 20-40%.  Not for programs that run
long (a learning run): they would run up to 2x slower."""
import jax

from bpo_jax.runner import FAST_COMPILE


def compile_fast(fn, *args, static_argnums=()):
    """``fn`` jitted and compiled with :data:`FAST_COMPILE` for the shapes of ``args`` (static
    arguments included, as for ``jax.jit(...).lower``)."""
    return jax.jit(fn, static_argnums=static_argnums).lower(*args).compile(FAST_COMPILE)
