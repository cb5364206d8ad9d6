"""Host-side outputs of a run: progress lines, metrics.csv, summary.json, config.json, curve.png.

Everything is written into a private staging folder beside the destination and moved into
place only when complete, so a failed or interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np

from bpo_jax.runner import RunResult

# Metric columns in CSV order (after update, seed, env_steps); missing ones (e.g. BPO-only
# statistics in a PPO run) are skipped.
CSV_METRICS = (
    "episode_return_mean", "episode_length_mean", "episodes", "loss", "policy_loss",
    "value_loss", "median_loss", "entropy", "approx_kl", "clip_fraction",
    "target_up_fraction", "ratio_target_gap", "grad_norm", "value_mean",
)


class OutputDirError(ValueError):
    """The output directory cannot be used as asked (e.g. exists and is not empty)."""


def default_run_dir(config, root: str = "runs") -> str:
    """runs/<suite>_<name>__<algo>__<YYYYmmdd-HHMMSS>, with a suffix if that exists already."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{config.env.replace('/', '_')}__{config.algo}__{stamp}")
    path, i = base, 1
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def check_output_dir(path: str, overwrite: bool) -> None:
    """Fail before training, not after, if ``path`` is a non-empty directory or a file."""
    if os.path.isfile(path):
        raise OutputDirError(f"output path {path!r} is a file; choose a directory")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise OutputDirError(f"output directory {path!r} exists and is not empty; pass --overwrite or choose another --out")


@contextmanager
def staged_dir(path: str, overwrite: bool) -> Iterator[str]:
    """Yield a staging folder; on success it replaces ``path``, on any error it is removed."""
    check_output_dir(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.partial-", dir=parent)
    try:
        yield staging
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def tail_returns(metrics: dict, fraction: float = 0.1) -> np.ndarray:
    """[seeds] mean return of the episodes that ended in the last ``fraction`` of updates
    (NaN for a seed with none); ``metrics`` arrays are [seeds, updates]."""
    n = metrics["episodes"].shape[1]
    tail = slice(n - max(1, int(round(n * fraction))), n)
    counts = metrics["episodes"][:, tail].astype(np.float64)
    returns = np.nan_to_num(metrics["episode_return_mean"][:, tail].astype(np.float64))
    per_seed = (returns * counts).sum(1) / np.maximum(counts.sum(1), 1)
    return np.where(counts.sum(1) > 0, per_seed, np.nan)


def final_episode_return(result: RunResult, fraction: float = 0.1) -> float:
    """Mean over seeds of the mean return of episodes that ended in the last ``fraction`` of updates."""
    per_seed = tail_returns(result.metrics, fraction)
    return float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else float("nan")


def summary(result: RunResult) -> dict:
    return {
        "env": result.config.env,
        "algo": result.config.algo,
        "num_seeds": result.num_seeds,
        "final_episode_return": final_episode_return(result),
        "env_steps": int(result.env_steps[-1]),
        "env_steps_all_seeds": result.total_env_steps,
        "num_updates": int(len(result.env_steps)),
        "compile_seconds": round(result.compile_seconds, 3),
        "train_seconds": round(result.train_seconds, 3),
        "steps_per_second": round(result.total_env_steps / result.train_seconds, 1),
    }


def write_run(result: RunResult, path: str, overwrite: bool = False, extra: Optional[dict] = None) -> dict:
    """Write config.json, metrics.csv, summary.json and curve.png into ``path`` atomically."""
    info = summary(result)
    with staged_dir(path, overwrite) as staging:
        config = {**result.config.resolved().to_dict(), "num_seeds": result.num_seeds, **(extra or {})}
        _write_json(os.path.join(staging, "config.json"), config)
        _write_csv(result, os.path.join(staging, "metrics.csv"))
        _write_json(os.path.join(staging, "summary.json"), info)
        plot_curve(result, os.path.join(staging, "curve.png"))
    return info


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
        f.write("\n")


def _write_csv(result: RunResult, path: str) -> None:
    names = [m for m in CSV_METRICS if m in result.metrics]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["update", "seed", "env_steps", *names, "steps_per_second"])
        for seed in range(result.num_seeds):
            for u, steps in enumerate(result.env_steps):
                vals = [_fmt(result.metrics[m][seed, u]) for m in names]
                w.writerow([u + 1, seed, int(steps), *vals, f"{result.steps_per_second[u]:.1f}"])


def _fmt(x) -> str:
    x = float(x)
    return "" if np.isnan(x) else f"{x:.6g}"


def smoothed_returns(result: RunResult) -> np.ndarray:
    """[seeds, updates] episode return, carried forward over updates in which no episode ended."""
    r = result.metrics["episode_return_mean"].astype(np.float64).copy()
    for row in r:
        last = np.nan
        for i, v in enumerate(row):
            last = v if np.isfinite(v) else last
            row[i] = last
    return r


def plot_curve(result: RunResult, path: str) -> None:
    """Learning curve: mean over seeds with a min-max band, against env steps per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = smoothed_returns(result)
    x = result.env_steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any episode ended
        mean, lo, hi = np.nanmean(r, 0), np.nanmin(r, 0), np.nanmax(r, 0)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(x, mean, color="C0", lw=1.8, label=f"{result.config.algo.upper()} mean of {result.num_seeds} seed(s)")
    if result.num_seeds > 1:
        ax.fill_between(x, lo, hi, color="C0", alpha=0.25, lw=0, label="min-max over seeds")
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("episode return (training episodes)")
    ax.set_title(f"{result.config.env}: {result.config.algo.upper()}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class ProgressPrinter:
    """One line per chunk on stderr: progress, steps, return, throughput, ETA."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr

    def __call__(self, p: dict) -> None:
        pct = 100.0 * p["update"] / p["num_updates"]
        ret = p["episode_return"]
        ret_s = "   n/a" if not np.isfinite(ret) else f"{ret:8.2f}"
        print(
            f"[{self.label}] {pct:5.1f}% | steps {p['env_steps']:>11,}/{p['total_steps']:,} | "
            f"return {ret_s} | {p['steps_per_second']:>10,.0f} steps/s | ETA {p['eta']:6.1f}s",
            file=self.stream, flush=True,
        )
