"""One figure and one CSV from several finished runs (e.g. BPO against PPO on one task).

    python benchmarks/compare_curves.py runs/hopper-bpo runs/hopper-ppo \
        --out benchmarks/results/hopper_bpo_vs_ppo   # writes .csv and .png

Each run directory is what ``bpo-jax train --out DIR`` wrote (config.json, metrics.csv).  The
curve of a run is the mean over its seeds of the training-episode return per update (an update in
which no episode ended carries the last value forward), with a min-max band over seeds, against
environment steps per seed.  The CSV has one row per (run, seed, update).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings

import numpy as np

from bpo_jax.reporting import carry_forward


def load(run_dir: str) -> dict:
    """{label, env, steps [U], returns [S, U] (carried forward), run_dir} of one run directory."""
    config = json.load(open(os.path.join(run_dir, "config.json")))
    rows = list(csv.DictReader(open(os.path.join(run_dir, "metrics.csv"))))
    seeds = sorted({int(r["seed"]) for r in rows})
    updates = sorted({int(r["update"]) for r in rows})
    returns = np.full((len(seeds), len(updates)), np.nan)
    steps = np.zeros(len(updates))
    for r in rows:
        s, u = seeds.index(int(r["seed"])), updates.index(int(r["update"]))
        returns[s, u] = float(r["episode_return_mean"]) if r["episode_return_mean"] else np.nan
        steps[u] = int(r["env_steps"])
    return {"label": f"{config['algo'].upper()} ({len(seeds)} seeds)", "env": config["env"], "steps": steps,
            "returns": carry_forward(returns), "run_dir": run_dir}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories written by bpo-jax train")
    parser.add_argument("--out", required=True, help="output path without extension (.csv and .png are written)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    for d in args.runs:
        if not os.path.isfile(os.path.join(d, "metrics.csv")):
            print(f"error: {d} has no metrics.csv; pass directories written by `bpo-jax train --out`",
                  file=sys.stderr)
            return 2
    curves = [load(d) for d in args.runs]

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "algo", "seed", "env_steps", "episode_return"])
        for c in curves:
            for s, row in enumerate(c["returns"]):
                for x, y in zip(c["steps"], row):
                    w.writerow([c["run_dir"], c["label"].split()[0], s, int(x), "" if np.isnan(y) else f"{y:.2f}"])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, c in enumerate(curves):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any episode ended
            mean, lo, hi = (f(c["returns"], 0) for f in (np.nanmean, np.nanmin, np.nanmax))
        ax.plot(c["steps"], mean, color=f"C{i}", lw=1.8, label=c["label"])
        ax.fill_between(c["steps"], lo, hi, color=f"C{i}", alpha=0.2, lw=0)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("episode return (training episodes)")
    ax.set_title(args.title or curves[0]["env"])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out + ".png")
    print(f"wrote {args.out}.csv and {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
