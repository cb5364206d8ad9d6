"""Plug-ins: modules that add algorithms (:func:`bpo_jax.algorithms.register`) or environment
suites (:func:`bpo_jax.envs.register_suite`) when imported.

A script registers them by importing its own code; the ``bpo-jax`` command loads them with
``--plugin MODULE`` (a module name or a ``.py`` file, repeatable) and by itself loads every
installed package's entry point in the group ``bpo_jax.plugins`` (set ``BPO_JAX_NO_PLUGIN_AUTOLOAD=1``
to start without them).  A run trained with a plug-in records where it came from in its
checkpoints, so that resuming or evaluating it in a process without the plug-in names the
module to load instead of failing on an unknown name."""
from __future__ import annotations

import contextlib
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
_IMPORTLIB_DIR = os.path.dirname(os.path.abspath(importlib.__file__))  # its frames say nothing of the plug-in

# Module name -> the .py file it was loaded from by :func:`load` (a file is named again by its
# path, which a module name found on no sys.path would not reach).
_FILES: dict[str, str] = {}
# (kind, name) -> (the registered object, its origin): what a plug-in registered while it was
# loaded, so that a run records the plug-in that registers a name (not the module its class
# comes from, which may register nothing).  The object: the record holds while it is registered.
_ORIGINS: dict[tuple[str, str], tuple[object, dict[str, str]]] = {}
_installed: Optional[list["Loaded"]] = None
_installed_done: dict[str, "Loaded"] = {}  # entry points loaded (by "name=value"), for a retry after one failed


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
    when it cannot be found or raises while it is imported (``sys.exit`` included); what it
    registered before it failed is taken back, so that it can be loaded again once mended."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plug-in is a module name or a .py file, got {spec!r}")
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(spec))) if _is_path(spec) else None
    with _registering(folder) as added:
        module = _import_file(spec) if _is_path(spec) else _import_module(spec)
    where = _FILES.get(module.__name__) or _here(module) or module.__name__
    return _record(added, spec, module.__name__, {"module": module.__name__, "load": where})


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
        key = f"{point.name}={point.value}"
        if key in _installed_done:  # loaded before another one failed: a function is not called twice
            loaded.append(_installed_done[key])
            continue
        package = getattr(point.dist, "name", None) or "an installed package"
        what = f"installed plug-in {point.name!r} (entry point {point.value!r} of {package})"
        off = f"set {AUTOLOAD_OFF}=1 to start without installed plug-ins"
        try:
            module, attr = point.module, point.attr
        except AttributeError:  # the value does not parse (importlib's pattern did not match)
            raise PluginError(f"{what}: not a module ('my_pkg.plugin') or a module's function ('my_pkg.plugin:setup'); "
                              f"{off}") from None
        try:
            with _registering() as added:
                target = point.load()
                if attr is not None:
                    if not callable(target):
                        raise PluginError(f"{what}: {attr} is not a function to call (its type: {type(target).__name__}); "
                                          f"name the module ({module!r}) or a function that registers; {off}")
                    target()
        except PluginError:
            raise
        except (Exception, SystemExit) as e:
            raise PluginError(f"{what} failed while loading: {_what(e)}; {off}") from e
        origin = {"module": module, "load": module, "package": package, "entry_point": point.value}
        _installed_done[key] = _record(added, point.value, module, origin)
        loaded.append(_installed_done[key])
    _installed = loaded
    return loaded


@contextlib.contextmanager
def _registering(folder: Optional[str] = None):
    """The algorithms and suites registered (added or replaced) in the body, yielded as a dict
    ``{"algorithm": {name: object}, "suite": {...}}`` filled when it ends.  If the body raises
    (a KeyboardInterrupt too), what it registered is taken back, but for what a plug-in it
    loaded in full registered (that one stays loaded), and the modules it first imported from
    ``folder`` (a plug-in file's, where the modules beside it are) are forgotten: once mended,
    loading it again imports them again, registering what they register."""
    registries = {"algorithm": algorithms._REGISTRY, "suite": envs.registry._SUITES}
    before = {kind: dict(registry) for kind, registry in registries.items()}
    modules = set(sys.modules)
    added: dict[str, dict[str, object]] = {}
    try:
        yield added
    except BaseException:
        for kind, registry in registries.items():
            for name in set(registry) | set(before[kind]):
                obj = registry.get(name)
                if obj is before[kind].get(name) or (obj is not None and _ORIGINS.get((kind, name), (None,))[0] is obj):
                    continue
                if name in before[kind]:
                    registry[name] = before[kind][name]
                else:
                    del registry[name]
        for name in set(sys.modules) - modules if folder is not None else ():
            file = getattr(sys.modules[name], "__file__", None)
            if name not in _FILES and file and os.path.abspath(file).startswith(folder + os.sep):
                del sys.modules[name]
        raise
    for kind, registry in registries.items():
        added[kind] = {name: obj for name, obj in registry.items() if before[kind].get(name) is not obj}


def _record(added: dict, spec: str, module: str, origin: dict[str, str]) -> Loaded:
    for kind, objects in added.items():
        for name, obj in objects.items():
            _ORIGINS[kind, name] = obj, origin
    return Loaded(spec, module, tuple(sorted(added["algorithm"])), tuple(sorted(added["suite"])))


def _here(module) -> Optional[str]:
    """The file of a top-level one-file module found in the current folder (on the path under
    ``python -m bpo_jax``, not under the ``bpo-jax`` script, nor from another folder): its path
    names it from anywhere."""
    file = getattr(module, "__file__", None)
    if "." in module.__name__ or not file or os.path.basename(file) == "__init__.py":
        return None
    file = os.path.abspath(file)
    return file if os.path.dirname(file) == os.path.abspath(os.getcwd()) else None


