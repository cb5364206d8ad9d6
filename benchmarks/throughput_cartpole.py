"""Throughput on gymnax CartPole-v1 with PureJaxRL's PPO configuration, all in one process.

    python benchmarks/throughput_cartpole.py [--out benchmarks/results/NAME.json] [--seeds 10]

Configuration (PureJaxRL's CartPole): 4 envs x 128 steps, 4 epochs x 4 minibatches of 128,
5e5 steps, tanh 64x64, lr annealed.  Reports, side by side in one run so machine noise
hits every number alike:

* compile seconds and training steps/s of one seed, for PPO and for BPO;
* raw environment steps/s: random actions through the same env layer (same 4 envs) in one
  compiled scan, the physics limit of this env count; and the ratio training / raw;
* N seeds of BPO as one vmapped program: wall-clock including compile, and final return.

The persistent compilation cache is off here, so compile times are honest cold compiles.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import compile_and_time, disable_compilation_cache, final_return, machine, out_path, positive_int, write_results  # noqa: E402

from bpo_jax import Config, envs, make_train  # noqa: E402
from bpo_jax.runner import seed_keys  # noqa: E402

PUREJAXRL = dict(env="gymnax/CartPole-v1", total_steps=500_000, num_envs=4, num_steps=128, num_epochs=4,
                 num_minibatches=4, hidden_sizes=(64, 64), activation="tanh", anneal_lr=True)


def time_train(config: Config, repeats: int = 2) -> dict:
    """Compile once, run ``repeats`` times; report the best run (least disturbed by noise)."""
    compile_s, runs, (_, metrics) = compile_and_time(make_train(config), (jax.random.key(0),), repeats)
    steps = config.num_updates * config.batch_size
    return {"compile_seconds": compile_s, "train_seconds": min(runs), "train_seconds_all": runs,
            "steps_per_second": steps / min(runs), "final_return": final_return(metrics)}


def time_raw_env(config: Config, repeats: int = 2) -> dict:
    """Random actions through the same env layer, one compiled scan of the same number of steps."""
    env = envs.make(config.env, num_envs=config.num_envs)
    iters = config.num_updates * config.num_steps

    def rollout(key):
        state = env.reset(key)

        def body(carry, _):
            state, key = carry
            key, k = jax.random.split(key)
            action = jax.random.randint(k, (config.num_envs,), 0, env.action_space.n)
            state = env.step(state, action)
            return (state, key), state.reward.sum()

        (state, _), rewards = jax.lax.scan(body, (state, key), None, length=iters)
        return rewards.sum()

    compile_s, runs, _ = compile_and_time(rollout, (jax.random.key(0),), repeats)
    return {"compile_seconds": compile_s, "seconds": min(runs), "steps_per_second": iters * config.num_envs / min(runs)}


def time_vmapped_seeds(config: Config, seeds: int) -> dict:
    t0 = time.perf_counter()
    fn = jax.jit(jax.vmap(make_train(config)))
    keys = seed_keys(0, seeds)
    compiled = fn.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    _, metrics = compiled(keys)
    jax.block_until_ready(metrics)
    total = time.perf_counter() - t0
    return {"seeds": seeds, "compile_seconds": compile_s, "total_seconds_including_compile": total,
            "final_return_mean_over_seeds": final_return(metrics)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=positive_int, default=10, help="seeds in the vmapped BPO program (default 10)")
    parser.add_argument("--out", type=out_path, default=None, help="write the results JSON here")
    args = parser.parse_args(argv)
    disable_compilation_cache()

    results = {"machine": machine(), "config": {k: list(v) if isinstance(v, tuple) else v for k, v in PUREJAXRL.items()}}
    ppo = Config(algo="ppo", **PUREJAXRL)
    bpo = Config(algo="bpo", **PUREJAXRL)
    print(f"machine: {results['machine']}", file=sys.stderr)
    results["raw_env"] = time_raw_env(ppo)
    results["ppo"] = time_train(ppo)
    results["bpo"] = time_train(bpo)
    results["bpo_seeds_vmapped"] = time_vmapped_seeds(bpo, args.seeds)
    raw = results["raw_env"]["steps_per_second"]
    results["ratios"] = {
        "ppo_train_over_raw_env": results["ppo"]["steps_per_second"] / raw,
        "bpo_train_over_raw_env": results["bpo"]["steps_per_second"] / raw,
        "bpo_over_ppo_steps_per_second": results["bpo"]["steps_per_second"] / results["ppo"]["steps_per_second"],
    }
    write_results(results, args.out)
    r = results
    print(
        f"\nraw env {raw:,.0f} steps/s | PPO {r['ppo']['steps_per_second']:,.0f} steps/s "
        f"({r['ratios']['ppo_train_over_raw_env']:.0%} of raw), compile {r['ppo']['compile_seconds']:.1f}s | "
        f"BPO {r['bpo']['steps_per_second']:,.0f} steps/s ({r['ratios']['bpo_over_ppo_steps_per_second']:.0%} of PPO), "
        f"compile {r['bpo']['compile_seconds']:.1f}s | {args.seeds} BPO seeds vmapped: "
        f"{r['bpo_seeds_vmapped']['total_seconds_including_compile']:.1f}s incl. compile, "
        f"final return {r['bpo_seeds_vmapped']['final_return_mean_over_seeds']:.1f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
