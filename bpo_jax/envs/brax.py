"""brax suite: ``brax/<name>`` for every environment in brax's registry.

Built with ``brax.envs.get_environment(name, backend=...)``, i.e. the bare task with *no*
brax wrapper: the protocol's base class already batches, auto-resets and keeps episode
statistics, and brax's ``AutoResetWrapper`` would hide the real last observation of an
episode.  What brax's ``EpisodeWrapper`` adds is reimplemented here (:class:`BraxApiEnv`,
also used by the playground suite, whose environments share brax's ``reset``/``step``/
``State(obs, reward, done, ...)`` API).

Faithful to brax:

* dynamics, observations and rewards are the environment's own; ``terminated`` is its
  ``done`` (e.g. Ant/Hopper/Walker2d/Humanoid falling when ``terminate_when_unhealthy``);
* the time limit is brax's ``EpisodeWrapper``: a step counter advanced by ``action_repeat``
  per agent step, ``truncated`` once it reaches ``episode_length`` (default 1000, as in
  ``brax.envs.create``) unless that step also terminated;
* ``action_repeat`` (default 1) applies the same action that many environment steps and
  sums the rewards, like ``EpisodeWrapper``.  Not to be confused with ``n_frames``, the
  physics substeps inside one environment step, which each task sets itself (Ant: 5);
* actions are passed through unclipped.  Every brax task expects actions in [-1, 1]
  (those with other actuator ranges rescale [-1, 1] themselves, e.g. Humanoid, Pusher),
  so the action space is ``Box(-1, 1, (action_size,))``.

Not faithful:

* with ``action_repeat > 1`` an episode ends at the first sub-step that is done and the
  remaining sub-steps are skipped (brax keeps stepping and reports only the last
  sub-step's ``done``, which can miss a termination);
* finished episodes restart from a fresh ``env.reset`` (the base class), not from the
  cached first state that brax's ``AutoResetWrapper`` reuses;
* brax's ``metrics`` and ``info`` stay inside ``EnvState.inner`` and are not reported.

Backends: ``backend=`` one of ``mjx`` (default here; brax's task constructors default to
``generalized``), ``generalized``, ``positional``, ``spring``.  ``swimmer`` only exists for
``generalized`` in brax, which is its default here, but brax 0.14.2's fluid model calls
``jnp.clip(a_min=...)``, which jax >= 0.10 removed, so ``brax/swimmer`` fails when its step
is traced (an upstream bug).  ``fast`` (brax's trivial test task) has no physics and
ignores the backend.
"""
from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from bpo_jax.envs.base import Box, FunctionalEnv, ObsSpec, tree_where
from bpo_jax.envs.options import check_options, keyword_defaults, positive_int, refuse_unknown
from bpo_jax.envs.registry import registry_names, require

# The pipelines of brax.envs.base.PipelineEnv in brax 0.14.2 (it keeps them in a local
# dict, so they cannot be listed from outside).
BACKENDS = ("mjx", "generalized", "positional", "spring")
DEFAULT_BACKEND = "mjx"
# Tasks whose constructor rejects some backends (brax 0.14.2 source): name -> supported.
_ONLY_BACKENDS = {"swimmer": ("generalized",)}
# Options this module consumes itself; everything else goes to the brax constructor.
_OWN_OPTIONS = ("backend", "episode_length", "action_repeat", "obs_key")


def names() -> list[str]:
    """brax's registry, read from its source until brax is imported (importing takes seconds)."""
    require("brax", "brax", "brax", load=False)
    # brax has no public lister; _envs is the registry get_environment reads.
    return registry_names("brax.envs", "_envs", lambda: list(importlib.import_module("brax.envs")._envs))


def make(
    name: str,
    num_envs: int,
    backend: Optional[str] = None,
    episode_length: int = 1000,
    action_repeat: int = 1,
    obs_key: str = "state",
    **kwargs,
) -> "BraxApiEnv":
    """``brax/<name>``; ``kwargs`` go to the task's constructor (e.g. ``ctrl_cost_weight``)."""
    require("mujoco", "brax", "brax")  # first: a bad MUJOCO_GL is reported in one line (registry.require)
    require("brax", "brax", "brax")
    import brax.envs

    backend = _check_backend(name, backend)
    kwargs = _check_kwargs(name, brax.envs._envs[name], kwargs)
    check_episode_options(f"brax/{name}", episode_length, action_repeat, obs_key)
    _quiet_unmaintained_notice()
    sim = brax.envs.get_environment(name, backend=backend, **kwargs)
    return BraxApiEnv(
        f"brax/{name}", num_envs, sim,
        episode_length=episode_length, action_repeat=action_repeat, obs_key=obs_key,
    )


