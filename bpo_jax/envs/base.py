"""The environment protocol shared by every suite.

An environment is a batch of ``num_envs`` copies of one task, driven functionally::

    state = env.reset(key)            # every leaf has a leading [num_envs] axis
    state = env.step(state, action)   # action: [num_envs] (discrete) or [num_envs, A]

Both calls are pure and jittable, so a whole rollout is one ``lax.scan``.

Every state carries what correct on-policy learning needs, so no trainer has to know
a suite's quirks:

* ``terminated`` and ``truncated`` separately: a time-limit cut is not a terminal
  state, and the value target must bootstrap through it;
* ``final_obs``: the observation *before* auto-reset.  On a step that ended an episode
  ``obs`` is already the first observation of the next one, so bootstrapping from it
  would be wrong; on every other step ``final_obs == obs``;
* episode statistics of the episodes that ended on this step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol, Union

import jax
import jax.numpy as jnp
from flax import struct


@dataclass(frozen=True)
class Discrete:
    """A categorical action space with ``n`` choices, actions are int32 in [0, n)."""

    n: int


@dataclass(frozen=True)
class Box:
    """A continuous action space: float32 actions of ``shape`` within [low, high]."""

    low: Any
    high: Any
    shape: tuple[int, ...]


ActionSpace = Union[Discrete, Box]


@dataclass(frozen=True)
class ObsSpec:
    """Shape and dtype of one environment's observation (no batch axis)."""

    shape: tuple[int, ...]
    dtype: Any = jnp.float32


@struct.dataclass
class EnvState:
    """Batched state of ``num_envs`` environments after a reset or a step.

    Shapes below use B = num_envs and O = the observation shape.
    """

    obs: jax.Array  # [B, *O] observation to act on (first obs of a new episode after a reset)
    reward: jax.Array  # [B] reward of the last transition
    terminated: jax.Array  # [B] bool, the last transition entered a terminal state
    truncated: jax.Array  # [B] bool, the episode was cut (time limit) and not terminated
    final_obs: jax.Array  # [B, *O] observation reached by the last transition, before auto-reset
    episode_return: jax.Array  # [B] running undiscounted return of the current episode
    episode_length: jax.Array  # [B] int32 running length of the current episode
    done_return: jax.Array  # [B] return of the episode that ended on this step (0 if none)
    done_length: jax.Array  # [B] int32 length of the episode that ended on this step (0 if none)
    inner: Any  # suite-specific simulator state
    key: jax.Array  # [B] per-environment PRNG keys for stochastic steps and resets
    reset_pool: Any = None  # cached-reset mode only: (inner, obs) of P initial states, [P, ...]

    @property
    def done(self) -> jax.Array:
        """[B] bool, an episode ended on the last step (terminated or truncated)."""
        return jnp.logical_or(self.terminated, self.truncated)


class Env(Protocol):
    """What the trainer needs from an environment of any suite.

    Optional: ``time_limit`` (int), declared where episodes are truncated only on reaching
    that many agent steps (see :class:`FunctionalEnv`).  Suites whose simulators keep their
    state outside the :class:`EnvState` say so when registered (``register_suite``'s
    ``host_state``)."""

    name: str
    num_envs: int
    obs_spec: ObsSpec
    action_space: ActionSpace

    def reset(self, key: jax.Array) -> EnvState: ...

    def step(self, state: EnvState, action: jax.Array) -> EnvState: ...


