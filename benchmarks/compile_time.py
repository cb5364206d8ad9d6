"""Where a whole-run program's compile time goes, and what XLA's backend optimisation level buys.

    python benchmarks/compile_time.py [--env gymnax/CartPole-v1] [--algo ppo] [--preset NAME]
        [--total-steps N] [--seeds 1,10] [--levels 3,1] [--runs 2] [--out FILE.json]

For each seed count: the whole training run (``make_train``, vmapped over the seeds when there
are several) is lowered once, then

* compiled at each ``xla_backend_optimization_level`` in ``--levels`` (the LLVM optimisation
  level XLA:CPU passes on; 3 is its default): wall and CPU seconds;
* compiled once more at the default level under the JAX profiler, for the compile's phases read
  off the profiler's trace (the HLO pass pipeline, the MLIR fusion emitters, LLVM code
  generation, thunk emission; the emitters and LLVM run on a thread pool, so their seconds are
  summed over threads; the profiler slows this compile, so its wall time is not compared);
* every executable is run ``--runs`` times, interleaved (the order reversed every other round),
  and each level's final parameters are compared bit for bit with the default level's.

A small program is compiled first, so one-time compiler start-up is in no timed compile; the
persistent compilation cache is off.  Defaults: PureJaxRL's CartPole configuration (our PPO at
its defaults, 5e5 steps), the program ``vs_purejaxrl.py`` times.  See RESULTS.md.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import resource
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    algo_name, check_envs, comma_list, disable_compilation_cache, env_id, int_between, log, machine, out_path,
    positive_int, positive_ints, preset_name, write_results)

from bpo_jax import Config, make_train, presets  # noqa: E402
from bpo_jax.runner import seed_keys  # noqa: E402

# Profiler event -> phase.  XLA-internal names (jax 0.10.2's XLA:CPU); a phase whose events are
# missing in another XLA is reported as 0.
PHASES = {
    "HLO passes through layout assignment": "hlo_passes",
    "HLO passes after layout assignment": "hlo_passes",
    "FusionCompiler::Compile": "fusion_emitters_thread_s",
    "JitCompiler::Compile": "llvm_codegen",
    "ThunkEmitter::EmitEntryComputation": "thunk_emission",
    "CpuCompiler::RunBackend": "backend_total",
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def compile_phases(lowered) -> dict:
    """Seconds by phase of compiling ``lowered`` at the default level, under the profiler.  The
    level is given explicitly: the same program as ``{}`` but another cache key, so it compiles
    again instead of coming from JAX's in-memory cache."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            lowered.compile({"xla_backend_optimization_level": 3})
        events = json.load(gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[-1]))
    totals = collections.Counter()
    for e in events["traceEvents"] if isinstance(events, dict) else events:
        for prefix, phase in PHASES.items():
            if e.get("ph") == "X" and e["name"].startswith(prefix):
                totals[phase] += e.get("dur", 0) / 1e6
    return {phase: totals.get(phase, 0.0) for phase in dict.fromkeys(PHASES.values())}


def measure(config: Config, num_seeds: int, levels: list[int], runs: int) -> dict:
    train = make_train(config)
    keys = seed_keys(config.seed, num_seeds)
    fn, arg = (jax.vmap(train), keys) if num_seeds > 1 else (train, keys[0])
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(arg)
    result = {"seeds": num_seeds, "lower_s": time.perf_counter() - t0, "levels": {}}
    executables = {}
    for level in levels:
        t0, c0 = time.perf_counter(), cpu_seconds()
        executables[level] = lowered.compile({} if level == 3 else {"xla_backend_optimization_level": level})
        result["levels"][level] = {"compile": {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}}
        log(f"  {num_seeds} seed(s), level {level}: compile {result['levels'][level]['compile']['wall']:.2f} s")
    result["phases_at_level_3"] = compile_phases(lowered)
    params = {}
    for r in range(runs):
        for level, exe in list(executables.items())[::1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            state, _ = jax.block_until_ready(exe(arg))
            result["levels"][level].setdefault("run_s", []).append(time.perf_counter() - t0)
            params[level] = jax.device_get(state.params)
    for level in levels:
        result["levels"][level]["bit_identical_to_level_3"] = all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params[level]), jax.tree.leaves(params[3])))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", type=env_id, default="gymnax/CartPole-v1")
    parser.add_argument("--algo", type=algo_name, default="ppo")
    parser.add_argument("--preset", type=preset_name, default=None, help="a bpo-jax preset instead of --env's defaults")
    parser.add_argument("--total-steps", type=positive_int, default=500_000)
    parser.add_argument("--seeds", type=positive_ints, default="1,10", help="seed counts, comma-separated (default 1,10)")
    # XLA:CPU passes the level on to LLVM, whose levels are 0-3; it takes a larger one without a word.
    parser.add_argument("--levels", type=comma_list(int_between(0, 3), "optimisation levels"), default="3,1",
                        help="xla_backend_optimization_level values, 0-3; 3 is XLA's default")
    parser.add_argument("--runs", type=positive_int, default=2, help="interleaved calls of each executable (default 2)")
    parser.add_argument("--out", type=out_path, default=None, help="also write the results JSON here")
    args = parser.parse_args(argv)
    try:
        levels = sorted({3, *args.levels}, reverse=True)
        seeds = args.seeds
        fields = presets.resolve(args.preset, args.algo) if args.preset else {"env": args.env, "algo": args.algo}
        config = Config(**{**fields, "total_steps": args.total_steps})
        config.validate()
    except ValueError as e:  # PresetError and ConfigError are ValueErrors
        parser.error(str(e))
    check_envs(parser, [config.env])
    disable_compilation_cache()
    results = {"machine": machine(), "config": {"env": config.env, "algo": config.algo, "preset": args.preset,
                                                "total_steps": config.total_steps}}
    jax.jit(lambda x: jax.numpy.tanh(x @ x)).lower(jax.numpy.ones((8, 8))).compile()  # compiler start-up
    results["programs"] = [measure(config, n, levels, args.runs) for n in seeds]
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
