"""Raw environment steps/s against full BPO (and PPO) training steps/s, on any suite.

    python benchmarks/throughput.py [--envs mjx/Ant-v4,mjx/Humanoid-v4,brax/ant]
        [--num-envs 64,256] [--updates 4] [--algos bpo] [--reset-pool 0] [--impls jax,warp]
        [--preset paper/Pong] [--num-steps 128] [--variants "backend=envpool;backend=ale"]
        [--out benchmarks/results/NAME.json]

For every (task, variant, env count), side by side in one process so machine noise hits every
number alike:

* raw: uniform random actions (in the box, or over the discrete choices) through the same
  env layer (same auto-reset mode) in one compiled ``lax.scan`` of ``updates * num_steps``
  steps: the environment's limit at that count;
* train: the training program's ``updates`` updates (rollout with the policy, GAE, epochs x
  minibatches).  Both start from a state reset before the timed call.  By default a 256x256 relu actor and critic, 16 steps per env,
  4 epochs x 4 minibatches, observation normalisation; with ``--preset NAME`` that preset's
  settings for each algorithm instead (``paper/Pong``: the paper's Nature CNN, 5 epochs x 4
  minibatches for BPO), rollout length ``--num-steps``;
* the ratio train / raw, which says how much the learner costs on top of the environment
  (target: >= 90% at large env counts on MJX; >= 70% on Atari).

Variants repeat every measurement with other env options: ``--variants
"backend=envpool;backend=ale"`` (Atari's two stepping paths), or ``--impls jax,warp`` (short
for ``--variants "impl=jax;impl=warp"``: MuJoCo Warp against MJX's JAX implementation, for
suites that take an ``impl`` option).

Compile time is reported apart from run time (the persistent compilation cache is off).
Each program runs ``--repeats`` times after compiling and the fastest run counts.

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
from common import (  # noqa: E402
    algo_names, check_envs, comma_list, compile_and_time, disable_compilation_cache, env_ids, log, machine, nonnegative_int,
    out_path, positive_int, positive_ints, preset_name, write_results)

from bpo_jax import Config, envs, make_trainer, presets  # noqa: E402
from bpo_jax.config import MATMUL_PRECISIONS  # noqa: E402
from bpo_jax.envs import Box, Discrete  # noqa: E402

TRAIN = dict(num_steps=16, num_epochs=4, num_minibatches=4, hidden_sizes=(256, 256), activation="relu",
             median_hidden_sizes=(), normalize_obs=True, anneal_lr=False, lr=3e-4)


def raw_env(config: Config, steps: int, repeats: int) -> dict:
    """Uniform random actions, through the same env layer and reset mode; the reset is made
    before the timed program (Atari resets replay up to 30 no-ops per game)."""
    env = envs.make(config.env, num_envs=config.num_envs, reset_pool=config.reset_pool, **config.env_kwargs())
    space = env.action_space

    def sample(key):
        if isinstance(space, Discrete):
            return jax.random.randint(key, (env.num_envs,), 0, space.n)
        assert isinstance(space, Box), f"{config.env}: unknown action space {space}"
        return jax.random.uniform(key, (env.num_envs,) + space.shape, minval=space.low, maxval=space.high)

    def rollout(state, key):
        def body(carry, _):
            state, key = carry
            key, k = jax.random.split(key)
            state = env.step(state, sample(k))
            return (state, key), state.reward.sum()

        (_, _), rewards = jax.lax.scan(body, (state, key), None, length=steps)
        return rewards.sum()

    key = jax.random.key(0)
    state = jax.block_until_ready(jax.jit(env.reset)(key))
    # The physics at the training run's matmul precision, so the two rates compare like with like.
    compile_s, runs, _ = compile_and_time(config.with_precision(rollout), (state, key), repeats)
    return {"compile_seconds": compile_s, "seconds": min(runs),
            "steps_per_second": steps * config.num_envs / min(runs)}


def train(config: Config, repeats: int) -> dict:
    """The training program's updates (rollout with the policy, GAE, epochs x minibatches),
    from a state initialised before the timed program."""
    trainer = make_trainer(config)
    hp = config.hparams()
    state = jax.block_until_ready(jax.jit(trainer.init)(jax.random.key(0), hp))
    compile_s, runs, (_, metrics) = compile_and_time(
        lambda s, h: trainer.update_chunk(s, h, trainer.num_updates), (state, hp), repeats)
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


def check_projection(parser, wanted: bool, algos, env_list, variants) -> None:
    """parser.error where --paper-projection would have nothing to project from: it uses BPO's
    training rate on mjx/ tasks with MJX's JAX implementation, and would otherwise say nothing."""
    if wanted and ("bpo" not in algos or not any(e.startswith("mjx/") for e in env_list)
                   or not any(v in ("", "impl=jax") for v in variants)):
        parser.error("--paper-projection projects from BPO's training rate on mjx/ tasks: give bpo in --algos, "
                     "an mjx/ env in --envs, and MJX's JAX implementation (no --variants; jax among --impls)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=env_ids, default=None,
                        help="comma-separated env ids (default: mjx/Ant-v4,mjx/Humanoid-v4,brax/ant, or the preset's env)")
    parser.add_argument("--num-envs", type=positive_ints, default="64,256", help="comma-separated env counts")
    parser.add_argument("--updates", type=positive_int, default=4, help="training updates per timed program")
    parser.add_argument("--algos", type=algo_names, default="bpo", help="comma-separated: bpo,ppo")
    parser.add_argument("--reset-pool", type=nonnegative_int, default=0, help="auto-reset mode for both raw and train")
    parser.add_argument("--impls", type=comma_list(str, "implementations"), default=None,
                        help="comma-separated MJX implementations to compare, e.g. jax,warp (mjx and playground suites)")
    parser.add_argument("--variants", default=None,
                        help='env-option sets to compare, ";"-separated, each "key=value,key=value", '
                             'e.g. "backend=envpool;backend=ale"')
    parser.add_argument("--preset", type=preset_name, default=None,
                        help="train with this preset's settings per algorithm (e.g. paper/Pong); "
                             "--envs defaults to its env")
    parser.add_argument("--num-steps", type=positive_int, default=None,
                        help=f"rollout steps per env and update (default {TRAIN['num_steps']}, or the preset's)")
    parser.add_argument("--matmul-precision", default=None, choices=MATMUL_PRECISIONS,
                        help="float32 matmul precision of raw stepping and training alike (default: Config's, "
                             "highest; 'default' lets GPUs use TF32)")
    parser.add_argument("--repeats", type=positive_int, default=2)
    parser.add_argument("--paper-projection", action="store_true")
    parser.add_argument("--out", type=out_path, default=None)
    args = parser.parse_args(argv)

    algos = args.algos
    try:
        if args.preset:
            settings = {algo: {k: v for k, v in presets.resolve(args.preset, algo).items() if k != "total_steps"}
                        for algo in algos}
        else:
            settings = {algo: {**TRAIN, "algo": algo} for algo in algos}
    except ValueError as e:  # PresetError: the preset has no settings for an algorithm
        parser.error(str(e))
    env_list = args.envs or (settings[algos[0]]["env"].split(",") if args.preset
                             else ["mjx/Ant-v4", "mjx/Humanoid-v4", "brax/ant"])
    if args.impls:
        variants = [f"impl={impl}" for impl in args.impls]
    else:
        variants = args.variants.split(";") if args.variants else [""]
    check_projection(parser, args.paper_projection, algos, env_list, variants)
    check_envs(parser, env_list)

    def config(algo: str, env_id: str, variant: str, n: int) -> Config:
        fields = {**settings[algo], "env": env_id, "num_envs": n, "reset_pool": args.reset_pool,
                  "env_options": tuple(o for o in variant.split(",") if o)}
        if args.num_steps:
            fields["num_steps"] = args.num_steps
        if args.matmul_precision:
            fields["matmul_precision"] = args.matmul_precision
        c = Config(**fields)
        return c.replace(total_steps=args.updates * n * c.num_steps)

    # Every program's Config checked now, not after the earlier programs' compiles.
    combos = list(itertools.product(env_list, variants, args.num_envs))
    try:
        for (env_id, variant, n), algo in itertools.product(combos, algos):
            config(algo, env_id, variant, n).validate()
        for env_id, variant in itertools.product(env_list, variants):
            if variant:  # only building the env checks its options' names (one env, nothing compiled)
                c = config(algos[0], env_id, variant, 1)
                envs.make(env_id, num_envs=1, reset_pool=c.reset_pool, **c.env_kwargs())
    except (TypeError, ValueError, envs.MissingDependencyError) as e:
        parser.error(str(e))
    disable_compilation_cache()
    results = {"machine": machine(), "preset": args.preset, "train_config": settings, "runs": []}
    log(f"machine: {results['machine']}")
    largest = {}  # env id -> (env count, BPO training steps/s there)
    for env_id, variant, n in combos:
        base = config(algos[0], env_id, variant, n)
        row = {"env": env_id, "options": variant, "num_envs": n, "reset_pool": args.reset_pool,
               "matmul_precision": base.matmul_precision}
        label = env_id if not variant else f"{env_id}[{variant}]"
        row["raw"] = raw_env(base, args.updates * base.num_steps, args.repeats)
        log(f"{label} x{n}: raw {row['raw']['steps_per_second']:,.0f} steps/s "
            f"(compile {row['raw']['compile_seconds']:.1f}s)")
        for algo in algos:
            row[algo] = train(config(algo, env_id, variant, n), args.repeats)
            row[algo]["train_over_raw"] = row[algo]["steps_per_second"] / row["raw"]["steps_per_second"]
            log(f"{label} x{n}: {algo} {row[algo]['steps_per_second']:,.0f} steps/s = "
                f"{row[algo]['train_over_raw']:.0%} of raw (compile {row[algo]['compile_seconds']:.1f}s)")
            if algo == "bpo" and variant in ("", "impl=jax") and n >= largest.get(env_id, (0, 0.0))[0]:
                largest[env_id] = (n, row[algo]["steps_per_second"])
        results["runs"].append(row)
        write_results(results, args.out, echo=False)  # keep partial results if a later size fails
    if args.paper_projection:
        mjx_rates = {k: rate for k, (_, rate) in largest.items() if k.startswith("mjx/")}
        if mjx_rates:
            results["paper_figure_projection"] = paper_projection(mjx_rates)
            log(f"paper MuJoCo figure projected: {results['paper_figure_projection']['hours']:.2f} h")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
