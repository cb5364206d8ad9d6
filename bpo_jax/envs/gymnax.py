"""gymnax suite: ``gymnax/<id>`` for every id in ``gymnax.registered_envs``.

gymnax (>= 1.0) separates ``step_env`` (one transition, no auto-reset) from the time
limit (``is_truncated``), which is exactly what the protocol needs: the base class does
the auto-reset, so ``final_obs`` is the real last observation of a truncated episode.
"""
from __future__ import annotations

import http.client
import importlib

import jax.numpy as jnp

from bpo_jax.deferred_imports import deferred
from bpo_jax.envs.base import Box, Discrete, FunctionalEnv, ObsSpec
from bpo_jax.envs.options import check_options, refuse_unknown
from bpo_jax.envs.registry import MissingDependencyError, registry_names
from bpo_jax.errors import first_line

MNIST_DIR = "/tmp/mnist"  # gymnax.utils.load_mnist's default directory


def _gymnax():
    """The gymnax module, imported without seaborn (:mod:`bpo_jax.deferred_imports`)."""
    with deferred("seaborn"):
        return importlib.import_module("gymnax")


def names() -> list[str]:
    """gymnax's ``registered_envs``; before gymnax is imported (seconds), its built-in ids."""
    live = lambda: list(_gymnax().registered_envs)
    return registry_names("gymnax.registration", "_BUILTIN_ENV_IDS", live)


def make(name: str, num_envs: int, **params) -> "GymnaxEnv":
    return GymnaxEnv(name, num_envs, **params)


def check_params(where: str, defaults, params: dict) -> dict:
    """``params`` checked against the fields of the task's ``EnvParams`` ``defaults``: known
    names, values of each field's kind (:mod:`bpo_jax.envs.options`: an int field takes an
    int, a float field a finite number, ...) and ``max_steps_in_episode >= 1``; one-line
    ValueErrors naming the option, before anything is traced."""
    fields = defaults.__dataclass_fields__
    refuse_unknown(where, params, fields, noun="parameter")
    params = check_options(where, params, {name: getattr(defaults, name) for name in params})
    if params.get("max_steps_in_episode", 1) < 1:
        raise ValueError(f"{where}: option max_steps_in_episode must be >= 1 (the time limit in steps), "
                         f"got {params['max_steps_in_episode']}")
    return params


class GymnaxEnv(FunctionalEnv):
    def __init__(self, env_id: str, num_envs: int, **params):
        """``params`` override fields of the task's gymnax ``EnvParams`` (e.g. max_steps_in_episode),
        checked by :func:`check_params`."""
        gymnax = _gymnax()
        from gymnax.environments import environment, spaces

        try:
            self._env, self._params = gymnax.make(env_id)
        except (OSError, EOFError, http.client.HTTPException) as err:
            if "MNIST" not in env_id:
                raise
            # Offline, or a download cut short: gymnax's load_mnist keeps a partial file, which
            # it then takes for the data (a gzip error on every later try).
            raise MissingDependencyError(
                f"gymnax/{env_id} reads MNIST from {MNIST_DIR}, downloading what is missing on first use (gymnax's "
                f"load_mnist), and could not: {type(err).__name__}: {first_line(err)}; connect once (after deleting "
                f"any partial file there), or put MNIST's four .gz files in {MNIST_DIR}") from None
        self._params = self._params.replace(**check_params(f"gymnax/{env_id}", self._params, params))
        # gymnax's own is_truncated is a time limit; a task that redefines it declares none.
        if type(self._env).is_truncated is environment.Environment.is_truncated:
            self.time_limit = int(getattr(self._params, "max_steps_in_episode", 0)) or None
        obs_space = self._env.observation_space(self._params)
        act_space = self._env.action_space(self._params)
        if isinstance(act_space, spaces.Discrete):
            action_space = Discrete(int(act_space.n))
        elif isinstance(act_space, spaces.Box):
            shape = tuple(act_space.shape) or (1,)
            action_space = Box(
                low=jnp.broadcast_to(jnp.asarray(act_space.low, jnp.float32), shape),
                high=jnp.broadcast_to(jnp.asarray(act_space.high, jnp.float32), shape),
                shape=shape,
            )
        else:
            raise ValueError(f"gymnax/{env_id}: unsupported action space {type(act_space).__name__}")
        self._scalar_action = isinstance(action_space, Box) and tuple(act_space.shape) == ()
        super().__init__(f"gymnax/{env_id}", num_envs, ObsSpec(tuple(obs_space.shape), jnp.float32), action_space)

    def _reset_one(self, key):
        obs, inner = self._env.reset_env(key, self._params)
        return inner, jnp.asarray(obs, jnp.float32)

    def _step_one(self, key, inner, action):
        if self._scalar_action:
            action = action[0]
        obs, inner, reward, terminated, _ = self._env.step_env(key, inner, action, self._params)
        truncated = self._env.is_truncated(inner, self._params)
        return inner, jnp.asarray(obs, jnp.float32), reward, terminated, truncated
