"""The environment contract, checked on shapes before a run trains (nothing is computed).

An environment of a suite you register (``register_suite``) or hand to ``make_train`` is your
code: when its ``reset``/``step`` (or a :class:`FunctionalEnv`'s ``_reset_one``/``_step_one``)
returns a shape the trainer does not expect, JAX fails deep inside the training loop's
``scan`` or ``cond`` naming library internals, or the run trains on garbage (an observation
shorter than its ``obs_spec`` broadcasts against the normaliser's statistics).  :func:`check`
traces one reset and one step with ``jax.eval_shape`` and names the first mismatch in one line.
The built-in suites are tested instead: their traces can take seconds (MJX physics).
"""
from __future__ import annotations

import os
import sysconfig
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax.envs.base import Box, Discrete, EnvState, FunctionalEnv, ObsSpec
from bpo_jax.envs.options import is_int


class EnvContractError(ValueError):
    """An environment returns shapes or types other than the ones it declares or the trainer needs."""


def is_users(env: Any) -> bool:
    """Whether ``env`` is defined outside bpo_jax's own suites (a plug-in, a test double)."""
    return not type(env).__module__.startswith("bpo_jax.envs.")


# Env-making inputs whose env passed :func:`check` in this process.
_CHECKED: set[tuple] = set()


def made_from(env_id: str, num_envs: int, reset_pool: int, kwargs: dict[str, Any]) -> tuple:
    """What an env made by ``envs.make`` is made from: its suite's registration (registered
    again, it is another), id, copies, reset pool and options; the key of :func:`check_once`."""
    from bpo_jax.envs import registry

    suite = registry._SUITES.get(env_id.partition("/")[0])
    # The constructor itself (held by the key, so no later one can take its id).
    return (None if suite is None else suite.constructor, env_id, num_envs, reset_pool, tuple(sorted(kwargs.items())))


def check_once(env: Any, inputs: tuple) -> None:
    """:func:`check` ``env`` unless an env made from the same ``inputs`` (:func:`made_from`)
    passed already: a session checks its env before it writes anything, and the trainer it
    builds later makes that env again (a physics env's trace can take seconds)."""
    try:
        done = inputs in _CHECKED
    except TypeError:  # an option value that cannot be a key
        return check(env)
    if not done:
        check(env)
        _CHECKED.add(inputs)


def check(env: Any) -> None:
    """Raise :class:`EnvContractError` naming the first way ``env`` breaks the contract of
    :class:`bpo_jax.envs.Env`: its specs, then one reset and one step traced on shapes."""
    name = getattr(env, "name", type(env).__name__)

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise EnvContractError(f"{name}: {message}")

    spec, space = getattr(env, "obs_spec", None), getattr(env, "action_space", None)
    need(isinstance(spec, ObsSpec) and _is_shape(spec.shape),
         f"obs_spec must be an ObsSpec with a tuple shape such as (4,), got {spec!r}")
    need(obs_dtype(spec.dtype) is not None, f"obs_spec's dtype must be a dtype such as jnp.float32, got {spec.dtype!r}")
    need(isinstance(space, (Discrete, Box)), f"action_space must be a Discrete or a Box, got {space!r}")
    if isinstance(space, Discrete):
        need(is_int(space.n) and space.n >= 1, f"Discrete needs a whole number n >= 1 of actions, got {space.n!r}")
    else:
        _check_box(space, need)
    batch = getattr(env, "num_envs", None)
    need(is_int(batch) and batch >= 1, f"num_envs must be a positive integer, got {batch!r}")
    batch = int(batch)
    limit = getattr(env, "time_limit", None)  # read by the bootstrap's truncation slots, after compiling began
    need(limit is None or (is_int(limit) and limit >= 1), f"time_limit must be None or an integer >= 1, got {limit!r}")

    if isinstance(env, FunctionalEnv):
        for method, signature in (("_reset_one", "(key) -> (inner, obs)"),
                                  ("_step_one", "(key, inner, action) -> (inner, obs, reward, terminated, truncated)")):
            need(getattr(type(env), method) is not getattr(FunctionalEnv, method),
                 f"{type(env).__name__} does not define {method}{signature}")
    for method in ("reset", "step"):
        need(callable(getattr(env, method, None)), f"{type(env).__name__} has no {method} method (bpo_jax.envs.Env)")

    key = jax.random.key(0)
    if isinstance(env, FunctionalEnv):
        _check_one(env, spec, space, key, need)
    first = _traced(env.reset, "reset", need, key)
    need(isinstance(first, EnvState), f"reset must return an EnvState, got {type(first).__name__}")
    _check_state(first, "reset", batch, spec, need)
    actions = _action(space, (batch,))
    after = _traced(env.step, "step", need, first, actions)
    need(isinstance(after, EnvState), f"step must return an EnvState, got {type(after).__name__}")
    _check_state(after, "step", batch, spec, need)
    _check_same("step", after, "reset", first, need, "the training loop carries the state from step to step")