class FunctionalEnv:
    """Base for suites whose single-environment dynamics are pure JAX functions.

    Subclasses implement one copy of the task without auto-reset:

    * ``_reset_one(key) -> (inner, obs)``
    * ``_step_one(key, inner, action) -> (inner, obs, reward, terminated, truncated)``

    and this class batches them with ``vmap``, resets finished episodes, and keeps episode
    statistics.

    Auto-reset modes (``reset_pool``):

    * ``0`` (default): every finished episode restarts from a fresh random initial state,
      exactly the task's initial-state distribution.  Because a step is traced for every
      environment at once, ``_reset_one`` runs for every environment on any step where one
      episode ended (its result is selected only where one did); for MJX tasks that is a
      second physics call on such steps.  On the CPU a step where no episode ended skips it
      (:attr:`skip_idle_resets`).
    * ``P > 0`` (cached reset): ``P`` initial states are drawn once at ``reset`` and finished
      episodes restart from one of them picked uniformly at random, a cheap gather.  Bias:
      the run only ever sees ``P`` distinct starts, so with a small pool the policy can
      overfit them and the returns can differ from the task's; use a pool of thousands.

    ``state_nodes``: types of simulator-state nodes inside ``inner`` that select and index
    themselves (``old.where(cond, new)``, ``node[index]``) because not all their leaves have a
    per-environment axis (e.g. MuJoCo Warp's ``mjx.Data`` keeps buffers shared by the whole
    batch); every other leaf is selected and indexed on its own.

    Randomness: each environment carries its own key.  A step splits a fresh key off it for
    ``_step_one`` only if the step reads its key (:attr:`step_uses_key`), and a finished
    episode splits one off for its reset; so a deterministic task draws nothing on a step
    where no episode ends.
    """

    reset_pool_size = 0
    state_nodes: tuple[type, ...] = ()
    # Whether ``_step_one`` reads its key (stochastic dynamics).  None: found out from a trace of
    # one environment's step at the first ``step`` (gymnax wraps tasks of either kind).
    step_uses_key: bool | None = None
    # Whether a step where no episode ended skips the reset (a ``lax.cond``).  None: on the CPU
    # only.  On a GPU a cond inside the rollout loop would wait on the device for its predicate
    # every step, and with thousands of environments some episode ends on nearly every step.
    skip_idle_resets: bool | None = None
    # Declared by a suite whose episodes are truncated only on reaching this many agent steps
    # (a time limit), so each copy truncates at most once in any ``time_limit`` consecutive
    # steps: the trainer then evaluates the critic on the few truncated final observations
    # only (bpo_jax.bootstrap).  None: undeclared, every final observation is evaluated.
    time_limit: int | None = None

    def __init__(self, name: str, num_envs: int, obs_spec: ObsSpec, action_space: ActionSpace):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.name = name
        self.num_envs = num_envs
        self.obs_spec = obs_spec
        self.action_space = action_space

    def _reset_one(self, key):
        raise NotImplementedError(f"{type(self).__name__} does not define _reset_one(key) -> (inner, obs)")

    def _step_one(self, key, inner, action):
        raise NotImplementedError(f"{type(self).__name__} does not define _step_one(key, inner, action) -> "
                                  "(inner, obs, reward, terminated, truncated)")

    def with_reset_pool(self, size: int) -> "FunctionalEnv":
        """A copy of this environment in cached-reset mode with ``size`` initial states (0: fresh
        resets); this one is left as it is.  The copy shares the (read-only) task definition."""
        if size < 0:
            raise ValueError(f"reset_pool must be >= 0, got {size}")
        env = copy.copy(self)
        env.reset_pool_size = int(size)
        return env

    def reset(self, key: jax.Array) -> EnvState:
        step_keys, reset_keys = _split_each(jax.random.split(key, self.num_envs + self.reset_pool_size))
        # One vmapped reset draws the first states and the pool together: a second vmap of
        # ``_reset_one`` would put a second copy of the reset (for some tasks hundreds of
        # physics steps) into every program that resets.
        inner, obs = jax.vmap(self._reset_one)(reset_keys)
        first, rest = slice(None, self.num_envs), slice(self.num_envs, None)
        state = self.state_from(tree_take(inner, first, self.state_nodes), obs[first], step_keys[first])
        if self.reset_pool_size:
            state = state.replace(reset_pool=(tree_take(inner, rest, self.state_nodes), obs[rest]))
        return state

    def state_from(self, inner: Any, obs: jax.Array, keys: jax.Array) -> EnvState:
        """A freshly reset batch from given simulator states: ``inner`` and ``obs`` have a
        leading [num_envs] axis, ``keys`` is [num_envs] per-environment PRNG keys.  Suites use
        this to put environments in chosen states (e.g. ``reset_to(qpos, qvel)``)."""
        zeros = jnp.zeros(self.num_envs)
        izeros = jnp.zeros(self.num_envs, jnp.int32)
        false = jnp.zeros(self.num_envs, bool)
        return EnvState(
            obs=obs, reward=zeros, terminated=false, truncated=false, final_obs=obs,
            episode_return=zeros, episode_length=izeros, done_return=zeros, done_length=izeros,
            inner=inner, key=keys,
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        pool, keys = state.reset_pool, state.key
        if self._step_uses_key(state, action):
            keys, step_keys = _split_each(keys)
        else:  # the step ignores its key: no random call for it
            step_keys = keys
        inner, obs, reward, terminated, truncated = jax.vmap(self._step_one)(step_keys, state.inner, action)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        # A transition that is both terminal and at the time limit is terminal: nothing to bootstrap.
        truncated = jnp.logical_and(jnp.asarray(truncated, bool), ~terminated)
        done = jnp.logical_or(terminated, truncated)

        def restart(carry):
            """Finished episodes restart: their key splits off a reset key, the others keep theirs."""
            return jax.vmap(self._restart_one, in_axes=(0, 0, None))(done, carry, pool)

        # A reset draws random numbers (and for physics suites runs the simulator) for every env,
        # yet is needed only where an episode ended: on the CPU a step without one skips it all.
        # The result is the same either way (where no episode ended, restart keeps everything),
        # so the other backends, and vmapped seeds (where a cond becomes a select), run it always.
        skip = jax.default_backend() == "cpu" if self.skip_idle_resets is None else self.skip_idle_resets
        carry = (keys, inner, obs)
        keys, inner, next_obs = jax.lax.cond(jnp.any(done), restart, lambda c: c, carry) if skip else restart(carry)
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        return EnvState(
            obs=next_obs,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=obs,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            done_return=jnp.where(done, episode_return, 0.0),
            done_length=jnp.where(done, episode_length, 0),
            inner=inner,
            key=keys,
            reset_pool=pool,
        )

    def _restart_one(self, done: jax.Array, carry: tuple, pool: Any) -> tuple:
        """One environment (no batch axis): (key, inner, obs) after its step, restarted if done."""
        key, inner, obs = carry
        next_key, reset_key = jax.random.split(key)
        reset_inner, reset_obs = self._initial_state(reset_key, pool)
        return (jnp.where(done, next_key, key), tree_where(done, reset_inner, inner, self.state_nodes),
                jnp.where(done, reset_obs, obs))

    def _step_uses_key(self, state: EnvState, action: jax.Array) -> bool:
        """Whether ``_step_one`` reads its key (stochastic dynamics): :attr:`step_uses_key`, or
        when that is None, read off a trace of one environment's step (once per instance; a
        suite with ``state_nodes``, whose leaves are not all per-env, is assumed to read it)."""
        if self.step_uses_key is None and self.state_nodes:
            self.step_uses_key = True
        elif self.step_uses_key is None:
            one = lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
            jaxpr = jax.make_jaxpr(self._step_one)(*jax.tree.map(one, (state.key, state.inner, action))).jaxpr
            key = jaxpr.invars[0]
            self.step_uses_key = any(v is key for e in jaxpr.eqns for v in e.invars) or key in jaxpr.outvars
        return self.step_uses_key

    def _initial_state(self, key: jax.Array, pool: Any) -> tuple[Any, jax.Array]:
        """(inner, obs) to restart from: fresh, or drawn from the cached pool."""
        if pool is None:
            return self._reset_one(key)
        inner, obs = pool
        index = jax.random.randint(key, (), 0, obs.shape[0])
        return tree_take(inner, index, self.state_nodes), obs[index]


def _split_each(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B] keys -> two independent [B] key batches."""
    pairs = jax.vmap(jax.random.split)(keys)
    return pairs[:, 0], pairs[:, 1]


def tree_where(cond: jax.Array, new: Any, old: Any, nodes: tuple[type, ...] = ()) -> Any:
    """Per leaf ``where(cond, new, old)``: one environment's reset-or-keep choice (cond is a
    scalar inside the env vmap).  Instances of ``nodes`` choose for themselves,
    ``old.where(cond, new)`` (see :attr:`FunctionalEnv.state_nodes`)."""

    def one(x, y):
        return y.where(cond, x) if isinstance(x, nodes) else jnp.where(cond, x, y)

    return jax.tree.map(one, new, old, is_leaf=lambda x: isinstance(x, nodes))


def tree_take(tree: Any, index: Any, nodes: tuple[type, ...] = ()) -> Any:
    """``x[index]`` along every leaf's leading (environment or pool) axis; instances of ``nodes``
    are indexed as a whole, ``node[index]`` (see :attr:`FunctionalEnv.state_nodes`)."""
    return jax.tree.map(lambda x: x[index], tree, is_leaf=lambda x: isinstance(x, nodes))
