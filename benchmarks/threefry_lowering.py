"""JAX's rolled Threefry loop against bpo-jax's per-call rule on the CPU, side by side in one process.

    python benchmarks/threefry_lowering.py [--rounds 5] [--lowerings rolled,auto,unrolled] [--out FILE.json]

``bpo_jax.threefry_cpu`` lowers a random draw unrolled when its keys are batched and leaves
JAX's rolled loop for a single key.  Here every program is lowered and compiled once under each
lowering (``threefry_cpu.register``), the compiled programs are called in interleaved rounds
(medians), and their outputs are compared bit for bit:

* CartPole PPO, PureJaxRL's configuration (4 envs x 128 steps): one seed for 5e5 steps, and 10
  seeds vmapped for 1e5 steps (the program ``vs_purejaxrl.py`` times for 5e5 steps);
* raw env stepping with random actions, 500 steps: gymnax CartPole at 4,096 envs and Pendulum
  at 1,024 envs (a key per env: split every step, reset draws where episodes end).

Compile seconds are of one compile each (the persistent compilation cache is off).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import comma_list, disable_compilation_cache, log, machine, one_of, out_path, positive_int, write_results  # noqa: E402

from bpo_jax import Config, envs, make_train, threefry_cpu  # noqa: E402
from bpo_jax.runner import seed_keys  # noqa: E402


def training(seeds: int, steps: int, algo: str = "ppo"):
    """(function, argument): our CartPole training run, ``seeds`` vmapped when more than one."""
    fn = make_train(Config(algo=algo, env="gymnax/CartPole-v1", total_steps=steps))
    keys = seed_keys(0, seeds)
    return (jax.vmap(fn), keys) if seeds > 1 else (fn, keys[0])


def stepping(name: str, num_envs: int, steps: int = 500):
    """(function, argument): ``steps`` env steps with uniformly random actions; returns the last
    observations and every reward (no sums, whose float order could differ between programs)."""
    env = envs.make(name, num_envs=num_envs)
    space = env.action_space

    def run(key):
        def body(carry, _):
            state, key = carry
            key, k = jax.random.split(key)
            if isinstance(space, envs.Discrete):
                action = jax.random.randint(k, (num_envs,), 0, space.n)
            else:
                action = jax.random.uniform(k, (num_envs, *space.shape), minval=space.low, maxval=space.high)
            state = env.step(state, action)
            return (state, key), state.reward

        (state, _), rewards = jax.lax.scan(body, (env.reset(key), key), None, length=steps)
        return state.obs, rewards

    return run, jax.random.key(0)


def host_leaves(tree) -> list[np.ndarray]:
    """The leaves of a program's output as NumPy arrays (PRNG keys as their key data)."""
    keys = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    return [np.asarray(keys(x)) for x in jax.tree.leaves(tree)]


PROGRAMS = {
    "ppo_1_seed_5e5_steps": (lambda: training(1, 500_000), 500_000),
    "ppo_10_seeds_1e5_steps": (lambda: training(10, 100_000), 1_000_000),
    "cartpole_4096_envs_stepping": (lambda: stepping("gymnax/CartPole-v1", 4096), 4096 * 500),
    "pendulum_1024_envs_stepping": (lambda: stepping("gymnax/Pendulum-v1", 1024), 1024 * 500),
}


LOWERINGS = ("rolled", "auto", "unrolled")  # what threefry_cpu.register takes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=positive_int, default=5, help="interleaved timed calls per program (default 5)")
    parser.add_argument("--lowerings", type=comma_list(one_of(LOWERINGS, "lowering"), "lowerings"), default="rolled,auto", help="comma-separated: rolled, auto, unrolled")
    parser.add_argument("--programs", type=comma_list(one_of(list(PROGRAMS), "program"), "programs"),
                        default=",".join(PROGRAMS), help="comma-separated subset of: " + ", ".join(PROGRAMS))
    parser.add_argument("--out", type=out_path, default=None, help="also write the results JSON here")
    args = parser.parse_args(argv)
    lowerings, programs = args.lowerings, args.programs
    disable_compilation_cache()
    log(f"machine: {machine()}")
    results = {"machine": machine(), "rounds": args.rounds, "programs": {}}
    for program in programs:
        build, env_steps = PROGRAMS[program]
        compiled = {}
        for lowering in lowerings:
            if not threefry_cpu.register(lowering):
                raise SystemExit("threefry_lowering: error: this JAX lacks the threefry internals bpo_jax.threefry_cpu uses")
            fn, arg = build()  # traced afresh, so each lowering lowers its own program
            t0 = time.perf_counter()
            compiled[lowering] = (jax.jit(fn).lower(arg).compile(), arg, time.perf_counter() - t0)
        runs = {lowering: [] for lowering in lowerings}
        outputs = {}
        for _ in range(args.rounds):
            for lowering, (exe, arg, _) in compiled.items():
                t0 = time.perf_counter()
                outputs[lowering] = jax.block_until_ready(exe(arg))
                runs[lowering].append(time.perf_counter() - t0)
        reference = host_leaves(outputs[lowerings[0]])
        row = {}
        for lowering in lowerings:
            leaves = host_leaves(outputs[lowering])
            median = statistics.median(runs[lowering])
            row[lowering] = {"compile_seconds": compiled[lowering][2], "run_seconds": median, "runs": runs[lowering],
                             "env_steps_per_second": env_steps / median,
                             "bit_identical_to_" + lowerings[0]: all(np.array_equal(a, b, equal_nan=a.dtype.kind == 'f') for a, b in zip(leaves, reference))}
            log(f"{program:30s} {lowering:9s} compile {compiled[lowering][2]:5.2f} s  run {median:7.3f} s "
                f"({env_steps / median:,.0f} steps/s)  same bits: {row[lowering]['bit_identical_to_' + lowerings[0]]}")
        results["programs"][program] = row
    threefry_cpu.register("auto")
    write_results(results, args.out, echo=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
