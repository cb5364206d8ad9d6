"""Shared by the benchmark scripts: timing of compiled functions, machine description, output."""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import numpy as np

from bpo_jax.reporting import tail_returns


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
    """Print the results as JSON (if ``echo``) and, if ``path`` is given, write them there."""
    text = json.dumps(results, indent=2, default=float)
    if echo:
        print(text)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