def _check_one(env: FunctionalEnv, spec: ObsSpec, space, key, need) -> None:
    """One copy's ``_reset_one`` and ``_step_one``: named in the message, as the user wrote them."""
    out = _traced(env._reset_one, "_reset_one", need, key)
    need(isinstance(out, tuple) and len(out) == 2, f"_reset_one must return (inner, obs), got {_said(out)}")
    inner, obs = out
    need(obs.shape == tuple(spec.shape), f"_reset_one returned obs of shape {obs.shape}; obs_spec declares {spec.shape}")
    _check_dtype("_reset_one", "obs", obs, spec, need)
    out = _traced(env._step_one, "_step_one", need, key, inner, _action(space, ()))
    need(isinstance(out, tuple) and len(out) == 5,
         f"_step_one must return (inner, obs, reward, terminated, truncated), got {_said(out)}")
    next_inner, next_obs, reward, terminated, truncated = out
    need(next_obs.shape == tuple(spec.shape),
         f"_step_one returned obs of shape {next_obs.shape}; obs_spec declares {spec.shape}")
    need(next_obs.dtype == obs.dtype, f"_step_one returned obs of dtype {next_obs.dtype} but _reset_one {obs.dtype}; "
         "an auto-reset mixes the two, so they must agree")
    for what, x in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
        need(jnp.shape(x) == (), f"_step_one returned {what} of shape {jnp.shape(x)}; one copy's {what} is a scalar")
    _check_same("_step_one", next_inner, "_reset_one", inner, need, "an auto-reset selects between them")


def _check_state(state: EnvState, where: str, batch: int, spec: ObsSpec, need) -> None:
    """An EnvState of ``batch`` copies: per-copy fields [batch], observations [batch, *obs_spec]."""
    for field in ("obs", "final_obs"):
        shape = getattr(state, field).shape
        need(shape == (batch, *spec.shape),
             f"{where} returned {field} of shape {shape}; expected (num_envs, *obs_spec.shape) = {(batch, *spec.shape)}")
        _check_dtype(where, field, getattr(state, field), spec, need)
    for field in ("reward", "terminated", "truncated", "episode_return", "episode_length", "done_return",
                  "done_length"):
        shape = getattr(state, field).shape
        need(shape == (batch,), f"{where} returned {field} of shape {shape}; expected (num_envs,) = {(batch,)}")
    # Typed keys are [B]; raw uint32 keys (jax.random.key_data) [B, 2]: the trainer reads neither.
    need(state.key.shape[:1] == (batch,), f"{where} returned key of shape {state.key.shape}; expected one per env "
         f"({batch}, ...)")
    for field in ("terminated", "truncated"):
        need(getattr(state, field).dtype == jnp.bool_,
             f"{where} returned {field} of dtype {getattr(state, field).dtype}; expected bool")


def _check_dtype(where: str, field: str, obs: Any, spec: ObsSpec, need) -> None:
    """Observations of the dtype ``spec`` declares: the networks read it (uint8 frames of rank 3
    go to the Nature CNN, which scales them by 1/255)."""
    need(np.dtype(obs.dtype) == obs_dtype(spec.dtype),
         f"{where} returned {field} of dtype {obs.dtype}; obs_spec declares {obs_dtype(spec.dtype)}")


