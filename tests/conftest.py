"""Test-session set-up for a suite whose cost is mostly XLA compilation (an MJX program takes
20-130 s to compile on a 2-core CPU).

* One persistent XLA compilation cache shared by every test process: a CLI subprocess and the
  in-process reference it is compared with, a run and its resumption, compile each program
  once.  It lives in a fresh temporary folder per session (``$BPO_JAX_CACHE_DIR`` if set), so a
  session never sees another session's programs; xdist workers and CLI subprocesses inherit it
  through the environment.  Tests that measure compilation pass their own folder or
  ``--no-compile-cache``.
* Cheap compiles: ``XLA_FLAGS`` carries :data:`bpo_jax.runner.FAST_COMPILE` for the session (set
  here, before any backend starts; workers and subprocesses inherit it), so a program compiles in
  about a quarter of the time at XLA:CPU's defaults; learning runs pass ``tests.compiling.FULL``
  (see that module).
* Scheduling for ``pytest -n 2 --dist loadgroup``: a module's tests stay on one worker (they
  share module-scoped fixtures) unless the module sets ``SPLIT_ACROSS_WORKERS = True`` (its
  tests are independent and heavy), or a test names its own ``xdist_group``.  Tests marked
  ``slow`` are handed out first, so that no long test starts last and leaves a worker idle.
* Tiers: pyproject's ``addopts`` deselect tests marked ``extended`` (the same checks on further
  variants: more MuJoCo families, MuJoCo Warp, brax Ant, four devices, Atari on two devices and
  resumed, the MJX learning run), so that the default suite stays under 10 minutes on a 2-core
  CPU; ``-m extended`` runs them, and CI runs both.
* ``BPO_JAX_REQUIRE_EXTRAS=1`` (CI sets it): ``pytest.importorskip`` of a package that one of the
  project's extras installs raises instead of skipping, so a broken install fails CI rather than
  silently skipping a suite's tests.
* A check that the groups took: pytest 9.2 with pytest-xdist 3.8 drops them without a word (the
  test extra pins pytest below 9.2); the session stops with a one-line message if they did.
"""
import gc
import importlib
import os
import shutil
import tempfile

import pytest

from tests.compiling import fast_compile_flags

_CREATED = None
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # not twice in a worker
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {fast_compile_flags()}".strip()
# Top-level modules that `pip install -e ".[all,test]"` provides.
EXTRAS_MODULES = {"torch", "rsl_rl", "envpool", "ale_py", "gymnasium", "mujoco", "brax", "mujoco_playground", "onnx",
                  "onnxruntime"}

if os.environ.get("BPO_JAX_REQUIRE_EXTRAS"):
    _importorskip = pytest.importorskip

    def _import_or_fail(modname, *args, **kwargs):
        if modname.partition(".")[0] in EXTRAS_MODULES:
            return importlib.import_module(modname)
        return _importorskip(modname, *args, **kwargs)

    pytest.importorskip = _import_or_fail


def pytest_configure(config):
    global _CREATED
    if "BPO_JAX_CACHE_DIR" not in os.environ:  # the controller; xdist workers inherit the variable
        _CREATED = os.environ["BPO_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="bpo-jax-test-xla-")
    import jax

    from bpo_jax import runner

    runner.enable_compilation_cache()
    # In-process tests run on one CPU device whatever ran before them: a `bpo-jax train` called
    # in process would otherwise make the cores devices (runner.use_cpu_cores) for every later test
    # of that process, whose comparisons with one-device runs then differ in rounding, and whose
    # samples differ.  Tests of several devices run in subprocesses with their own XLA_FLAGS.
    jax.config.update("jax_num_cpu_devices", 1)
    if config.pluginmanager.hasplugin("xdist") and config.getvalue("dist") == "loadgroup":  # the controller
        config.pluginmanager.register(_GroupCheck(), "bpo-jax-xdist-group-check")


def pytest_sessionfinish(session):
    # pytest then collects garbage five times over everything the session built (~0.5 s each
    # after a worker's share of the suite: JAX's traces and programs), and pytest-xdist's
    # worker, still busy 5 s after the controller's shutdown, sends itself a SIGINT, which lands
    # in JAX's gc callback ("Exception ignored in _xla_gc_callback ... KeyboardInterrupt").
    # Nothing is left to find there; per-test unraisable exceptions were reported already.
    gc.freeze()


def pytest_unconfigure(config):
    if _CREATED:
        shutil.rmtree(_CREATED, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks into the node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None and not getattr(item.module, "SPLIT_ACROSS_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise


class _GroupCheck:
    """The controller of ``pytest -n N --dist loadgroup``: every test this suite collects carries
    an xdist group but those of SPLIT_ACROSS_WORKERS modules, so a worker that reports a node id
    without a group suffix from another module has lost them (pytest 9.2 with pytest-xdist 3.8:
    the scheduler would hand a module's tests to both workers and build their fixtures twice)."""

    @pytest.hookimpl
    def pytest_xdist_node_collection_finished(self, node, ids):
        def grouped_module(path: str) -> bool:  # the controller has no items to ask, only ids
            with open(os.path.join(str(node.config.rootpath), path)) as f:
                return "\nSPLIT_ACROSS_WORKERS = True" not in f.read()

        ungrouped = {i.partition("::")[0] for i in ids if "@" not in i}
        if any(grouped_module(path) for path in ungrouped):
            pytest.exit(f"pytest-xdist lost the test groups on {node.gateway.id} (pytest {pytest.__version__}); "
                        f"install the test extra's pins: pip install -e '.[test]'", returncode=4)
