"""Raw environment steps/s against full BPO (and PPO) training steps/s on MJX and Brax tasks.

    python benchmarks/throughput_mujoco.py [--envs mjx/Ant-v4,mjx/Humanoid-v4,brax/ant]
        [--num-envs 64,256] [--updates 4] [--algos bpo] [--reset-pool 0] [--impls jax,warp]
        [--out results/NAME.json]

For every (task, env count) pair, side by side in one process so machine noise hits every
number alike:

* raw: uniform random actions through the same env layer (same auto-reset mode) in one
  compiled ``lax.scan`` of ``updates * num_steps`` steps: the physics limit at that count;
* train: the full training program (rollout with the policy, GAE, 4 epochs x 4 minibatches
  of a 256x256 actor and critic, observation normalisation) for ``updates`` updates;
* the ratio train / raw, which says how much the learner costs on top of the physics
  (target: >= 90% at large env counts, i.e. the learner is not the bottleneck).

``--impls jax,warp`` repeats every measurement per MJX implementation (MuJoCo Warp against
MJX's JAX one), for suites that take an ``impl`` option (mjx, playground).

Compile time is reported apart from run time (the persistent compilation cache is off).
Each program runs twice after compiling and the faster run counts.

With ``--paper-projection`` the script also projects the wall-clock of the paper's whole
MuJoCo figure (4 tasks x BPO/PPO x 10 seeds x 20M steps) from the measured training rates
at the largest env count.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import compile_and_time, log, machine, write_results  # noqa: E402

from bpo_jax import Config, envs, make_train  # noqa: E402
from bpo_jax.envs import Box  # noqa: E402

TRAIN = dict(num_steps=16, num_epochs=4, num_minibatches=4, hidden_sizes=(256, 256), activation="relu",
             median_hidden_sizes=(), normalize_obs=True, anneal_lr=False, lr=3e-4)


def raw_env(config: Config, steps: int, repeats: int) -> dict:
    """Uniform random actions in the box, through the same env layer and reset mode."""
    env = envs.make(config.env, num_envs=config.num_envs, reset_pool=config.reset_pool, **config.env_kwargs())
    space = env.action_space
    assert isinstance(space, Box), f"{config.env} has no continuous action space"

    def rollout(key):
        state = env.reset(key)

        def body(carry, _):
            state, key = carry
            key, k = jax.random.split(key)
            action = jax.random.uniform(k, (env.num_envs,) + space.shape, minval=space.low, maxval=space.high)
            state = env.step(state, action)
            return (state, key), state.reward.sum()

        (_, _), rewards = jax.lax.scan(body, (state, key), None, length=steps)
        return rewards.sum()

    compile_s, runs, _ = compile_and_time(rollout, (jax.random.key(0),), repeats)
    return {"compile_seconds": compile_s, "seconds": min(runs),
            "steps_per_second": steps * config.num_envs / min(runs)}


def train(config: Config, repeats: int) -> dict:
    compile_s, runs, (_, metrics) = compile_and_time(make_train(config), (jax.random.key(0),), repeats)
    steps = config.num_updates * config.batch_size
    finite = bool(jnp.all(jnp.isfinite(metrics["loss"])))
    return {"compile_seconds": compile_s, "seconds": min(runs), "steps_per_second": steps / min(runs),
            "losses_finite": finite}


def paper_projection(rates: dict[str, float]) -> dict:
    """Hours for 4 tasks x 2 algorithms x 10 seeds x 20M steps at the measured rates.

    ``rates`` maps task -> training steps/s of one program at the largest env count.  Tasks
    not measured borrow the slowest measured rate (Humanoid's physics dominates)."""
    slowest = min(rates.values())
    per_task = {t: rates.get(t, slowest) for t in ("mjx/Ant-v4", "mjx/Hopper-v4", "mjx/Humanoid-v4", "mjx/Swimmer-v4")}
    seconds = sum(2 * 10 * 20e6 / r for r in per_task.values())
    return {"assumed_steps_per_second": per_task, "hours": seconds / 3600}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="mjx/Ant-v4,mjx/Humanoid-v4,brax/ant")
    parser.add_argument("--num-envs", default="64,256", help="comma-separated env counts")
    parser.add_argument("--updates", type=int, default=4, help="training updates per timed program")
    parser.add_argument("--algos", default="bpo", help="comma-separated: bpo,ppo")
    parser.add_argument("--reset-pool", type=int, default=0, help="auto-reset mode for both raw and train")
    parser.add_argument("--impls", default=None,
                        help="comma-separated MJX implementations to compare, e.g. jax,warp (mjx and playground suites)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paper-projection", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    results = {"machine": machine(), "train_config": {k: v for k, v in TRAIN.items()}, "runs": []}
    log(f"machine: {results['machine']}")
    largest = {}
    impls = args.impls.split(",") if args.impls else [None]
    for env_id, impl, n in itertools.product(args.envs.split(","), impls, (int(x) for x in args.num_envs.split(","))):
        options = () if impl is None else (f"impl={impl}",)
        base = Config(env=env_id, num_envs=n, total_steps=args.updates * n * TRAIN["num_steps"],
                      reset_pool=args.reset_pool, env_options=options, **TRAIN)
        row = {"env": env_id, "impl": impl, "num_envs": n, "reset_pool": args.reset_pool}
        label = env_id if impl is None else f"{env_id}[{impl}]"
        row["raw"] = raw_env(base, args.updates * base.num_steps, args.repeats)
        log(f"{label} x{n}: raw {row['raw']['steps_per_second']:,.0f} steps/s "
            f"(compile {row['raw']['compile_seconds']:.1f}s)")
        for algo in args.algos.split(","):
            row[algo] = train(base.replace(algo=algo), args.repeats)
            row[algo]["train_over_raw"] = row[algo]["steps_per_second"] / row["raw"]["steps_per_second"]
            log(f"{label} x{n}: {algo} {row[algo]['steps_per_second']:,.0f} steps/s = "
                f"{row[algo]['train_over_raw']:.0%} of raw (compile {row[algo]['compile_seconds']:.1f}s)")
            if algo == "bpo" and impl in (None, "jax"):
                largest[env_id] = row[algo]["steps_per_second"]
        results["runs"].append(row)
        write_results(results, args.out, echo=False)  # keep partial results if a later size fails
    if args.paper_projection:
        mjx_rates = {k: v for k, v in largest.items() if k.startswith("mjx/")}
        if mjx_rates:
            results["paper_figure_projection"] = paper_projection(mjx_rates)
            log(f"paper MuJoCo figure projected: {results['paper_figure_projection']['hours']:.2f} h")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
