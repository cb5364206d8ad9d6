"""Scaling of the data-parallel runner: training steps/s vs env count, vs device count, and
N seeds in one program vs N separate runs.

    python benchmarks/scaling.py [--env gymnax/CartPole-v1] [--algos ppo,bpo] [--envs 4,8,...,4096]
                                 [--devices 1,2,4] [--device-envs 1024] [--seeds 8]
                                 [--num-steps 128] [--updates 10] [--out benchmarks/results/scaling.json]

Every measurement runs in its own subprocess (``--worker``), because the number of forced
host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=D``) is fixed when JAX
starts; on a GPU machine D picks the first D GPUs instead.  Each worker trains through
``runner.run`` (the program ``bpo-jax train`` runs), and reports steps/s of the compiled
chunks (compile time apart).  On a CPU, forced devices share the same cores: the device
sweep there measures the cost of the partitioning (collectives, the minibatch gather), not
a speed-up; real speed-ups need real devices.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def config(spec: dict):
    """The measured Config: ``updates`` updates of num_envs x num_steps, 64x64 tanh, 4x4 minibatches."""
    from bpo_jax import Config

    return Config(env=spec["env"], algo=spec["algo"], num_envs=spec["num_envs"], num_steps=spec["num_steps"],
                  num_epochs=4, num_minibatches=4, hidden_sizes=(64, 64),
                  total_steps=spec["num_envs"] * spec["num_steps"] * spec["updates"])


def worker(spec: dict) -> dict:
    """One measurement in this process: ``num_seeds`` seeds as one program, or (``separate``)
    one after another as separate 1-seed runs; steps/s counts all seeds' env steps."""
    import jax

    from bpo_jax import runner
    from common import disable_compilation_cache

    disable_compilation_cache()  # compile_seconds must be compiles, not loads from $JAX_COMPILATION_CACHE_DIR
    cfg = config(spec)
    if len(jax.devices()) < spec["devices"]:  # a slice would quietly measure fewer devices than the row says
        raise SystemExit(f"error: {spec['devices']} devices asked for, this machine has {len(jax.devices())} "
                         f"({jax.devices()[0].platform}); leave the larger counts out of --devices")
    devices = jax.devices()[: spec["devices"]]
    runs = ([runner.run(cfg.replace(seed=i), num_seeds=1, reports=1, devices=devices) for i in range(spec["num_seeds"])]
            if spec["separate"] else [runner.run(cfg, num_seeds=spec["num_seeds"], reports=1, devices=devices)])
    steps = sum(r.total_env_steps for r in runs)
    train = sum(r.train_seconds for r in runs)
    return {**spec, "compile_seconds": sum(r.compile_seconds for r in runs), "train_seconds": train,
            "steps_per_second": steps / train, "device_kind": str(devices[0].platform)}


def measure(spec: dict) -> dict:
    """Run ``worker(spec)`` in a fresh process with ``spec['devices']`` forced host devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={spec['devices']}").strip()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{spec['algo']} envs={spec['num_envs']} devices={spec['devices']} seeds={spec['num_seeds']}"
          f"{' separate' if spec['separate'] else ''}: {result['steps_per_second']:,.0f} steps/s", file=sys.stderr)
    return result


def main(argv=None) -> int:
    from common import algo_names, check_envs, env_id, machine, out_path, positive_int, positive_ints, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--env", type=env_id, default="gymnax/CartPole-v1")
    p.add_argument("--algos", type=algo_names, default="ppo,bpo")
    p.add_argument("--envs", type=positive_ints, default=",".join(str(2 ** i) for i in range(2, 13)),
                   help="env counts, comma-separated")
    p.add_argument("--devices", type=positive_ints, default="1,2,4", help="device counts")
    p.add_argument("--device-envs", type=positive_int, default=1024, help="env count of the device sweep")
    p.add_argument("--seeds", type=positive_int, default=8, help="N of the N-seeds comparison")
    p.add_argument("--num-steps", type=positive_int, default=128)
    p.add_argument("--updates", type=positive_int, default=10)
    p.add_argument("--out", type=out_path, default=None)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    check_envs(p, [args.env])
    # The device sweep splits --device-envs envs over each device count (runner.make_mesh).
    uneven = [d for d in args.devices if args.device_envs % d]
    if uneven:
        p.error(f"--device-envs {args.device_envs} must be divisible by every count in --devices "
                f"(not by {', '.join(map(str, uneven))})")
    base = dict(env=args.env, num_steps=args.num_steps, updates=args.updates, separate=False)
    # Every measured Config checked here: a worker's failure would only show up as an "error"
    # entry in the JSON, after the other workers' minutes.
    try:
        for algo in args.algos:
            for n in {*args.envs, args.device_envs}:
                config({**base, "algo": algo, "num_envs": n}).validate()
    except ValueError as e:
        p.error(str(e))
    results = {"machine": machine(), "envs": [], "devices": [], "seeds": []}
    for algo in args.algos:
        for n in args.envs:
            results["envs"].append(measure({**base, "algo": algo, "num_envs": n, "devices": 1, "num_seeds": 1}))
        for d in args.devices:
            results["devices"].append(measure({**base, "algo": algo, "num_envs": args.device_envs, "devices": d,
                                               "num_seeds": 1}))
        for separate in (False, True):
            results["seeds"].append(measure({**base, "algo": algo, "num_envs": args.device_envs, "devices": 1,
                                             "num_seeds": args.seeds, "separate": separate}))
    write_results(results, args.out)
    failed = [r for rows in results.values() if isinstance(rows, list) for r in rows if "error" in r]
    for r in failed:
        print(f"failed: {r['algo']} envs={r['num_envs']} devices={r['devices']} seeds={r['num_seeds']}"
              f"{' separate' if r['separate'] else ''}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
