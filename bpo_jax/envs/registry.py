"""``make("suite/name")``: one entry point for every environment suite.

Suites register a lister (the valid names), a constructor and a one-line description.
The built-in suites are registered without importing them, and their listers read the
names without importing the simulators (see :func:`source_names`), so listing every
environment (:func:`describe_suites`) is fast and a missing optional dependency only
matters when that suite is used.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import os
import platform
import re
import sys
from dataclasses import dataclass
from typing import Callable, Optional

from bpo_jax import console
from bpo_jax.envs.base import Env
from bpo_jax.envs.contract import EnvContractError
from bpo_jax.envs.options import is_int
from bpo_jax.errors import PLUGIN_HINT, first_line, unknown_name


class UnknownEnvError(ValueError):
    """The requested suite or environment does not exist; the message lists valid choices."""


class MissingDependencyError(ImportError):
    """A suite's optional packages are not installed; the message says what to install."""


class MujocoGLError(ImportError):
    """MuJoCo cannot be imported with the ``MUJOCO_GL`` environment variable as set (an unknown
    value, or an OpenGL backend whose library is missing); the message says what to set."""


@dataclass(frozen=True)
class SuiteInfo:
    """One suite as :func:`describe_suites` lists it."""

    name: str  # e.g. "gymnax"
    description: str  # one line
    ids: tuple[str, ...]  # "suite/name" ids, empty when unavailable
    unavailable_reason: Optional[str] = None  # what to install, when the suite's packages are missing
    unbuildable: tuple[str, ...] = ()  # listed ids that cannot be built here (assets missing)
    unbuildable_reason: Optional[str] = None  # why, and how to provide what they need


@dataclass(frozen=True)
class _Suite:
    names: Callable[[], list[str]]
    constructor: Callable[..., Env]
    description: str
    host_state: bool = False
    # Why a name the suite does not list is not one of its environments (None: it is unknown).
    unlisted: Callable[[str], Optional[str]] = lambda name: None
    # The listed names that cannot be built on this machine and why (None: all can).
    unbuildable: Callable[[], Optional[tuple[list[str], str]]] = lambda: None


_SUITES: dict[str, _Suite] = {}


def require(module: str, suite: str, extra: str, load: bool = True) -> None:
    """Raise :class:`MissingDependencyError` naming the pip extra unless ``module`` imports.

    ``load=False`` only checks that it is installed, without importing it (listers: importing
    a simulator takes seconds)."""
    try:
        if load:
            # MJX prints "Failed to import warp: ..." and "Failed to import mujoco_warp: ..." at
            # its import where warp-lang (an option for impl='warp' only, which checks it
            # itself) is missing: above every run's first line and above one-line errors.
            with console.dropping_lines("Failed to import warp:", "Failed to import mujoco_warp:"):
                importlib.import_module(module)
        elif not installed(module):
            raise ImportError(f"No module named {module!r}")
    except ImportError as err:
        raise MissingDependencyError(
            f"the {suite}/ suite needs {module!r} ({err}); install it with: pip install 'bpo-jax[{extra}]'"
        ) from None
    except Exception as err:  # an import that raised something else: MuJoCo's OpenGL set-up?
        gl_error = mujoco_gl_error(err)
        if gl_error is None:
            raise
        raise gl_error from None


# What MuJoCo accepts for MUJOCO_GL per platform (mujoco/rendering/classic/gl_context.py), and
# the shared library each backend loads through PyOpenGL (ctypes.util.find_library names).
_GL_BACKENDS = {"Linux": ("egl", "glfw", "osmesa"), "Darwin": ("cgl", "glfw"), "Windows": ("glfw", "wgl")}
_GL_LIBRARIES = {"osmesa": "OSMesa", "egl": "EGL", "glx": "GL"}
# mujoco's modules that set OpenGL up (mujoco 3.x: gl_context.py, renderer.py at the top level).
_GL_MODULES = ("rendering", "osmesa", "egl", "glfw", "cgl", "wgl", "glx")