def _quiet_unmaintained_notice() -> None:
    """brax's notice that it is no longer maintained (in favour of MJX, which the mjx/ suite
    runs), printed with its source line at every env built: above a run's first line and above
    one-line errors.  The suite trains brax's tasks as they are.  One filter for that message
    alone, put first at every env built (a caller's catch_warnings may have taken it away, or
    put "always" before it) and left in place: catch_warnings() here would put back the whole
    filter list, another thread's changes with it."""
    warnings.filterwarnings("ignore", message="Brax System, piplines and environments are not actively",
                            category=UserWarning)


def _check_backend(name: str, backend: Optional[str]) -> str:
    supported = _ONLY_BACKENDS.get(name, BACKENDS)
    if backend is None:
        return DEFAULT_BACKEND if DEFAULT_BACKEND in supported else supported[0]
    if backend not in supported:
        raise ValueError(f"brax/{name}: unknown backend {backend!r}; valid: {', '.join(supported)}")
    return backend


def check_episode_options(where: str, episode_length: Any, action_repeat: Any, obs_key: Any) -> tuple[int, int]:
    """(episode_length, action_repeat) as positive ints (``1e3`` too), and ``obs_key`` text, else a
    one-line ValueError naming the option."""
    if not isinstance(obs_key, str):
        raise ValueError(f"{where}: obs_key must be the name of an observation entry (text), got {obs_key!r}")
    return (positive_int(where, "episode_length", episode_length),
            positive_int(where, "action_repeat", action_repeat))


