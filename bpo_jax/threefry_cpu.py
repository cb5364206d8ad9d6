"""XLA:CPU lowering of JAX's Threefry hash, rolled or unrolled per call: the same bits, fewer kernels.

JAX draws random numbers with the Threefry-2x32 hash: five blocks of four rounds.  On the CPU
it lowers the five blocks as a rolled ``while`` loop (a small compile); on every other backend
it unrolls them.  XLA:CPU runs each iteration of such a loop as separate kernels (the loop
carries 8 buffers and copies them every iteration: 16 kernels, ~80 per draw) unless the loop is
small enough to be compiled into one call; the unrolled hash is one fused kernel.

Where that matters: with N seeds vmapped, the rollout's ``lax.cond`` that skips resets when no
episode ended becomes a select, so every step runs the reset's two draws (key split, initial
state) for every environment: two rolled loops per step.  CartPole with PureJaxRL's
configuration, 10 seeds vmapped, one process, AOT-compiled, medians of 5 interleaved calls
(``benchmarks/threefry_lowering.py``, 2-core Xeon, 2026-12-05): 3.24 s against 3.77 s per 1e5
steps with this rule, compile 2.75 s against 4.09 s; 4,096 CartPole envs stepping, 24.1M
against 11.7M steps/s.  But unrolling is not always faster: for one seed, whose shuffles and
rollout noise hash 512 or 1,024 counters under one key, unrolling every draw made the run
slower on two cores (2.38 s against 2.14 s per 5e5 steps), though not pinned to one.

So the rule: unroll a draw when its keys are batched (a vmapped key: one key per seed or per
environment), keep JAX's rolled loop for a single key.  Both lowerings compute JAX's own
function (the unrolled one is what JAX emits on GPUs and TPUs), so every draw is bit for bit
what JAX gives; only the kernels differ (``tests/test_threefry_cpu.py``).

:func:`install` registers the rule for the CPU platform; importing :mod:`bpo_jax.envs` (which
every training, evaluation and benchmark program does) or :mod:`bpo_jax.llm.trainer` calls it,
unless the environment variable ``BPO_JAX_JAX_THREEFRY=1`` asks for JAX's own lowering.  It uses JAX
internals (``jax._src.random.threefry2x32``); where they are missing (another JAX version) it
does nothing and JAX's lowering stays.
"""
from __future__ import annotations

import math
import os

OPT_OUT = "BPO_JAX_JAX_THREEFRY"

_installed = False


def unrolls(key_shape: tuple[int, ...]) -> bool:
    """Whether a draw whose key words have ``key_shape`` (after JAX's broadcasting: ``()`` for
    one key, e.g. ``(seeds, 1)`` for one key per seed) is unrolled: when it has several keys."""
    return math.prod(key_shape) > 1


def register(lowering: str = "auto") -> bool:
    """Register a CPU lowering of ``threefry2x32``: ``"auto"`` (the rule above), ``"rolled"``
    (JAX's own), ``"unrolled"`` (every draw).  False when this JAX lacks the internals.  Programs
    lowered afterwards use it; compiled ones keep theirs (benchmarks compare them this way)."""
    global _installed
    if lowering not in ("auto", "rolled", "unrolled"):
        raise ValueError(f"lowering must be 'auto', 'rolled' or 'unrolled', got {lowering!r}")
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        rolled, unrolled, primitive = (tf._threefry2x32_cpu_lowering_rule, tf._threefry2x32_lowering_rule,
                                       tf.threefry2x32_p)
    except (ImportError, AttributeError):
        return False

    def auto(ctx, key1, key2, x1, x2):
        rule = unrolled if unrolls(ctx.avals_in[0].shape) else rolled
        return rule(ctx, key1, key2, x1, x2)

    mlir.register_lowering(primitive, {"auto": auto, "rolled": rolled, "unrolled": unrolled}[lowering],
                           platform="cpu")
    _installed = lowering == "auto"
    return True


def install() -> bool:
    """Register the ``"auto"`` rule, unless ``BPO_JAX_JAX_THREEFRY`` is set (to anything but 0);
    True if the rule is in place (now or already)."""
    if _installed:
        return True
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    return register("auto")