def mujoco_gl_error(err: BaseException) -> Optional["MujocoGLError"]:
    """The one-line :class:`MujocoGLError` for ``err``, an exception raised while importing a
    module, if it came from MuJoCo's OpenGL set-up under a ``MUJOCO_GL`` the user set; else None.

    ``import mujoco`` picks an OpenGL backend from ``MUJOCO_GL``: an unknown value raises a
    RuntimeError, and a backend whose library is missing (e.g. ``osmesa`` without libOSMesa)
    an AttributeError from inside PyOpenGL, each with a long traceback.  Training never renders
    (only ``bpo-jax eval --video`` does), so unsetting it is always a way out."""
    value = os.environ.get("MUJOCO_GL", "").strip()
    spec = _find_spec("mujoco")
    roots = [os.path.join(os.path.realpath(r), "") for r in (spec.submodule_search_locations or [])] if spec else []
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(os.path.realpath(tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    inside = [os.path.relpath(f, r).split(os.sep) for f in frames for r in roots if f.startswith(r)]
    if not value or not any(p[0] in _GL_MODULES or p[-1] in ("gl_context.py", "renderer.py") for p in inside):
        return None  # not raised by mujoco's OpenGL set-up
    detail = f"{type(err).__name__}: {first_line(err)}"
    library = _GL_LIBRARIES.get(value.lower())
    if library is not None:
        import ctypes.util

        if ctypes.util.find_library(library) is None:
            detail += f"; no lib{library} found"
    backends = _GL_BACKENDS.get(platform.system(), ("glfw",))
    options = ", ".join(backends[:-1]) + f" or {backends[-1]}" if len(backends) > 1 else backends[0]
    return MujocoGLError(
        f"MUJOCO_GL={value} cannot be used here (importing mujoco failed: {detail}): unset MUJOCO_GL "
        f"(training does not render), or set it to {options} with that library installed"
    )


def installed(module: str) -> bool:
    """Whether dotted ``module`` is installed, found without importing it or its parents."""
    return _find_spec(module) is not None


def _find_spec(module: str):
    """``module``'s ModuleSpec or None, found without importing anything (``importlib.util.find_spec``
    imports the parents of a dotted name, so only the top-level name goes through it)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # e.g. a module in sys.modules without __spec__
        return None
    for part in rest:
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(f"{spec.name}.{part}", spec.submodule_search_locations)
    return spec


def source_names(module: str, variable: str) -> Optional[list[str]]:
    """The string keys (dict) or items (list, tuple) of the literal assigned to the module-level
    ``variable`` in ``module``'s source file, read without importing it; None if the file or a
    plain literal of strings is not found (callers then import the module).

    Reading a suite's registry this way takes milliseconds, where importing the simulator that
    defines it takes seconds."""
    spec = _find_spec(module)
    if spec is None or not (spec.origin or "").endswith(".py"):
        return None
    try:
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read(), spec.origin)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets):
            items = node.value.keys if isinstance(node.value, ast.Dict) else getattr(node.value, "elts", None)
            if items is not None and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in items):
                return [k.value for k in items]
            return None
    return None


def registry_names(module: str, variable: str, live: Callable[[], list[str]]) -> list[str]:
    """The names in a simulator's registry, the dict or list ``module.variable``.

    Once ``module`` is imported, ``live()`` (names registered at run time count); before that
    the literal in its source (:func:`source_names`), so that listing does not import the
    simulator; ``live()`` again if the source is not a plain literal."""
    if module not in sys.modules:
        names = source_names(module, variable)
        if names is not None:
            return names
    return live()


def register_suite(suite: str, names: Callable[[], list[str]], constructor: Callable[..., Env],
                   description: str, replace: bool = False, host_state: bool = False) -> None:
    """Add a suite: ``names()`` lists its environments, ``constructor(name, num_envs, **kw)`` builds
    one; ``description`` is the one line ``bpo-jax envs`` prints beside the suite.  ``names()`` raises
    :class:`MissingDependencyError` when the suite's packages are missing.

    ``host_state``: the suite's simulators keep their state outside the EnvState (emulators
    stepped through custom calls or host callbacks).  A checkpoint cannot hold it, so a resumed
    run starts every episode again (:attr:`bpo_jax.train.Trainer.restart_envs`), and XLA cannot
    split such calls over devices, so its runs train on one device (see :func:`host_state`).

    A suite name already registered (a built-in one such as ``gymnax``, or one added before) is
    refused with a ValueError unless ``replace=True``, so that a plug-in cannot silently take
    over ``gymnax/...`` ids."""
    if not isinstance(suite, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suite):
        raise ValueError(f"register_suite: suite must be a word of letters, digits, '_', '.' or '-' (ids are "
                         f"'suite/name'; it names run directories), got {suite!r}")
    for what, value in (("names", names), ("constructor", constructor)):
        if not callable(value):
            raise TypeError(f"register_suite: {what} must be a function (names() lists the suite's environments, "
                            f"constructor(name, num_envs, **options) builds one), got {value!r}")
    if not isinstance(description, str):
        raise TypeError(f"register_suite: description must be a string (one line), got {description!r}")
    if suite in _SUITES and not replace:
        kind = "a built-in suite" if suite in _BUILTIN else "already registered"
        raise ValueError(f"register_suite: {suite!r} is {kind}; pass replace=True to replace it, "
                         "or register under another name")
    _SUITES[suite] = _Suite(names, constructor, description, host_state)


def suites() -> list[str]:
    return sorted(_SUITES)


def suite_module(suite: str) -> str | None:
    """The module that registered ``suite`` (its constructor's; None for an unknown suite)."""
    registered = _SUITES.get(suite)
    return None if registered is None else getattr(registered.constructor, "__module__", None)


def host_state(env_id: str) -> bool:
    """Whether ``env_id``'s suite was registered with ``host_state`` (False for an unknown id)."""
    suite = _SUITES.get(env_id.partition("/")[0])
    return suite is not None and suite.host_state


def describe_suites() -> list[SuiteInfo]:
    """Every suite, sorted by name, with its description and ids (or why it is unavailable)."""
    out = []
    for s in suites():
        try:
            ids = tuple(f"{s}/{n}" for n in _names(s))
            missing, why = _unbuildable(s)
            out.append(SuiteInfo(s, _SUITES[s].description, ids, None, tuple(f"{s}/{n}" for n in missing), why))
        except MissingDependencyError as err:
            out.append(SuiteInfo(s, _SUITES[s].description, (), str(err)))
        except ValueError as err:  # a plug-in's lister: one broken suite does not hide the others
            out.append(SuiteInfo(s, _SUITES[s].description, (), str(err)))
    return out


def _unbuildable(suite: str) -> tuple[tuple[str, ...], Optional[str]]:
    """(names, why) of ``suite``'s listed environments that cannot be built here; a hook that
    fails marks nothing (a listing is no place to fail: building one says what is wrong)."""
    try:
        missing, why = _SUITES[suite].unbuildable() or ((), None)
        return (tuple(missing), str(why)) if missing else ((), None)
    except Exception:
        return (), None


def _names(suite: str) -> list[str]:
    """``suite``'s names() as a list of strings; a plug-in's lister that fails or returns
    something else (a str would match ids by substring) is a one-line EnvContractError."""
    try:
        listed = _SUITES[suite].names()
    except (MissingDependencyError, MujocoGLError):
        raise
    except Exception as err:
        raise EnvContractError(f"the {suite}/ suite's names() failed: {type(err).__name__}: {first_line(err)}") from None
    shown = repr(listed)[:80]
    try:  # any iterable of names (a generator too), but not one string: `in` would match its substrings
        names = None if isinstance(listed, (str, bytes)) else list(listed)
    except TypeError:
        names = None
    if names is None or not all(isinstance(n, str) for n in names):
        raise EnvContractError(f"the {suite}/ suite's names() must return a list of names (strings), got {shown}")
    return names


def list_envs(suite: str | None = None) -> list[str]:
    """All ``suite/name`` ids, or those of one suite.

    Naming one suite whose packages are missing raises :class:`MissingDependencyError`;
    listing all suites skips those (see :func:`describe_suites`)."""
    if suite is None:
        return [i for info in describe_suites() for i in info.ids]
    if suite not in _SUITES:
        raise UnknownEnvError(unknown_name("suite", suite, suites()))
    return [f"{suite}/{n}" for n in _names(suite)]


def make(env_id: str, num_envs: int = 1, reset_pool: int = 0, **kwargs) -> Env:
    """Build ``num_envs`` batched copies of ``env_id`` (e.g. ``"gymnax/CartPole-v1"``).

    ``reset_pool > 0`` switches auto-reset to cached mode (see :class:`FunctionalEnv`);
    other keyword arguments go to the suite's constructor.  Bad arguments raise one-line
    ValueErrors naming them, before anything is imported or traced."""
    if not isinstance(env_id, str):
        raise ValueError(f"env must be a 'suite/name' string such as 'gymnax/CartPole-v1', got {env_id!r}")
    if not is_int(num_envs) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if not is_int(reset_pool) or reset_pool < 0:
        raise ValueError(f"reset_pool must be >= 0, an integer (0: fresh resets), got {reset_pool!r}")
    num_envs, reset_pool = int(num_envs), int(reset_pool)
    suite, sep, name = env_id.partition("/")
    if not sep or suite not in _SUITES:
        raise UnknownEnvError(
            f"unknown environment suite in {env_id!r}: use 'suite/name' with suite one of {', '.join(suites())}"
            + PLUGIN_HINT)
    valid = _names(suite)
    if name not in valid:
        raise UnknownEnvError(_SUITES[suite].unlisted(name) or unknown_name(f"{suite} environment", name, valid))
    env = _construct(suite, env_id, name, num_envs, kwargs)
    if reset_pool:
        if not hasattr(env, "with_reset_pool"):
            raise ValueError(f"{env_id} does not support cached resets (`reset_pool`)")
        env = env.with_reset_pool(reset_pool)
    return env


def _construct(suite: str, env_id: str, name: str, num_envs: int, kwargs: dict) -> Env:
    """The suite's constructor called for ``env_id``; a plug-in suite's failure is one line naming
    the suite and where in its code (a RuntimeError was a traceback, a ValueError named no
    suite), and what it returns must be an env of ``num_envs`` copies (one built with another
    count failed after the run folder was made)."""
    from bpo_jax.envs.contract import raised_in

    constructor = _SUITES[suite].constructor
    if suite in _BUILTIN:
        env = constructor(name, num_envs, **kwargs)
    else:
        try:
            env = constructor(name, num_envs, **kwargs)
        except (ImportError, EnvContractError):
            raise
        except ValueError as e:  # the suite's own refusal of an option: its words, named
            raise ValueError(f"{env_id}: {first_line(e)}") from None
        except Exception as e:
            raise EnvContractError(f"the {suite}/ suite's constructor failed for {env_id}"
                                   f"{raised_in(e, constructor)}") from None
    if not (hasattr(env, "reset") and hasattr(env, "step")):
        raise EnvContractError(f"the {suite}/ suite's constructor returned {type(env).__name__} for {env_id}, "
                               "not an environment (one with reset and step)")
    built = getattr(env, "num_envs", None)
    if built != num_envs:
        raise EnvContractError(f"the {suite}/ suite's constructor built {env_id} with num_envs {built!r}; it was "
                               f"asked for {num_envs}")
    return env


# Built-in suites: module bpo_jax.envs.<suite> (with ``names()`` and ``make(name, num_envs,
# **kw)``) and the line that describes it.
_BUILTIN = {
    "gymnax": "gymnax's pure-JAX tasks: classic control, MinAtar, bsuite and misc",
    "mjx": "Gymnasium's MuJoCo locomotion tasks (v4, v5) reimplemented on MJX, checked against Gymnasium",
    "brax": "brax's own tasks on its physics pipelines (default backend mjx)",
    "playground": "MuJoCo Playground: DM Control Suite ports; locomotion and manipulation need MuJoCo Menagerie",
    "atari": "Arcade Learning Environment games (ale-py ROMs) with SB3's Atari preprocessing; EnvPool XLA or ale-py",
    "isaaclab": "IsaacLab tasks through rsl_rl's VecEnv, stepped from the host (bpo_jax.host_loop); needs Isaac Sim; "
                "lists the paper's tasks, and any Isaac-* task IsaacLab registers trains",
}
_HOST_STATE = ("atari", "isaaclab")  # simulators outside JAX (register_suite's host_state)


def _lazy_suite(suite: str, description: str) -> None:
    """Register ``bpo_jax.envs.<suite>`` without importing it, so a suite's heavy packages load
    only when that suite is used."""
    module = lambda: importlib.import_module(f"bpo_jax.envs.{suite}")
    register_suite(suite, lambda: module().names(), lambda *a, **kw: module().make(*a, **kw), description,
                   host_state=suite in _HOST_STATE)
    _SUITES[suite] = dataclasses.replace(
        _SUITES[suite], unlisted=lambda name: getattr(module(), "unlisted", lambda _: None)(name),
        unbuildable=lambda: getattr(module(), "unbuildable", lambda: None)())


def _register_builtin() -> None:
    for suite, description in _BUILTIN.items():
        _lazy_suite(suite, description)


_register_builtin()
