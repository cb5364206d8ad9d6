"""Shared by the benchmark scripts: timing of compiled functions, machine description, output."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _this_checkout_unless_pythonpath() -> None:
    """Put this checkout on sys.path after PYTHONPATH's entries and before site-packages: the
    scripts measure the bpo_jax of a checkout PYTHONPATH names, else this one's, never the
    installed package (a script run from a second checkout measured the installed code)."""
    root = os.path.realpath(ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != root]
    site = next((i for i, p in enumerate(sys.path) if os.path.basename(p) in ("site-packages", "dist-packages")),
                len(sys.path))
    sys.path.insert(site, ROOT)


_this_checkout_unless_pythonpath()


def compile_and_time(fn, args, repeats: int):
    """jit ``fn``, compile it for ``args`` (a tuple), then run it ``repeats`` times.
    Returns (compile seconds, [run seconds], output of the last run)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    runs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return compile_s, runs, out


def final_return(metrics) -> float:
    """Mean over seeds of the mean return of episodes ending in the last 10% of updates
    (the definition of summary.json's final_episode_return)."""
    # Imported here: before_after.py imports this module beside another checkout's bpo_jax.
    from bpo_jax.reporting import tail_returns

    per_seed = tail_returns({k: np.atleast_2d(np.asarray(v)) for k, v in metrics.items()})
    return float(np.nanmean(per_seed))


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "backend": jax.default_backend(), "device": str(jax.devices()[0]), "devices": len(jax.devices()), "jax": jax.__version__,
            "python": platform.python_version(), "load_avg_1min_at_start": load}


def write_results(results: dict, path: str | None, echo: bool = True) -> None:
    """Print the results as JSON (if ``echo``) and, if ``path`` is given, write them there.

    A file that cannot be written (checked by ``out_path`` at the start, but the disk can fill
    or the folder go since) must not lose a measurement that took minutes: the JSON goes to
    stdout instead, with a one-line error, and the script exits 1."""
    text = json.dumps(results, indent=2, default=float)
    if echo:
        print(text)
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")
    except OSError as e:
        if not echo:
            print(text, flush=True)
        raise SystemExit(f"error: cannot write the results to {path} ({e.strerror or e}); "
                         "they are printed on stdout above") from None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# argparse types shared by the scripts: a bad value becomes parser.error's one line (exit 2)
# before any compile or training starts, instead of a traceback minutes in.

def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def int_between(low: int, high: int):
    """argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value
    return parse


def comma_list(item, what: str = "values"):
    """argparse type: comma-separated values, each converted by ``item`` (a callable that raises
    ValueError or ArgumentTypeError on a bad one); at least one value."""
    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        out = []
        for p in parts:
            try:
                out.append(item(p))
            except argparse.ArgumentTypeError:
                raise
            except ValueError:
                raise argparse.ArgumentTypeError(f"bad value {p!r} in {text!r}: expected {what}") from None
        return out
    return parse


def one_of(choices, what: str):
    """argparse item type: ``text`` if it is in ``choices`` (a collection or a callable giving one,
    called only when a value is checked so that importing this module stays cheap)."""
    def check(text: str) -> str:
        valid = choices() if callable(choices) else choices
        if text not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; valid: {', '.join(valid)}")
        return text
    return check


def _algorithms():
    from bpo_jax import algorithms

    return algorithms.names()


def _presets():
    from bpo_jax import presets

    return presets.names()


algo_name = one_of(_algorithms, "algorithm")
preset_name = one_of(_presets, "preset")
positive_ints = comma_list(positive_int, "positive integers")
floats = comma_list(float, "numbers")
algo_names = comma_list(algo_name, "algorithms")


def env_id(text: str) -> str:
    """A known ``suite/name`` id.  A suite whose packages are missing cannot list its ids here;
    such an id passes, and building the env later names what to install."""
    from bpo_jax import envs

    suite, sep, _ = text.partition("/")
    if not sep or suite not in envs.suites():
        raise argparse.ArgumentTypeError(f"unknown env {text!r}: expected suite/name with suite one of "
                                         f"{', '.join(envs.suites())}")
    try:
        ids = envs.list_envs(suite)
    except envs.MissingDependencyError:
        return text
    if text not in ids:
        shown = ", ".join(ids[:12]) + (", ..." if len(ids) > 12 else "")
        raise argparse.ArgumentTypeError(f"unknown env {text!r}; {suite} has: {shown}")
    return text


env_ids = comma_list(env_id, "env ids")


def existing_path(text: str) -> str:
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return text


def out_path(text: str) -> str:
    """argparse type of ``--out``: a file path that can be written, checked before the
    measurement, so that a typo does not surface after it.  A folder that does not exist yet is
    fine where it can be made (``write_results`` makes it); nothing is created here."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got ''")
    if os.path.isdir(text) or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"{text} names a folder; give a file path such as {os.path.join(text, 'results.json')}")
    folder = os.path.dirname(os.path.abspath(text))
    while not os.path.exists(folder):  # the nearest existing folder above: the one written in
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {folder} is a file, not a folder")
    # A real write, not os.access: as root access() says yes to /proc, where nothing can be made.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".bpo-jax-out-check-", dir=folder))
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {text}: nothing can be created in {folder} ({e.strerror or e})") from None
    if os.path.exists(text) and not os.access(text, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the file is read-only")
    return text


def env_problem(env: str) -> str | None:
    """Why ``env`` cannot be measured by these scripts, or None.  They time compiled JAX
    programs, so an isaaclab/ env (stepped from the host, in torch) is refused; and a suite whose
    packages are missing is found now by building one env, not minutes into a run."""
    from bpo_jax import envs

    if env.startswith("isaaclab/"):
        return (f"{env} is stepped from the host (torch) and cannot be timed as a JAX program here; "
                "measure the isaaclab/ adapter with benchmarks/throughput_isaaclab.py")
    try:
        envs.make(env, num_envs=1)
    except (envs.MissingDependencyError, envs.MujocoGLError, envs.UnknownEnvError) as e:
        return f"{env}: {str(e).splitlines()[0]}"
    return None


def check_envs(parser: argparse.ArgumentParser, env_list) -> None:
    """parser.error (one line, exit 2) for the first env of ``env_list`` that ``env_problem`` refuses."""
    for env in env_list:
        problem = env_problem(env)
        if problem:
            parser.error(problem)


def require_isaaclab_extra(parser: argparse.ArgumentParser) -> None:
    """parser.error (one line, exit 2) unless the isaaclab extra's packages import: torch, rsl_rl
    and its tensordict, which the isaaclab/ scripts and tests/fake_vec_env.py use.  Called after
    the arguments are parsed, so that --help and a bad argument need none of them."""
    try:
        for module in ("torch", "rsl_rl", "tensordict"):
            importlib.import_module(module)
    except ImportError as e:
        parser.error(f"needs the isaaclab extra ({e.name or e} is not installed): pip install 'bpo-jax[isaaclab]'")


def disable_compilation_cache() -> None:
    """Cold compiles: a persistent cache entry from an earlier run would make compile times
    meaningless (and JAX turns the cache on when $JAX_COMPILATION_CACHE_DIR is set)."""
    jax.config.update("jax_enable_compilation_cache", False)
