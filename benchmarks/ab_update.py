"""Two versions of bpo-jax in ONE process: per-update time of the whole update, the rollout and
the learning (``where_time_goes.update_programs``), interleaved call by call.

    git worktree add /tmp/before <commit>
    python benchmarks/ab_update.py /tmp/before [--algo ppo] [--rounds 7]

Each checkout's ``bpo_jax`` is imported in turn (the modules are swapped in ``sys.modules``) and
its programs are AOT-compiled; then every round calls each program once, so both versions see
the same machine load.  Run an A/A comparison first (a copy of the same commit on both sides):
on the 2-core VM on 2026-12-03 identical programs differed by up to 12% (rollout 0.88x, whole
update 1.015x, 11 rounds), so only differences beyond that say anything there.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import jax

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import algo_name, positive_int  # noqa: E402


def programs(root: str, algo: str) -> dict:
    """name -> (compiled, args, length) from the bpo_jax and where_time_goes under ``root``."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("bpo_jax", "where_time_goes", "common")]:
        del sys.modules[name]
    saved = list(sys.path)
    sys.path[:0] = [root, os.path.join(root, "benchmarks")]
    try:
        # bpo_jax first: the checkout's common.py moves its root behind PYTHONPATH's entries, where
        # the other checkout's root, left by the previous call, would win (the sides swapped).
        bpo_jax = importlib.import_module("bpo_jax")
        wtg = importlib.import_module("where_time_goes")
        if os.path.commonpath([os.path.realpath(bpo_jax.__file__), os.path.realpath(root)]) != os.path.realpath(root):
            raise SystemExit(f"ab_update: error: bpo_jax came from {bpo_jax.__file__}, not from {root}")
        return wtg.update_programs(bpo_jax.Config(algo=algo))
    finally:
        sys.path[:] = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="path of the other checkout (a git worktree of the commit to compare with)")
    parser.add_argument("--algo", type=algo_name, default="ppo", help="ppo or bpo (default ppo)")
    parser.add_argument("--rounds", type=positive_int, default=7, help="interleaved calls per program (median taken)")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.before, "benchmarks", "where_time_goes.py")):
        parser.error(f"{args.before} is not a bpo-jax checkout with benchmarks/where_time_goes.py "
                     "(for a revision: git worktree add /tmp/before REV, then pass /tmp/before)")
    roots = {"before": os.path.abspath(args.before), "after": os.path.dirname(HERE)}
    progs = {(label, name): p for label, root in roots.items() for name, p in programs(root, args.algo).items()}
    times = {key: [] for key in progs}
    for _ in range(args.rounds):
        for key, (compiled, call_args, length) in progs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*call_args))
            times[key].append((time.perf_counter() - t0) / length * 1e6)
    med = {key: statistics.median(t) for key, t in times.items()}
    names = [name for label, name in progs if label == "before"]
    print(f"{args.algo}, us per update (median of {args.rounds}); after/before")
    for name in names:
        b, a = med[("before", name)], med[("after", name)]
        print(f"  {name:<18} before {b:9,.0f}  after {a:9,.0f}  {a / b:6.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
