"""What the isaaclab/ adapter costs per environment step, against the torch env's raw step rate.

For each batch size B, on ``tests/fake_vec_env.PointGoalEnv`` (an rsl_rl ``VecEnv``):

* ``raw``: ``env.step(actions)`` with torch actions, nothing else (the simulator alone);
* ``adapter``: :meth:`IsaacLabEnv.step` with a JAX action: DLPack to torch, the step, the
  observation groups, rewards, dones and time-outs back to JAX through DLPack;
* ``collect``: one host-loop step as :func:`bpo_jax.host_loop.train` does it: the compiled policy
  call (the paper's [512, 256, 128] ELU actor) plus the adapter step;
* ``iteration``: whole host-loop iterations (24 steps, then the compiled update: PPO, 5 epochs x
  4 minibatches), split into collection and learning by the loop's own timers.

Times are medians over repeats of ``--steps`` steps each, per call (= per B env steps).

    nice -n 10 python benchmarks/throughput_isaaclab.py --out benchmarks/results/throughput_isaaclab_cpu.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, machine, out_path, positive_int, positive_ints, require_isaaclab_extra, write_results  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bpo_jax import host_loop  # noqa: E402
from bpo_jax.config import Config  # noqa: E402
from bpo_jax.envs.isaaclab import IsaacLabEnv  # noqa: E402

NETWORK = dict(hidden_sizes=(512, 256, 128), activation="elu")


def per_call_us(step, steps: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean time of one ``step()`` call, in microseconds."""
    step()  # warm: compiles, first allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps * 1e6)
    return statistics.median(times)


def measure(num_envs: int, steps: int, repeats: int, iterations: int) -> dict:
    import torch  # the isaaclab extra's: imported once main has checked it is there

    from tests.fake_vec_env import PointGoalEnv

    gen = torch.Generator().manual_seed(0)
    raw_env = PointGoalEnv(num_envs, seed=0)
    actions = torch.randn(num_envs, 2, generator=gen)
    raw = per_call_us(lambda: raw_env.step(actions), steps, repeats)

    env = IsaacLabEnv(PointGoalEnv(num_envs, seed=0))
    jax_actions = jax.device_put(np.asarray(actions), jax.devices()[0])
    adapter = per_call_us(lambda: jax.block_until_ready(env.step(jax_actions).frame), steps, repeats)

    config = Config(algo="ppo", num_envs=num_envs, num_steps=24, num_epochs=5, num_minibatches=4,
                    total_steps=num_envs * 24 * iterations, lr=1e-3, lr_schedule="adaptive", eps=0.2,
                    value_clip=0.2, vf_coef=1.0, ent_coef=0.005, max_grad_norm=1.0, init_std=1.0, **NETWORK)
    config = host_loop.host_config(config, env)
    trainer = host_loop.make_trainer(config, env)
    state = host_loop._commit(jax.jit(trainer.init)(jax.random.key(0), config.hparams()))
    policy_step, _, _ = host_loop.make_programs(trainer)
    carry = {"frame": host_loop._commit(host_loop.first_frame(env.observe())), "key": state.key}

    def collect():
        action, _, carry["key"] = policy_step(state.params, state.obs_stats, carry["frame"], carry["key"])
        carry["frame"] = env.step(action).frame
        jax.block_until_ready(carry["frame"])

    collect_us = per_call_us(collect, steps, repeats)
    policy_only = per_call_us(lambda: jax.block_until_ready(
        policy_step(state.params, state.obs_stats, carry["frame"], carry["key"])), steps, repeats)

    result = host_loop.train(config, IsaacLabEnv(PointGoalEnv(num_envs, seed=1)), quiet=True)
    c, l = result.collection_seconds[1:], result.learning_seconds[1:]  # iteration 1 compiles
    sps = lambda us: num_envs / us * 1e6
    return {
        "num_envs": num_envs,
        "raw_step_us": round(raw, 1), "adapter_step_us": round(adapter, 1), "collect_step_us": round(collect_us, 1),
        "policy_call_us": round(policy_only, 1),
        "adapter_overhead_us": round(adapter - raw, 1), "host_loop_overhead_us": round(collect_us - raw, 1),
        "raw_env_steps_per_s": round(sps(raw)), "adapter_env_steps_per_s": round(sps(adapter)),
        "collect_env_steps_per_s": round(sps(collect_us)),
        "collect_over_raw": round(raw / collect_us, 3), "adapter_over_raw": round(raw / adapter, 3),
        "iteration_collect_s_median": round(float(np.median(c)), 4),
        "iteration_learn_s_median": round(float(np.median(l)), 4),
        "training_env_steps_per_s": round(num_envs * 24 / float(np.median(c + l))),
        "first_iteration_s": round(float(result.collection_seconds[0] + result.learning_seconds[0]), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-envs", type=positive_ints, default="64,512,4096", help="comma-separated batch sizes")
    p.add_argument("--steps", type=positive_int, default=100, help="steps per timed repeat")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--iterations", type=positive_int, default=6, help="host-loop iterations per batch size (first compiles)")
    p.add_argument("--torch-threads", type=positive_int, default=1, help="torch intra-op threads (see isaaclab_parity.py)")
    p.add_argument("--out", type=out_path, default=None)
    args = p.parse_args()
    if args.iterations < 2:  # the first iteration compiles and is left out of the medians
        p.error(f"--iterations must be >= 2 (the first compiles and is not timed), got {args.iterations}")
    require_isaaclab_extra(p)
    import torch

    torch.set_num_threads(args.torch_threads)
    results = {"machine": machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "network": NETWORK, "steps": args.steps, "repeats": args.repeats, "rows": []}
    for b in args.num_envs:
        row = measure(b, args.steps, args.repeats, args.iterations)
        log(f"B={b}: raw {row['raw_step_us']} us, adapter {row['adapter_step_us']} us, collect "
            f"{row['collect_step_us']} us per step; training {row['training_env_steps_per_s']:,} steps/s")
        results["rows"].append(row)
    write_results(results, args.out)


if __name__ == "__main__":
    main()