def obs_dtype(dtype: Any) -> Any:
    """An obs_spec's ``dtype`` as JAX arrays have it (float -> float32 without x64), or None where it is no dtype."""
    if dtype is None:
        return None
    try:
        return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    except TypeError:
        return None


def _traced(fn, where: str, need, *args) -> Any:
    """``jax.eval_shape(fn, *args)``; a method that JAX cannot trace (Python control flow on a
    traced value, a NumPy call on one) is one line naming it, where it failed in the user's code."""
    try:
        return jax.eval_shape(fn, *args)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
            jax.errors.TracerIntegerConversionError) as e:
        frame = user_frame(e.__traceback__, fn)
        at = f" at {frame[0]}:{frame[1]}" if frame else ""
        need(False, f"{where} cannot be traced by JAX{at} ({type(e).__name__}: {str(e).splitlines()[0]}); it must "
             "be jittable: jnp.where or jax.lax.cond instead of Python branches on traced values, jnp instead of np")
    except EnvContractError:
        raise
    except Exception as e:  # the user's own error while tracing: a full traceback said no more than this
        need(False, f"{where} raised{raised_in(e, fn)}")


def raised_in(e: BaseException, fn) -> str:
    """``e``, raised by the user's ``fn``, as one line's tail: " at FILE:LINE: Type: message"."""
    frame = user_frame(e.__traceback__, fn)
    text = str(e).strip()
    return (f" at {frame[0]}:{frame[1]}" if frame else "") + f": {type(e).__name__}" + \
        (f": {text.splitlines()[0]}" if text else "")


def user_frame(tb, fn) -> Optional[tuple[str, int]]:
    """(file, line) where traceback ``tb`` left the user's code: the innermost frame in ``fn``'s
    own file, else the innermost outside installed packages, the standard library and bpo_jax
    (a NumPy call on a tracer fails inside NumPy)."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    own = [f for f in frames if code is not None and f[0] == code.co_filename]
    if own:
        return own[-1]
    library = tuple(os.path.join(os.path.realpath(p), "") for p in (
        sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_paths()["stdlib"],
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    others = [f for f in frames if not os.path.realpath(f[0]).startswith(library)]
    return others[-1] if others else None


def _check_same(where: str, got: Any, reference: str, want: Any, need, why: str) -> None:
    """``got`` has ``want``'s tree structure and every leaf's shape and dtype."""
    got_leaves, got_tree = jax.tree.flatten_with_path(got)
    want_leaves, want_tree = jax.tree.flatten_with_path(want)
    need(got_tree == want_tree, f"{where} returns a state of another structure than {reference} ({why})")
    for (path, a), (_, b) in zip(got_leaves, want_leaves):
        need((a.shape, a.dtype) == (b.shape, b.dtype),
             f"{where} returned {jax.tree_util.keystr(path) or 'its state'} as {a.dtype}{list(a.shape)} but "
             f"{reference} as {b.dtype}{list(b.shape)} ({why})")


def _check_box(space: Box, need) -> None:
    need(_is_shape(space.shape), f"Box shape must be a tuple of sizes such as (3,), got {space.shape!r}")
    try:
        low = np.broadcast_to(np.asarray(space.low, np.float32), space.shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape)
    except (TypeError, ValueError):
        need(False, f"Box bounds must be numbers or arrays broadcastable to {space.shape}, "
             f"got low {space.low!r} and high {space.high!r}")
    need(not (np.isnan(low).any() or np.isnan(high).any()), "Box bounds hold NaN")
    need(bool(np.all(low <= high)), f"Box needs low <= high everywhere, got low {low.tolist()} and high {high.tolist()}")


def _action(space, batch: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    if isinstance(space, Discrete):
        return jax.ShapeDtypeStruct(batch, jnp.int32)
    return jax.ShapeDtypeStruct((*batch, *space.shape), jnp.float32)


def _is_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and all(is_int(d) and d >= 0 for d in shape)


def _said(out: Any) -> str:
    return f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
