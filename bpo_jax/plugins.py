"""Plug-ins: modules that add algorithms (:func:`bpo_jax.algorithms.register`) or environment
suites (:func:`bpo_jax.envs.register_suite`) when imported.

A script registers them by importing its own code; the ``bpo-jax`` command loads them with
``--plugin MODULE`` (a module name or a ``.py`` file, repeatable) and by itself loads every
installed package's entry point in the group ``bpo_jax.plugins`` (set ``BPO_JAX_NO_PLUGIN_AUTOLOAD=1``
to start without them).  A run trained with a plug-in records where it came from in its
checkpoints, so that resuming or evaluating it in a process without the plug-in names the
module to load instead of failing on an unknown name."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import traceback
from typing import Optional

from bpo_jax import algorithms, envs
from bpo_jax.errors import first_line

GROUP = "bpo_jax.plugins"
AUTOLOAD_OFF = "BPO_JAX_NO_PLUGIN_AUTOLOAD"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Module name -> the .py file it was loaded from by :func:`load` (a file is named again by its
# path, which a module name found on no sys.path would not reach).
_FILES: dict[str, str] = {}
_installed: Optional[list["Loaded"]] = None


class PluginError(ValueError):
    """A plug-in that cannot be found or failed while it was imported."""


@dataclasses.dataclass(frozen=True)
class Loaded:
    """One loaded plug-in: how it was named, its module and what it added."""

    spec: str
    module: str
    algorithms: tuple[str, ...]
    suites: tuple[str, ...]


def load(spec: str) -> Loaded:
    """Import the plug-in ``spec``: a module name (``my_pkg.algos``, found on ``sys.path``) or a
    path to a ``.py`` file (its folder is appended to ``sys.path`` so that it can import the
    modules beside it).  Loading one again is a no-op.  Raises :class:`PluginError` (one line)
    when it cannot be found or raises while it is imported."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plug-in is a module name or a .py file, got {spec!r}")
    before = set(algorithms.names()), set(envs.suites())
    module = _import_file(spec) if _is_path(spec) else _import_module(spec)
    return Loaded(spec, module.__name__, tuple(sorted(set(algorithms.names()) - before[0])),
                  tuple(sorted(set(envs.suites()) - before[1])))


def load_installed() -> list[Loaded]:
    """Import every installed entry point of the group ``bpo_jax.plugins`` (once per process;
    none where ``$BPO_JAX_NO_PLUGIN_AUTOLOAD`` is set).  An entry point names a module
    (``mine = "my_pkg.bpo_plugin"``), or a function in one that registers (``"my_pkg:setup"``),
    which is called without arguments."""
    global _installed
    if _installed is not None:
        return _installed
    if os.environ.get(AUTOLOAD_OFF):
        _installed = []
        return _installed
    from importlib.metadata import entry_points

    loaded = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        package = getattr(point.dist, "name", None) or "an installed package"
        before = set(algorithms.names()), set(envs.suites())
        try:
            target = point.load()
            if point.attr is not None and callable(target):
                target()
        except Exception as e:
            raise PluginError(f"installed plug-in {point.name!r} (entry point {point.value!r} of {package}) failed "
                              f"while loading: {_what(e)}; set {AUTOLOAD_OFF}=1 to start without installed plug-ins"
                              ) from e
        loaded.append(Loaded(point.value, point.module, tuple(sorted(set(algorithms.names()) - before[0])),
                             tuple(sorted(set(envs.suites()) - before[1]))))
    _installed = loaded
    return loaded


def origins(config) -> dict[str, dict[str, str]]:
    """Where ``config``'s algorithm and suite come from when a plug-in registered them:
    ``{"algorithm": {"name", "module", "load"}, "suite": {...}}`` (``load``: what to load
    again, a module name or a file; absent for the built-ins).  Checkpoints keep it."""
    out = {}
    algo_module = type(algorithms.get(config.algo)).__module__ if config.algo in algorithms.names() else None
    suite = config.env.partition("/")[0]
    for kind, name, module in (("algorithm", config.algo, algo_module), ("suite", suite, envs.suite_module(suite))):
        if module is None or module == "bpo_jax" or module.startswith("bpo_jax."):
            continue
        out[kind] = {"name": name, "module": module, "load": _load_name(module)}
    return out


def how_to_load(origin: object, otherwise: str) -> str:
    """What to do to get a recorded plug-in (an :func:`origins` entry) back; ``otherwise``
    where ``origin`` is none (a checkpoint written before plug-ins were recorded)."""
    if not isinstance(origin, dict) or not isinstance(origin.get("load"), str):
        return otherwise
    where = origin["load"]
    if origin.get("module") == "__main__":  # registered by a script run directly
        return f"the script {where} registered it: register it the same way before loading the run"
    return f"it came from the plug-in {where}: import it before loading the run (bpo-jax: --plugin {where})"


def _load_name(module: str) -> str:
    if module in _FILES:
        return _FILES[module]
    if module == "__main__":
        return os.path.abspath(getattr(sys.modules["__main__"], "__file__", None) or "<interactive>")
    return module


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _import_module(spec: str):
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and (spec == e.name or spec.startswith(e.name + ".")):
            local = os.path.join(os.curdir, *spec.split(".")) + ".py"
            hint = f"; for the file here, give its path: --plugin {local}" if os.path.isfile(local) else \
                " (add its folder to PYTHONPATH, or give a .py file's path)"
            raise PluginError(f"plug-in {spec}: no module named {e.name!r} on the Python path{hint}") from None
        raise PluginError(f"plug-in {spec} failed while loading: {_what(e)}") from e
    except Exception as e:
        raise PluginError(f"plug-in {spec} failed while loading: {_what(e)}") from e


def _import_file(spec: str):
    path = os.path.abspath(os.path.expanduser(spec))
    if not path.endswith(".py"):
        raise PluginError(f"plug-in {spec}: a plug-in file is a Python file ending in .py")
    if not os.path.isfile(path):
        raise PluginError(f"plug-in {spec}: no such file")
    name = os.path.basename(path)[:-3]
    if not name.isidentifier():
        raise PluginError(f"plug-in {spec}: {name!r} is not a Python module name; rename the file "
                          "(letters, digits and '_')")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if os.path.abspath(getattr(loaded, "__file__", None) or "") == path:
            return loaded
        raise PluginError(f"plug-in {spec}: a module named {name!r} is already imported (from "
                          f"{getattr(loaded, '__file__', None) or 'built in'}); rename the file")
    folder = os.path.dirname(path)
    if folder not in sys.path:  # like a script's folder: the plug-in can import the modules beside it
        sys.path.append(folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look their module up
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PluginError(f"plug-in {spec} failed while loading: {_what(e, path)}") from e
    _FILES[name] = path
    return module


def _what(e: BaseException, path: Optional[str] = None) -> str:
    """``file:line: Type: message`` at the innermost frame of the plug-in's file ``path`` (where
    known and on the traceback), else outside bpo_jax and importlib: the plug-in's line that
    raised, or its call that bpo_jax refused."""
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if path is not None and os.path.abspath(f.filename) == path]
    frames = own or [f for f in frames if not f.filename.startswith(_PACKAGE_DIR) and not f.filename.startswith("<frozen")]
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    return f"{where}{type(e).__name__}: {first_line(e)}"
