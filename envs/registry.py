"""``make("suite/name")``: one entry point for every environment suite.

Suites register a lister (the valid names, imported lazily so a missing optional
dependency only matters when that suite is used) and a constructor.
"""
from __future__ import annotations

from typing import Callable

from bpo_jax.envs.base import Env


class UnknownEnvError(ValueError):
    """The requested suite or environment does not exist; the message lists valid choices."""


class MissingDependencyError(ImportError):
    """A suite's optional packages are not installed; the message says what to install."""


def require(module: str, suite: str, extra: str) -> None:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"the {suite}/ suite needs {module!r} ({err}); install it with: pip install 'bpo-jax[{extra}]'"
        ) from None


def check_mjx_impl(env_id: str, impl: str) -> None:
    """A one-line ValueError unless ``impl`` names an MJX implementation ('jax' or 'warp').

    For Warp also lowers warp-lang's log level from its default INFO to WARNING: at INFO it
    prints a start-up banner and a line per kernel module loaded (dozens per compiled program),
    which bury the trainer's progress lines.  A level the user set is left alone; warnings
    (e.g. a contact pool too small) still print."""
    if impl not in ("jax", "warp"):
        raise ValueError(f"{env_id}: impl must be 'jax' or 'warp' (MuJoCo Warp), got {impl!r}")
    if impl == "warp":
        try:
            import warp
        except ImportError:
            return  # the suite reports the missing package
        if warp.config.log_level == warp.LOG_INFO:
            warp.config.log_level = warp.LOG_WARNING


_SUITES: dict[str, tuple[Callable[[], list[str]], Callable[..., Env]]] = {}


def register_suite(suite: str, names: Callable[[], list[str]], constructor: Callable[..., Env]) -> None:
    """Add a suite: ``names()`` lists its environments, ``constructor(name, num_envs, **kw)`` builds one."""
    _SUITES[suite] = (names, constructor)


def suites() -> list[str]:
    return sorted(_SUITES)


def list_envs(suite: str | None = None) -> list[str]:
    """All ``suite/name`` ids, or those of one suite.

    Naming one suite whose packages are missing raises :class:`MissingDependencyError`;
    listing all suites skips those (see :func:`unavailable_suites`)."""
    if suite is not None:
        if suite not in _SUITES:
            raise UnknownEnvError(f"unknown suite {suite!r}; valid: {', '.join(suites())}")
        return [f"{suite}/{n}" for n in _SUITES[suite][0]()]
    out = []
    for s in suites():
        try:
            out += [f"{s}/{n}" for n in _SUITES[s][0]()]
        except MissingDependencyError:
            pass
    return out


def unavailable_suites() -> dict[str, str]:
    """Suites whose optional packages are missing, with the message saying what to install."""
    missing = {}
    for s in suites():
        try:
            _SUITES[s][0]()
        except MissingDependencyError as err:
            missing[s] = str(err)
    return missing


def make(env_id: str, num_envs: int = 1, reset_pool: int = 0, **kwargs) -> Env:
    """Build ``num_envs`` batched copies of ``env_id`` (e.g. ``"gymnax/CartPole-v1"``).

    ``reset_pool > 0`` switches auto-reset to cached mode (see :class:`FunctionalEnv`);
    other keyword arguments go to the suite's constructor."""
    suite, sep, name = env_id.partition("/")
    if not sep or suite not in _SUITES:
        raise UnknownEnvError(
            f"unknown environment suite in {env_id!r}: use 'suite/name' with suite one of {', '.join(suites())}"
        )
    lister, constructor = _SUITES[suite]
    valid = lister()
    if name not in valid:
        raise UnknownEnvError(f"unknown {suite} environment {name!r}; valid: {', '.join(valid)}")
    env = constructor(name, num_envs, **kwargs)
    if reset_pool:
        if not hasattr(env, "with_reset_pool"):
            raise ValueError(f"{env_id} does not support cached resets (reset_pool)")
        env = env.with_reset_pool(reset_pool)
    return env


def _lazy_suite(suite: str) -> None:
    """Register ``bpo_jax.envs.<suite>`` (module with ``names()`` and ``make(name, num_envs, **kw)``)
    without importing it, so a suite's heavy packages load only when that suite is used."""
    import importlib

    module = lambda: importlib.import_module(f"bpo_jax.envs.{suite}")
    register_suite(suite, lambda: module().names(), lambda *a, **kw: module().make(*a, **kw))


def _register_builtin() -> None:
    for suite in ("gymnax", "mjx", "brax", "playground"):
        _lazy_suite(suite)


_register_builtin()