def _check_kwargs(name: str, cls: type, kwargs: dict) -> dict:
    """Reject unknown constructor options with one line (brax raises a TypeError deep
    inside PipelineEnv, or silently swallows them for tasks that take ``**kwargs``), and values
    not of their default's kind (:mod:`bpo_jax.envs.options`; brax would fail on them only when
    the step is traced, or train with NaN weights).  Returns the options, converted."""
    from brax.envs.base import PipelineEnv

    params = inspect.signature(cls.__init__).parameters
    valid = {p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
    defaults = keyword_defaults(cls.__init__)
    if any(v.kind == v.VAR_KEYWORD for v in params.values()):
        # Task constructors forward **kwargs to PipelineEnv.__init__.  Its debug default types
        # that option; n_frames, which each task sets its own way (ant: 5), is checked below.
        valid |= {"n_frames", "debug"}
        defaults = {"debug": keyword_defaults(PipelineEnv.__init__)["debug"], **defaults}
    valid -= {"backend", "sys"}
    refuse_unknown(f"brax/{name}", kwargs, valid, listed=valid | set(_OWN_OPTIONS))
    checked = check_options(f"brax/{name}", kwargs, defaults)
    if "n_frames" in checked:  # physics steps per env step: 0 would never advance the simulation
        checked["n_frames"] = positive_int(f"brax/{name}", "n_frames", checked["n_frames"])
    return checked


@struct.dataclass
class Inner:
    """Per-environment simulator state: the wrapped env's ``State`` and the step counter."""

    sim: Any  # brax.envs.State or mujoco_playground.State
    steps: jax.Array  # int32 environment steps taken this episode (action_repeat per agent step)


class BraxApiEnv(FunctionalEnv):
    """Any environment with brax's API (``reset(key) -> State``, ``step(State, action) -> State``,
    ``State.obs/.reward/.done``), with brax's ``EpisodeWrapper`` time limit and action repeat.

    ``obs_key`` picks the array out of dictionary observations (e.g. playground locomotion's
    ``{'state', 'privileged_state'}``); with array observations another key is refused.  ``state_nodes``: see
    :class:`FunctionalEnv` (playground passes MJX's ``Data``, which MuJoCo Warp batches its own way).
    """

    step_uses_key = False  # the wrapped env keeps its own randomness (see ``_step_one``)

    def __init__(self, name: str, num_envs: int, sim: Any, *, episode_length: int,
                 action_repeat: int = 1, obs_key: str = "state", state_nodes: tuple[type, ...] = ()):
        episode_length, action_repeat = check_episode_options(name, episode_length, action_repeat, obs_key)
        self._sim = sim
        self._episode_length = episode_length
        self._action_repeat = action_repeat
        self._obs_key = obs_key
        # Truncated at the first agent step whose sim step count reaches episode_length.
        self.time_limit = -(-self._episode_length // self._action_repeat)
        self.state_nodes = tuple(state_nodes)
        # Observation structure of a reset state, without running it.
        raw = jax.eval_shape(sim.reset, jax.random.PRNGKey(0)).obs
        if not isinstance(raw, Mapping) and obs_key != "state":  # it would be recorded, and pick nothing
            raise ValueError(f"{name}: its observation is one array, so obs_key {obs_key!r} picks nothing; drop it")
        obs = self._select(raw, name)
        action_size = int(sim.action_size)
        super().__init__(
            name, num_envs, ObsSpec(tuple(obs.shape), jnp.float32),
            Box(low=-jnp.ones(action_size), high=jnp.ones(action_size), shape=(action_size,)),
        )

    @property
    def unwrapped(self) -> Any:
        """The wrapped brax / playground environment."""
        return self._sim

    @property
    def episode_limit(self) -> int:
        return self._episode_length

    @property
    def action_repeat(self) -> int:
        return self._action_repeat

    def _select(self, obs: Any, name: Optional[str] = None) -> Any:
        if not isinstance(obs, Mapping):
            return obs
        if self._obs_key not in obs:
            raise ValueError(
                f"{name or self.name}: observation has no key {self._obs_key!r}; "
                f"pass obs_key= one of {', '.join(sorted(obs))}"
            )
        return obs[self._obs_key]

    def _obs(self, state: Any) -> jax.Array:
        return jnp.asarray(self._select(state.obs), jnp.float32)

    def _reset_one(self, key):
        state = jax.tree.map(_strong, self._sim.reset(key))
        return Inner(sim=state, steps=jnp.int32(0)), self._obs(state)

    def _step_one(self, key, inner, action):
        # The wrapped env keeps its own randomness (brax: none in step; playground:
        # state.info['rng']), so the protocol's per-step key is not needed.
        del key
        state, reward, terminated = self._repeat(inner.sim, action)
        steps = inner.steps + self._action_repeat
        truncated = steps >= self._episode_length
        return Inner(sim=state, steps=steps), self._obs(state), reward, terminated, truncated

    def _step_sim(self, state: Any, action: jax.Array) -> Any:
        """One step of the wrapped env, with the leaf dtypes of ``state``, which is left intact."""
        # brax and playground tasks update state.metrics / state.info in place (brax with
        # Python floats); tree.map rebuilds the containers, so they update a copy.
        fresh = jax.tree.map(lambda x: x, state)
        return _cast(self._sim.step(fresh, action), jax.tree.map(lambda x: x.dtype, state))

    def _repeat(self, state: Any, action: jax.Array):
        """``action_repeat`` environment steps: (state, summed reward, terminated)."""
        if self._action_repeat == 1:
            nxt = self._step_sim(state, action)
            return nxt, nxt.reward, nxt.done > 0

        def body(carry, _):
            state, reward, done = carry
            nxt = self._step_sim(state, action)
            # Freeze at the first terminal sub-step: the episode ends there.
            state = tree_where(done, state, nxt, self.state_nodes)
            reward = reward + jnp.where(done, 0.0, nxt.reward)
            return (state, reward, done | (nxt.done > 0)), None

        init = (state, jnp.zeros((), jnp.float32), jnp.zeros((), bool))
        (state, reward, done), _ = jax.lax.scan(body, init, None, length=self._action_repeat)
        return state, reward, done


# Reset and step must give pytrees of identical types, or a lax.scan over steps (the
# trainer's rollout) rejects its carry: brax and playground states mix weakly typed Python
# scalars (e.g. ``done = 0.0``) with float32 arrays.


def _strong(x: Any) -> jax.Array:
    """``x`` as an array that is not weakly typed."""
    x = jnp.asarray(x)
    return jax.lax.convert_element_type(x, x.dtype) if jax.typeof(x).weak_type else x


def _cast(tree: Any, dtypes: Any) -> Any:
    """``tree`` cast leaf by leaf to (strong) ``dtypes``, a tree of the same structure."""
    def cast(x, dtype):
        x = jnp.asarray(x)
        if x.dtype == dtype and not jax.typeof(x).weak_type:
            return x
        return jax.lax.convert_element_type(x, dtype)

    return jax.tree.map(cast, tree, dtypes)
