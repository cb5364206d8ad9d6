"""``make("suite/name")``: one entry point for every environment suite.

Suites register a lister (the valid names, imported lazily so a missing optional
dependency only matters when that suite is used) and a constructor.
"""
from __future__ import annotations

from typing import Callable

from bpo_jax.envs.base import Env


class UnknownEnvError(ValueError):
    """The requested suite or environment does not exist; the message lists valid choices."""


_SUITES: dict[str, tuple[Callable[[], list[str]], Callable[..., Env]]] = {}


def register_suite(suite: str, names: Callable[[], list[str]], constructor: Callable[..., Env]) -> None:
    """Add a suite: ``names()`` lists its environments, ``constructor(name, num_envs, **kw)`` builds one."""
    _SUITES[suite] = (names, constructor)


def suites() -> list[str]:
    return sorted(_SUITES)


def list_envs(suite: str | None = None) -> list[str]:
    """All ``suite/name`` ids, or those of one suite."""
    chosen = [suite] if suite else suites()
    return [f"{s}/{n}" for s in chosen for n in _SUITES[s][0]()]


def make(env_id: str, num_envs: int = 1, **kwargs) -> Env:
    """Build ``num_envs`` batched copies of ``env_id`` (e.g. ``"gymnax/CartPole-v1"``)."""
    suite, sep, name = env_id.partition("/")
    if not sep or suite not in _SUITES:
        raise UnknownEnvError(
            f"unknown environment suite in {env_id!r}: use 'suite/name' with suite one of {', '.join(suites())}"
        )
    lister, constructor = _SUITES[suite]
    valid = lister()
    if name not in valid:
        raise UnknownEnvError(f"unknown {suite} environment {name!r}; valid: {', '.join(valid)}")
    return constructor(name, num_envs, **kwargs)


def _register_builtin() -> None:
    from bpo_jax.envs import gymnax as gymnax_suite

    register_suite("gymnax", gymnax_suite.names, gymnax_suite.GymnaxEnv)


_register_builtin()
