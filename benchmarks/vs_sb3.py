"""Our ``paper/`` PPO preset against Stable-Baselines3's PPO, the implementation it names, side by side.

    python benchmarks/vs_sb3.py --task Hopper-v4 --seeds 5 --total-steps 1000000 --workers 2 \\
        --ours runs/hopper-1m-ppo --out benchmarks/results/vs_sb3_hopper.json --figure vs_sb3_hopper.png

The paper's PPO baseline is SB3's ``PPO`` with RL-Zoo-tuned values per task (reference digest
section 6.1).  This script reads our preset (``presets.resolve("paper/<task>", "ppo")``), gives
every one of its settings to SB3 under SB3's names (so the preset is checked for meaning the
same thing there), trains SB3 on Gymnasium's own ``<task>`` (MuJoCo in C, one process per seed,
one torch thread each) and compares the learning curves with our finished run of the same preset
(``--ours``: a run or sweep directory, e.g. from ``bpo-jax sweep --suite paper/mujoco --tasks
Hopper-v4 --algos ppo``): the return per seed at several points of training, defined as for
our runs (mean of the episodes that ended in the last 10% of updates up to the point).

Needs ``stable-baselines3`` (``pip install stable-baselines3``; not a dependency of bpo-jax)
with torch, gymnasium and mujoco.  Nothing is copied from SB3; it is imported and run.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import multiprocessing
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import existing_path, log, machine, out_path, positive_int, positive_ints, write_results  # noqa: E402

from bpo_jax import Config, curves, presets  # noqa: E402


def sb3_kwargs(task: str) -> dict:
    """SB3 ``PPO`` arguments equal to our ``paper/<task>`` PPO preset; refuses a setting SB3 has no
    equal for."""
    p = dataclasses.asdict(Config(**presets.resolve(f"paper/{task}", "ppo")).resolved())
    batch = p["num_envs"] * p["num_steps"]
    if batch % p["num_minibatches"]:
        raise SystemExit(f"error: {batch} samples do not split into {p['num_minibatches']} minibatches")
    assumed = {"normalize_obs": False, "normalize_rewards": False, "value_clip": 0.0, "anneal_lr": False,
                   "action_squash": "clip", "reward_scale": 1.0, "activation": "relu"}
    for field, sb3_value in assumed.items():
        if p[field] != sb3_value:
            raise SystemExit(f"error: paper/{task} sets {field}={p[field]!r}; this comparison assumes {sb3_value!r}")
    return dict(
        n_envs=p["num_envs"], n_steps=p["num_steps"], batch_size=batch // p["num_minibatches"],
        n_epochs=p["num_epochs"], learning_rate=p["lr"], gamma=p["gamma"], gae_lambda=p["gae_lambda"],
        clip_range=p["eps"], ent_coef=p["ent_coef"], vf_coef=p["vf_coef"], max_grad_norm=p["max_grad_norm"],
        normalize_advantage=p["normalize_advantages"],
        policy_kwargs=dict(net_arch=dict(pi=list(p["hidden_sizes"]), vf=list(p["hidden_sizes"])),
                           log_std_init=math.log(p["init_std"])),  # activation ReLU: set in the worker
    )


def train_sb3(job: tuple[str, int, int, dict]) -> dict:
    """One SB3 seed; returns its per-rollout episode returns (a curve of [U] updates)."""
    task, seed, total_steps, kw = job
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    kw = {**kw, "policy_kwargs": {**kw["policy_kwargs"], "activation_fn": torch.nn.ReLU}}
    n_envs = kw.pop("n_envs")

    class Record(BaseCallback):
        """Episodes that ended in each rollout, as our metrics.csv holds them per update."""

        def __init__(self):
            super().__init__()
            self.steps, self.sums, self.counts, self._ended = [], [], [], []

        def _on_step(self) -> bool:
            self._ended += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
            return True

        def _on_rollout_end(self) -> None:
            self.steps.append(self.num_timesteps)
            self.sums.append(float(np.sum(self._ended)))
            self.counts.append(len(self._ended))
            self._ended = []

    env = make_vec_env(task, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kw)
    record = Record()
    start = time.perf_counter()
    model.learn(total_steps, callback=record)
    seconds = time.perf_counter() - start
    log(f"[sb3 {task}] seed {seed}: {record.num_timesteps:,} steps in {seconds:.0f}s")
    return {"seed": seed, "steps": record.steps, "sums": record.sums, "counts": record.counts, "seconds": seconds}


def sb3_curve(task: str, total_steps: int, runs: list[dict]) -> curves.Curve:
    """The SB3 seeds as one Curve (their rollouts have the same boundaries)."""
    n = min(len(r["steps"]) for r in runs)
    counts = np.array([r["counts"][:n] for r in runs], float)
    sums = np.array([r["sums"][:n] for r in runs], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.where(counts > 0, sums / counts, np.nan)
    # Ours trains mjx/<task>; the same env name puts both on one panel of curves.plot.
    return curves.Curve(run_dir="sb3", env=f"mjx/{task}", algo="sb3 ppo", total_steps=total_steps,
                        steps=np.asarray(runs[0]["steps"][:n], float), returns=returns, episodes=counts)


def compare(ours: curves.Curve, sb3: curves.Curve, points: list[int]) -> list[dict]:
    rows = []
    for step in points:
        a, b = ours.at(step), sb3.at(step)
        rows.append({"step": step, "ours_per_seed": a.tolist(), "sb3_per_seed": b.tolist(),
                     "ours_mean": float(np.nanmean(a)), "ours_std": float(np.nanstd(a)),
                     "sb3_mean": float(np.nanmean(b)), "sb3_std": float(np.nanstd(b)),
                     "ratio_ours_to_sb3": float(np.nanmean(a) / np.nanmean(b))})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="Hopper-v4", help="a paper/mujoco task: Hopper-v4, Ant-v4, Humanoid-v4, Swimmer-v4")
    ap.add_argument("--seeds", type=positive_int, default=5)
    ap.add_argument("--total-steps", type=positive_int, default=1_000_000)
    ap.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="SB3 seeds trained at once")
    ap.add_argument("--ours", type=existing_path, help="our finished PPO run (or sweep) of the same preset to compare with")
    ap.add_argument("--points", type=positive_ints, default="100000,250000,500000,1000000", help="steps per seed to compare at")
    ap.add_argument("--out", type=out_path, help="JSON file for the results")
    ap.add_argument("--figure", type=out_path, help="PNG with both curves (needs --ours)")
    args = ap.parse_args(argv)
    # The workers import it in spawned processes, where a missing package is a traceback per seed.
    if importlib.util.find_spec("stable_baselines3") is None:
        ap.error("needs stable-baselines3: pip install stable-baselines3")
    if f"paper/{args.task}" not in presets.names():
        print(f"error: no preset paper/{args.task}; tasks: "
              + ", ".join(n[6:] for n in presets.names() if n.startswith("paper/") and "-v" in n), file=sys.stderr)
        return 2
    if args.figure and not args.ours:
        print("error: --figure draws both curves and needs --ours", file=sys.stderr)
        return 2
    ours = None
    if args.ours:
        try:
            found = [d for d in curves.find_runs([args.ours]).runs if curves.load(d).algo == "ppo"]
        except curves.CurveError as e:
            ap.error(str(e))
        if not found:
            print(f"error: no finished PPO run under {args.ours}", file=sys.stderr)
            return 2
        ours = curves.load(found[0])
    kw = sb3_kwargs(args.task)
    log(f"SB3 PPO on {args.task}, {args.seeds} seeds x {args.total_steps:,} steps, {args.workers} at a time: {kw}")
    jobs = [(args.task, seed, args.total_steps, kw) for seed in range(args.seeds)]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        runs = pool.map(train_sb3, jobs, chunksize=1)
    sb3 = sb3_curve(args.task, args.total_steps, runs)
    import stable_baselines3
    import torch

    results = {"machine": machine(), "task": args.task, "seeds": args.seeds, "total_steps": args.total_steps,
               "sb3_version": stable_baselines3.__version__, "torch": torch.__version__, "sb3_kwargs": kw,
               "sb3_seconds_per_seed": [r["seconds"] for r in runs],
               "sb3_final_per_seed": sb3.at(args.total_steps).tolist()}
    if ours is not None:
        points = [p for p in args.points if p <= min(args.total_steps, ours.total_steps)]
        results["ours_run"] = ours.run_dir
        results["comparison"] = compare(ours, sb3, points)
        log("step | ours PPO mean ± std | SB3 PPO mean ± std | ours / SB3")
        for r in results["comparison"]:
            log(f"{r['step']:,} | {r['ours_mean']:.1f} ± {r['ours_std']:.1f} | {r['sb3_mean']:.1f} ± {r['sb3_std']:.1f} "
                f"| {r['ratio_ours_to_sb3']:.2f}")
        if args.figure:
            curves.plot([ours, sb3], args.figure, f"paper/{args.task} PPO: bpo-jax against Stable-Baselines3")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
