"""Compile seconds and steps/s (wall and process CPU time) of three training programs, and the
size of their lowered StableHLO, for comparing two versions of this code side by side.

    PYTHONPATH=/path/to/other/checkout python benchmarks/before_after.py before
    python benchmarks/before_after.py after

Prints one JSON line per call; alternate the two, several rounds, and compare medians.  The
StableHLO op count is exact and free of machine noise: equal counts mean the same program.
"""
import argparse
import importlib.util
import json
import os
import re
import resource
import sys
import time

# Parsed before importing JAX: --help or a missing label must not cost a benchmark run.
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("label", choices=["before", "after"], help="which side of the comparison this checkout is")
args = parser.parse_args()

# This checkout's benchmarks/common.py, whichever bpo_jax PYTHONPATH picks.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, disable_compilation_cache  # noqa: E402

# A PYTHONPATH that names no checkout measured this one (or the installed package) as "before".
_found = os.path.dirname(os.path.dirname(importlib.util.find_spec("bpo_jax").origin))
if (os.path.realpath(_found) == os.path.realpath(ROOT)) != (args.label == "after"):
    parser.error(f"bpo_jax comes from {_found}: 'before' takes another checkout's (PYTHONPATH=/path/to/it), "
                 "'after' this one's (no PYTHONPATH naming another)")
import jax  # noqa: E402
disable_compilation_cache()  # "compile" must time a compile, not a load from $JAX_COMPILATION_CACHE_DIR
import bpo_jax  # noqa: E402
from bpo_jax import Config, make_train  # noqa: E402
cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
cases = {
    "cartpole-ppo": dict(algo="ppo", env="gymnax/CartPole-v1", total_steps=200_000, value_clip=0.2, vf_coef=0.25),
    "cartpole-bpo": dict(algo="bpo", env="gymnax/CartPole-v1", total_steps=200_000),
    "hopper-bpo": dict(algo="bpo", env="mjx/Hopper-v4", num_envs=64, num_steps=32, num_minibatches=4, total_steps=64*32*6),
}
out = {}
for name, kw in cases.items():
    cfg = Config(**kw)
    fn = make_train(cfg)
    t0 = time.perf_counter(); c = jax.jit(fn).lower(jax.random.key(0)).compile(); tc = time.perf_counter() - t0
    jax.block_until_ready(c(jax.random.key(0)))
    w0, c0 = time.perf_counter(), cpu(); r = jax.block_until_ready(c(jax.random.key(1))); w, cc = time.perf_counter() - w0, cpu() - c0
    ops = len(re.findall(r"^\s+%\S+ = ", jax.jit(fn).lower(jax.random.key(0)).as_text(), re.M))
    out[name] = dict(stablehlo_ops=ops, compile=tc, wall_sps=cfg.total_steps / w, cpu_sps=cfg.total_steps / cc, file=bpo_jax.__file__)
print(json.dumps({args.label: out}))
