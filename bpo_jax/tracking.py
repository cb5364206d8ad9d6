"""Live logging during a run, host side only: progress on the console, TensorBoard, W&B.

(Named ``tracking`` rather than ``logging`` so that it can never shadow the standard
library's ``logging``, which JAX and orbax import.)

Every logger is called with each finite chunk (a :class:`bpo_jax.runner.Chunk`) and
closed at the end.  Metric names map to fixed namespaces, as CleanRL's:

* ``charts/``: episode_return, episode_length, episodes (training episodes that ended);
* ``losses/``: policy_loss, value_loss, median_loss, entropy, approx_kl, clip_fraction,
  loss, grad_norm, value_mean and BPO's target_up_fraction, ratio_target_gap;
* ``perf/``: steps_per_second (per chunk, all seeds), compile_seconds (once per session).

The x axis is environment steps per seed.  The per-update metrics CSV is written at the end
by :mod:`bpo_jax.reporting` from the same rows (and kept in every checkpoint meanwhile).
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Iterator, Optional

import numpy as np

TAGS = {
    "episode_return_mean": "charts/episode_return",
    "episode_length_mean": "charts/episode_length",
    "episodes": "charts/episodes",
    "policy_loss": "losses/policy_loss",
    "value_loss": "losses/value_loss",
    "median_loss": "losses/median_loss",
    "entropy": "losses/entropy",
    "approx_kl": "losses/approx_kl",
    "clip_fraction": "losses/clip_fraction",
    "loss": "losses/loss",
    "grad_norm": "losses/grad_norm",
    "value_mean": "losses/value_mean",
    "target_up_fraction": "losses/target_up_fraction",
    "ratio_target_gap": "losses/ratio_target_gap",
}

WANDB_HINT = "--wandb needs the wandb package: pip install 'bpo-jax[wandb]'"


class TrackingError(RuntimeError):
    """A logger cannot be used as asked (e.g. --wandb without wandb); one-line message."""


def update_scalars(metrics: dict, first_update: int, batch_size: int) -> Iterator[tuple[int, int, str, float]]:
    """(seed, env_steps, tag, value) for every update of a chunk's rows [seeds, k]; a NaN
    (e.g. the return of an update in which no episode ended) is left out."""
    names = [n for n in TAGS if n in metrics]
    seeds, k = np.shape(metrics[names[0]])
    for j in range(k):
        step = (first_update + j + 1) * batch_size
        for seed in range(seeds):
            for name in names:
                value = float(metrics[name][seed, j])
                if math.isfinite(value):
                    yield seed, step, TAGS[name], value


def perf_scalars(chunk) -> dict[str, float]:
    """perf/ scalars of a chunk: throughput always, compile time on a session's first chunk."""
    out = {"perf/steps_per_second": float(chunk.steps_per_second)}
    if chunk.first:
        out["perf/compile_seconds"] = float(chunk.compile_seconds)
    return out


# ---------------------------------------------------------------- console
class ProgressLines:
    """One plain line per chunk on a stream: progress, steps, return, throughput, ETA.
    Used when the stream is not a terminal (logs, CI, pipes)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr

    def __call__(self, p: dict) -> None:
        pct = 100.0 * p["update"] / p["num_updates"]
        print(
            f"[{self.label}] {pct:5.1f}% | steps {p['env_steps']:>11,}/{p['total_steps']:,} | "
            f"return {_return_text(p['episode_return'])} | {p['steps_per_second']:>10,.0f} steps/s | "
            f"ETA {p['eta']:6.1f}s",
            file=self.stream, flush=True,
        )

    def close(self) -> None:
        pass


class ProgressBar:
    """A rich progress bar on a terminal: steps, return, steps/s, ETA."""

    def __init__(self, label: str, total_steps: int, done_steps: int = 0, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("{task.fields[sps]} steps/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console or Console(stderr=True), transient=False,
        )
        self.task = self.progress.add_task(label, total=total_steps, completed=done_steps,
                                           ret="   n/a", sps="-", eta="-")
        self.progress.start()

    def __call__(self, p: dict) -> None:
        self.progress.update(self.task, completed=p["env_steps"], ret=_return_text(p["episode_return"]),
                             sps=f"{p['steps_per_second']:,.0f}", eta=f"{p['eta']:.0f}s")

    def close(self) -> None:
        self.progress.stop()


def make_progress(label: str, total_steps: int, done_steps: int = 0, quiet: bool = False, stream=None):
    """None when quiet; a rich bar when ``stream`` (default stderr) is a terminal; plain lines otherwise."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return ProgressBar(label, total_steps, done_steps)
    return ProgressLines(label, stream)