def origins(config) -> dict[str, dict[str, str]]:
    """Where ``config``'s algorithm and suite come from when a plug-in registered them:
    ``{"algorithm": {"name", "module", "load"}, "suite": {...}}`` (``load``: what to load
    again, a module name or a file; an installed plug-in's also names its ``package`` and
    ``entry_point``; absent for the built-ins).  Checkpoints keep it."""
    out = {}
    algo = algorithms.get(config.algo) if config.algo in algorithms.names() else None
    suite = config.env.partition("/")[0]
    registered = {"algorithm": algo, "suite": envs.registry._SUITES.get(suite)}
    for kind, name, module in (("algorithm", config.algo, None if algo is None else type(algo).__module__),
                               ("suite", suite, envs.suite_module(suite))):
        if module is None or built_in(module):
            continue
        obj, origin = _ORIGINS.get((kind, name), (None, None))
        if origin is None or obj is not registered[kind]:  # registered by a script, or again since
            origin = {"module": module, "load": _load_name(module)}
        out[kind] = {"name": name, **origin}
    return out


def built_in(module: str) -> bool:
    """Whether ``module`` (where a registered algorithm's class or suite's constructor is
    defined) is bpo-jax's own."""
    return module == "bpo_jax" or module.startswith("bpo_jax.")


def how_to_load(origin: object, otherwise: str) -> str:
    """What to do to get a recorded plug-in (an :func:`origins` entry) back; ``otherwise``
    where ``origin`` is none (a checkpoint written before plug-ins were recorded)."""
    if not isinstance(origin, dict) or not isinstance(origin.get("load"), str):
        return otherwise
    where = origin["load"]
    if isinstance(origin.get("package"), str):  # an installed package's entry point
        return (f"it came from the installed package {origin['package']}'s plug-in "
                f"{origin.get('entry_point', where)}: install {origin['package']} (its plug-ins load by themselves "
                f"unless {AUTOLOAD_OFF} is set)")
    if origin.get("module") == "__main__":  # registered by a script run directly
        if not where.endswith(".py"):
            return ("an interactive session registered it: register it the same way before loading the run "
                    "(bpo-jax: put the registration in a module and give it to --plugin)")
        return (f"the script {where} registered it: register it the same way before loading the run (bpo-jax: "
                f"--plugin {where}, once the script trains only under `if __name__ == \"__main__\":`; or put the "
                f"registration in a module of its own and give that to --plugin)")
    return f"it came from the plug-in {where}: import it before loading the run (bpo-jax: --plugin {where})"


def _load_name(module: str) -> str:
    if module in _FILES:
        return _FILES[module]
    if module == "__main__":
        file = getattr(sys.modules.get("__main__"), "__file__", None)
        return os.path.abspath(file) if file else "<interactive>"  # python -c, a REPL, a notebook
    return module


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _import_module(spec: str):
    if not all(part.isidentifier() for part in spec.split(".")):
        raise PluginError(f"plug-in {spec}: neither a module name (dotted Python names, such as my_pkg.plugin) nor a "
                          ".py file's path")
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and (spec == e.name or spec.startswith(e.name + ".")):
            local = os.path.join(os.curdir, *spec.split(".")) + ".py"
            hint = f"; for the file here, give its path: --plugin {local}" if os.path.isfile(local) else \
                " (add its folder to PYTHONPATH, or give a .py file's path)"
            raise PluginError(f"plug-in {spec}: no module named {e.name!r} on the Python path{hint}") from None
        raise PluginError(f"plug-in {spec} failed while loading: {_what(e)}") from e
    except (Exception, SystemExit) as e:
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
    other = _findable(name)
    if other is not None and os.path.realpath(other) != os.path.realpath(path):
        # Loaded as `name`, the file would stand in for that module wherever it is imported later
        # (`export --format onnx` with a plug-in named onnx.py would say that onnx is not installed).
        raise PluginError(f"plug-in {spec}: its name {name!r} is that of the module {other}, which it would hide; "
                          "rename the file")
    folder = os.path.dirname(path)
    if folder not in sys.path:  # like a script's folder: the plug-in can import the modules beside it
        sys.path.append(folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look their module up
    try:
        module_spec.loader.exec_module(module)
    except BaseException as e:  # a half-run module must not pass for a loaded one (a Ctrl-C included)
        sys.modules.pop(name, None)
        if isinstance(e, (Exception, SystemExit)):
            raise PluginError(f"plug-in {spec} failed while loading: {_what(e, path)}") from e
        raise
    _FILES[name] = path
    return module


def _findable(name: str) -> Optional[str]:
    """The file the top-level module ``name`` would be imported from (None: none, or no file)."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(found, "origin", None)
    return origin if found is not None and found.has_location and isinstance(origin, str) else None


def _what(e: BaseException, path: Optional[str] = None) -> str:
    """``file:line: Type: message`` at the innermost frame of the plug-in's file ``path`` (where
    known and on the traceback), else outside bpo_jax and importlib: the plug-in's line that
    raised, or its call that bpo_jax refused.  A SyntaxError is placed where Python found it."""
    if isinstance(e, SyntaxError) and e.filename and e.lineno:
        return f"{e.filename}:{e.lineno}: {type(e).__name__}: {e.msg}"
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if path is not None and os.path.abspath(f.filename) == path]
    frames = own or [f for f in frames if not f.filename.startswith((_PACKAGE_DIR, _IMPORTLIB_DIR, "<frozen"))]
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    if isinstance(e, SystemExit):  # sys.exit(...) at import: the command would end there, untold
        return f"{where}it called sys.exit({'' if e.code is None else repr(e.code)})"
    return f"{where}{type(e).__name__}" + (f": {first_line(e)}" if str(e).strip() else "")
