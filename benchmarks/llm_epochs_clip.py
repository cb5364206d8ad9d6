"""GBPO against GRPO as the epochs per batch and the clip range grow (the paper's section 6.4
claim: GBPO keeps its gains at 10 epochs and clip 0.3, GRPO becomes unstable).

Per seed: one supervised warm start of the small transformer on two-digit addition, then every
(algo, epochs, clip) RL run starts from that same checkpoint.  Records the greedy accuracy on
the evaluation problems before and after RL, and the fraction of response tokens whose ratio
pi_new / pi_old has left [1 - clip, 1 + clip] at the end of each step's update (averaged over
steps).  Writes a JSON of every run and prints a Markdown table.

    python benchmarks/llm_epochs_clip.py --seeds 3 --out benchmarks/results/llm_epochs_clip.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import comma_list, floats, machine, out_path, positive_int, positive_ints, write_results  # noqa: E402

from bpo_jax import runner  # noqa: E402
from bpo_jax.llm import trainer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=positive_int, default=3)
    ap.add_argument("--epochs", type=positive_ints, default="1,5,10")
    ap.add_argument("--clips", type=floats, default="0.2,0.3")
    ap.add_argument("--algos", type=comma_list(str, "algorithm names"), default="gbpo,grpo")
    ap.add_argument("--rl-steps", type=positive_int, default=30)
    ap.add_argument("--ttrl", action="store_true", help="majority-vote pseudo-labels instead of true rewards")
    ap.add_argument("--eval-every", type=positive_int, default=None,
                    help="greedy evaluation cadence (default: only at the end)")
    ap.add_argument("--layers", type=positive_int, default=1)
    ap.add_argument("--num-eval", type=positive_int, default=64)
    # No default: a default path under benchmarks/results/ would overwrite the committed result.
    ap.add_argument("--out", type=out_path, default=None, help="results JSON (default: print the table only)")
    args = ap.parse_args()
    base = trainer.LLMConfig(num_layers=args.layers, num_eval=args.num_eval, num_train=2048, rl_steps=args.rl_steps,
                             eval_every=args.eval_every or args.rl_steps, lr=1e-4, fast_compile=True, ttrl=args.ttrl)
    try:  # every run's config, so that a bad one fails now and not after a warm start
        for algo in args.algos:
            for clip in args.clips:
                for epochs in args.epochs:
                    dataclasses.replace(base, algo=algo, clip=clip, epochs=epochs).validate()
    except (TypeError, ValueError) as e:
        ap.error(str(e))
    runner.enable_compilation_cache()  # the same program for every seed compiles once
    about = machine()
    problems = trainer.make_problem_sets(base)
    mesh = trainer.make_mesh()
    runs, t_start = [], time.time()
    for seed in range(args.seeds):
        params, warm = trainer.warm_start(dataclasses.replace(base, seed=seed), problems, mesh=mesh)
        print(f"seed {seed}: warm start {warm['steps']} steps, dev accuracy {warm['dev_accuracy']:.3f}", flush=True)
        for algo in args.algos:
            for clip in args.clips:
                for epochs in args.epochs:
                    cfg = dataclasses.replace(base, seed=seed, algo=algo, clip=clip, epochs=epochs)
                    t0 = time.time()
                    _, hist = trainer.rl_train(cfg, params, problems, mesh=mesh)
                    run = {"seed": seed, "algo": algo, "clip": clip, "epochs": epochs,
                           "before": hist[0]["accuracy"], "after": hist[-1]["accuracy"],
                           "peak": max(h["accuracy"] for h in hist if h.get("accuracy") is not None),
                           "out_frac": float(np.mean([h["ratio_out_frac_final"] for h in hist[1:]])),
                           "out_frac_during": float(np.mean([h["ratio_out_frac"] for h in hist[1:]])),
                           "ratio_max": float(np.max([h["ratio_max"] for h in hist[1:]])),
                           "kl_final": hist[-1]["kl"], "seconds": time.time() - t0}
                    runs.append(run)
                    print(json.dumps(run), flush=True)
    print(table(runs))  # first: if the file cannot be written, the table is already out
    write_results({"machine": about, "config": dataclasses.asdict(base), "args": vars(args), "runs": runs,
                   "wall_seconds": time.time() - t_start}, args.out, echo=False)
    return 0


def table(runs: list[dict]) -> str:
    """Markdown: one row per (algo, clip, epochs), means over seeds (min..max of the gain)."""
    lines = ["| config | seeds | accuracy before | accuracy after | gain (min..max) | ratio outside box after update | max ratio |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["algo"], r["clip"], r["epochs"]) for r in runs})
    for algo, clip, epochs in keys:
        rs = [r for r in runs if (r["algo"], r["clip"], r["epochs"]) == (algo, clip, epochs)]
        gain = [r["after"] - r["before"] for r in rs]
        lines.append(f"| {algo.upper()}-{clip}-{epochs} | {len(rs)} | {np.mean([r['before'] for r in rs]):.3f} | "
                     f"{np.mean([r['after'] for r in rs]):.3f} | {np.mean(gain):+.3f} ({min(gain):+.3f}..{max(gain):+.3f}) | "
                     f"{np.mean([r['out_frac'] for r in rs]):.3f} | {np.mean([r['ratio_max'] for r in rs]):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
