"""A hyperparameter grid as one program against the same grid run by run: `grid.py`.

    python benchmarks/grid.py --values 1e-4,3e-4,1e-3,3e-3 --seeds 2 --total-steps 200000 \
        --rounds 2 --out benchmarks/results/grid_cartpole_cpu.json

PPO on gymnax/CartPole-v1 with the PureJaxRL defaults; the grid varies ``--field`` (default lr).
"together": every grid point's seeds as one vmapped program (``session.run_together``, what
``bpo-jax sweep --grid`` does); "one by one": each grid point its own ``RunSession``, one after
the other.  Both without the persistent compilation cache, so each compile is counted (with the
cache, grid points after the first would load the program they share).  The rounds alternate
the order.  Per-seed results are the same either way (tests/test_session.py checks it bit for
bit); the script checks the final returns agree.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.common import disable_compilation_cache, floats, log, machine, out_path, positive_int, write_results  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--field", default="lr", help="the Config field the grid varies: eps or a sweepable one "
                    "(bpo_jax.config.SWEEPABLE)")
    ap.add_argument("--values", type=floats, default="1e-4,3e-4,1e-3,3e-3", help="its values, comma-separated")
    ap.add_argument("--seeds", type=positive_int, default=2)
    ap.add_argument("--total-steps", type=positive_int, default=200_000)
    ap.add_argument("--rounds", type=positive_int, default=2)
    ap.add_argument("--out", type=out_path, default=None)
    args = ap.parse_args()
    values = args.values

    from bpo_jax import runner

    runner.use_cpu_cores(args.seeds)  # the devices the runs alone would get, so both use the same
    from bpo_jax import Config
    from bpo_jax.session import RunOptions
    from bpo_jax.sweep import TRACED

    # "together" trains every grid point as one program, which run_together allows only where
    # they differ in traced fields (eps and the sweepable ones).
    if args.field not in TRACED:
        ap.error(f"--field {args.field}: the grid points must share one program, so the field must be one of "
                 f"{', '.join(TRACED)}")
    base = Config(algo="ppo", env="gymnax/CartPole-v1", total_steps=args.total_steps)
    try:
        grid = [base.replace(**{args.field: v}).validate() for v in values]
    except (TypeError, ValueError) as e:
        ap.error(f"--field {args.field} --values {','.join(map(str, values))}: {e}")
    # compile_cache=False only skips turning the cache on; JAX turns it on by itself when
    # $JAX_COMPILATION_CACHE_DIR is set, and compile times would then be cache loads.
    disable_compilation_cache()
    options = RunOptions(progress=False, tensorboard=False, compile_cache=False)
    with tempfile.TemporaryDirectory(prefix="bpo-jax-grid-") as root:  # the run folders are not the result
        results = measure(args, grid, options, root)
    write_results(results, args.out)
    if not results["final_returns_agree"]:  # the same seeds, so the two ways must train alike
        log("error: the final returns of the two ways differ (see together/one_by_one 'final'); "
            "the timings compare different computations")
        return 1
    return 0


def measure(args, grid, options, root: str) -> dict:
    """Both ways of running ``grid``, ``args.rounds`` rounds, run folders under ``root``."""
    from bpo_jax.session import RunSession, run_together

    values = args.values

    def start(i: int, tag: str) -> RunSession:
        return RunSession.start(grid[i], args.seeds, os.path.join(root, f"{tag}{i}"), overwrite=True, options=options)

    def together() -> dict:
        t0 = time.perf_counter()
        done = run_together([start(i, "t") for i in range(len(grid))])
        return {"wall": time.perf_counter() - t0, "compile": done[0].summary["compile_seconds"],
                "train": done[0].summary["train_seconds"], "final": [d.summary["final_episode_return"] for d in done]}

    def one_by_one() -> dict:
        t0, compile_s, train_s, final = time.perf_counter(), 0.0, 0.0, []
        for i in range(len(grid)):
            done = start(i, "o").run()
            compile_s += done.summary["compile_seconds"]
            train_s += done.summary["train_seconds"]
            final.append(done.summary["final_episode_return"])
        return {"wall": time.perf_counter() - t0, "compile": compile_s, "train": train_s, "final": final}

    results = {"machine": machine(), "field": args.field, "values": values, "seeds": args.seeds,
               "total_steps": args.total_steps, "together": [], "one_by_one": []}
    for r in range(args.rounds):
        for name, fn in ((("together", together), ("one_by_one", one_by_one)) if r % 2 == 0 else
                         (("one_by_one", one_by_one), ("together", together))):
            out = fn()
            log(f"round {r + 1} {name}: wall {out['wall']:.1f} s (compile {out['compile']:.1f}, train {out['train']:.1f})")
            results[name].append(out)
    best = {name: min(results[name], key=lambda o: o["wall"]) for name in ("together", "one_by_one")}
    same = all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(best["together"]["final"], best["one_by_one"]["final"]))
    results["ratios"] = {name: best["together"][name] / best["one_by_one"][name] for name in ("wall", "compile", "train")}
    results["final_returns_agree"] = same
    return results


if __name__ == "__main__":
    sys.exit(main())