def _return_text(ret: float) -> str:
    return "   n/a" if not np.isfinite(ret) else f"{ret:8.2f}"


# ------------------------------------------------------------ TensorBoard
class TensorBoard:
    """Event files in ``logdir``/seed_<i> (one TensorBoard run per seed, so seeds overlay);
    perf/ scalars go to seed_0 only.  ``purge_step`` (on resume: the first step after the
    checkpoint) makes TensorBoard drop what a crashed session logged beyond its checkpoint."""

    def __init__(self, logdir: str, num_seeds: int, batch_size: int, purge_step: Optional[int] = None):
        from tensorboardX import SummaryWriter

        self.batch_size = batch_size
        self.writers = [SummaryWriter(os.path.join(logdir, f"seed_{i}"), purge_step=purge_step, flush_secs=30)
                        for i in range(num_seeds)]

    def __call__(self, chunk) -> None:
        first = chunk.update - np.shape(chunk.metrics["episodes"])[1]
        for seed, step, tag, value in update_scalars(chunk.metrics, first, self.batch_size):
            self.writers[seed].add_scalar(tag, value, step)
        step = chunk.update * self.batch_size
        for tag, value in perf_scalars(chunk).items():
            self.writers[0].add_scalar(tag, value, step)
        for w in self.writers:  # a killed run keeps what it logged up to its last chunk
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


# ------------------------------------------------------------- W&B
def require_wandb():
    """The wandb module, or :class:`TrackingError` with the install hint."""
    try:
        import wandb
    except ImportError:
        raise TrackingError(WANDB_HINT)
    return wandb


class WandB:
    """One W&B run for all seeds: each update logs the mean over seeds of every tag and each
    seed's return (charts/episode_return/seed_<i>).  The run id is kept in OUT/wandb.json,
    so a resumed training run continues the same W&B run."""

    def __init__(self, out_dir: str, config: dict, batch_size: int, project: str = "bpo-jax",
                 entity: Optional[str] = None):
        wandb = require_wandb()
        self.wandb = wandb
        self.batch_size = batch_size
        id_file = os.path.join(out_dir, "wandb.json")
        if os.path.isfile(id_file):
            with open(id_file) as f:
                run_id = json.load(f)["id"]
        else:
            run_id = wandb.util.generate_id()
            with open(id_file, "w") as f:
                json.dump({"id": run_id}, f)
        self.run = wandb.init(project=project, entity=entity, name=os.path.basename(os.path.abspath(out_dir)),
                              id=run_id, resume="allow", dir=out_dir, config=config)

    def __call__(self, chunk) -> None:
        first = chunk.update - np.shape(chunk.metrics["episodes"])[1]
        rows: dict[int, dict[str, list[float]]] = {}
        for seed, step, tag, value in update_scalars(chunk.metrics, first, self.batch_size):
            rows.setdefault(step, {}).setdefault(tag, []).append(value)
            if tag == "charts/episode_return":
                rows[step][f"{tag}/seed_{seed}"] = [value]
        last = chunk.update * self.batch_size
        for step in sorted(rows):
            values = {tag: float(np.mean(v)) for tag, v in rows[step].items()}
            if step == last:
                values.update(perf_scalars(chunk))
            self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """Several chunk loggers as one; closing closes them all."""

    def __init__(self, loggers: list):
        self.loggers = [lg for lg in loggers if lg is not None]

    def __call__(self, chunk) -> None:
        for lg in self.loggers:
            lg(chunk)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()
