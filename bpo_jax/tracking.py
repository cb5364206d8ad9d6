"""Live logging during a run, host side only: progress on the console, TensorBoard, W&B.

(Named ``tracking`` rather than ``logging`` so that it can never shadow the standard
library's ``logging``, which JAX and orbax import.)

Every logger is called with each finite chunk (a :class:`bpo_jax.runner.Chunk`) and
closed at the end.  Metric names map to fixed namespaces, as CleanRL's (declared by the
algorithm objects, :func:`bpo_jax.algorithms.metric_tags`):

* ``charts/``: episode_return, episode_length, episodes (training episodes that ended);
* ``losses/``: policy_loss, value_loss, median_loss, entropy, approx_kl, clip_fraction,
  loss, grad_norm, value_mean and BPO's target_up_fraction, ratio_target_gap;
* ``perf/``: steps_per_second (per chunk: env steps of all seeds per second of training
  time), compile_seconds (once per session).

The x axis is environment steps per seed.  The per-update metrics CSV is written at the end
by :mod:`bpo_jax.reporting` from the same rows (and kept in every checkpoint meanwhile).

Console progress never stops a run: when its stream's reader has gone (a closed pipe, as in
``bpo-jax train | head -2``) it falls silent and training goes on.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import IO, Iterator, Optional

import numpy as np

from bpo_jax import algorithms
from bpo_jax.console import silence
from bpo_jax.deferred_imports import deferred
from bpo_jax.errors import finishes_before_interrupt
from bpo_jax.reporting import write_json
from bpo_jax.runner import Chunk, Progress


WANDB_HINT = "logging to W&B needs the wandb package: pip install 'bpo-jax[wandb]'"


class TrackingError(RuntimeError):
    """A logger cannot be used as asked (e.g. W&B without wandb); one-line message."""


def update_scalars(metrics: dict, first_update: int, batch_size: int) -> Iterator[tuple[int, int, str, float]]:
    """(seed, env_steps, tag, value) for every update of a chunk's rows [seeds, k]; a NaN
    (e.g. the return of an update in which no episode ended) is left out."""
    tags = algorithms.metric_tags()
    names = [n for n in tags if n in metrics]
    seeds, k = np.shape(metrics[names[0]])
    for j in range(k):
        step = (first_update + j + 1) * batch_size
        for seed in range(seeds):
            for name in names:
                value = float(metrics[name][seed, j])
                if math.isfinite(value):
                    yield seed, step, tags[name], value


def perf_scalars(chunk: Chunk) -> dict[str, float]:
    """perf/ scalars of a chunk: throughput always, compile time on a session's first chunk."""
    out = {"perf/steps_per_second": float(chunk.steps_per_second)}
    if chunk.first:
        out["perf/compile_seconds"] = float(chunk.compile_seconds)
    return out


# ---------------------------------------------------------------- console
def throughput_text(steps_per_second: float, num_seeds: int) -> str:
    """The run's one steps/s figure, labelled (see :func:`bpo_jax.runner.throughput`)."""
    seeds = "1 seed" if num_seeds == 1 else f"all {num_seeds} seeds"
    return f"{steps_per_second:,.0f} env steps/s ({seeds}, training time)"


class ProgressLines:
    """One plain line per chunk on a stream: progress, steps, return, throughput, ETA.
    Used when the stream is not a terminal (logs, CI, pipes)."""

    def __init__(self, label: str, stream: Optional[IO] = None):
        self.label = label
        self.stream = stream or sys.stderr

    def __call__(self, p: Progress) -> None:
        if self.stream is None:
            return
        pct = 100.0 * p.update / p.num_updates
        try:
            print(f"[{self.label}] {pct:5.1f}% | steps per seed {p.env_steps:>11,}/{p.total_steps:,} | "
                  f"return {_return_text(p.episode_return)} | {throughput_text(p.steps_per_second, p.num_seeds)} | "
                  f"ETA {p.eta:6.1f}s", file=self.stream, flush=True)
        except OSError:
            silence(self.stream)
            self.stream = None

    def close(self) -> None:
        pass


class ProgressBar:
    """A rich progress bar on a terminal: steps, return, steps/s, ETA.  Where the terminal is too
    narrow for them in full, the steps show as a percentage and the throughput without its label
    (the final line has it); the bar is drawn where room is left, and the run's label gives way
    last, cut with an ellipsis.  (Rich squeezes every column alike: an 80-column terminal lost
    the return and the ETA.)"""

    _BAR = 20  # the least width worth drawing the bar at

    def __init__(self, label: str, total_steps: int, done_steps: int = 0, console=None, num_seeds: int = 1000):
        from rich.console import Console
        from rich.progress import BarColumn, Progress as Bar, TextColumn
        from rich.table import Column

        console = console or Console(stderr=True)
        steps = f"{total_steps:,}/{total_steps:,} steps per seed"
        rate = len(throughput_text(12_345_678, num_seeds))  # the longest it gets for these seeds
        fields = len("return -1234.56") + len("ETA 99999s")  # each column also takes a space
        self.wide = console.width >= len(label) + len(steps) + rate + fields + 5
        if self.wide:
            shown = ["{task.completed:,.0f}/{task.total:,.0f} steps per seed", "return {task.fields[ret]}",
                     "{task.fields[sps]}", "ETA {task.fields[eta]}"]
            room = console.width - len(steps) - rate - fields - 5
        else:
            shown = ["{task.percentage:5.1f}%", "return {task.fields[ret]}", "{task.fields[sps]}",
                     "ETA {task.fields[eta]}"]
            room = console.width - len("100.0%") - len("12,345,678 steps/s") - fields - 5
        columns = [TextColumn("[bold]{task.description}",
                              table_column=Column(no_wrap=True, overflow="ellipsis", max_width=max(room, 8)))]
        if room - len(label) > self._BAR:
            columns.append(BarColumn(bar_width=room - len(label) - 1))
        columns += [TextColumn(text, table_column=Column(no_wrap=True)) for text in shown]
        self.progress: Optional[Bar] = Bar(*columns, console=console, transient=False)
        self.task = self.progress.add_task(label, total=total_steps, completed=done_steps,
                                           ret="   n/a", sps="- env steps/s", eta="-")
        self.progress.start()

    def __call__(self, p: Progress) -> None:
        if self.progress is None:
            return
        sps = (throughput_text(p.steps_per_second, p.num_seeds) if self.wide else
               f"{p.steps_per_second:,.0f} steps/s")
        try:
            self.progress.update(self.task, completed=p.env_steps, ret=_return_text(p.episode_return), sps=sps,
                                 eta=f"{p.eta:.0f}s")
        except OSError:
            self.close()

    def close(self) -> None:
        bar, self.progress = self.progress, None
        if bar is not None:
            try:
                bar.stop()
            except OSError:
                silence(bar.console.file)


def make_progress(label: str, total_steps: int, done_steps: int = 0, quiet: bool = False, stream=None,
                  num_seeds: int = 1000):
    """None when quiet; a rich bar when ``stream`` (default stderr) is a terminal; plain lines otherwise.
    ``num_seeds``: the seeds the progress counts (all runs' of one program), which the bar's
    throughput names."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return ProgressBar(label, total_steps, done_steps, num_seeds=num_seeds)
    return ProgressLines(label, stream)


def _return_text(ret: float) -> str:
    return "   n/a" if not np.isfinite(ret) else f"{ret:8.2f}"


# ------------------------------------------------------------ TensorBoard
_FILES_PER_WRITER = 1  # each seed's event file, held open while the run trains


def check_open_files(num_runs: int) -> None:
    """Raise :class:`TrackingError` where ``num_runs`` TensorBoard runs (one per seed) need more
    open files than this process may have, after raising its soft limit to the hard one: 400
    seeds under the usual ``ulimit -n 1024`` failed with "Too many open files" after writing
    hundreds of tb/ folders."""
    try:
        import resource
    except ImportError:  # not a Unix: no limit to read
        return
    need = num_runs * _FILES_PER_WRITER + 256  # the rest of the process: libraries, checkpoints
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    if hard == resource.RLIM_INFINITY or need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))
        return
    raise TrackingError(f"{num_runs:,} TensorBoard runs (one per seed trained at once) need about {need:,} open "
                        f"files, more than this process may open ({hard:,}, ulimit -n); log no TensorBoard runs "
                        "(`tensorboard=False`; metrics.csv keeps every seed's metrics) "
                        "or train fewer seeds")


def _tensorboardx():
    """tensorboardX's synchronous ``EventsWriter`` and its ``Event``, ``SessionLog`` and
    ``Summary`` protos, imported without torch (:mod:`bpo_jax.deferred_imports`)."""
    with deferred("torch", hidden=True):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary
    return EventsWriter, Event, SessionLog, Summary


class TensorBoard:
    """Event files in ``logdir``/seed_<i> (one TensorBoard run per seed, so seeds overlay);
    perf/ scalars go to seed_0 only.  ``purge_step`` (on resume: the first step after the
    checkpoint) makes TensorBoard drop what a crashed session logged beyond its checkpoint.

    Each chunk is written and flushed to the files before the call returns, so a checkpoint
    saved after it never runs ahead of the logs: tensorboardX's ``SummaryWriter`` hands events
    to a writer thread through a queue, and its ``flush`` left what was still queued, so a run
    killed after a checkpoint lost updates before it for good (a resume purges only those
    after).  No thread, no queue; a Ctrl-C waits for the call's end, so no record is cut."""

    @finishes_before_interrupt
    def __init__(self, logdir: str, num_seeds: int, batch_size: int, purge_step: Optional[int] = None):
        EventsWriter, self._event, SessionLog, Summary = _tensorboardx()
        self._summary, self._value = Summary, Summary.Value
        self.batch_size = batch_size
        self.writers = []
        for i in range(num_seeds):
            folder = os.path.join(logdir, f"seed_{i}")
            os.makedirs(folder, exist_ok=True)
            writer = EventsWriter(os.path.join(folder, "events"))  # its first record: the file version
            if purge_step is not None:  # as tensorboardX's SummaryWriter(purge_step=...) marks it
                now = time.time()
                writer.write_event(self._event(wall_time=now, step=purge_step, file_version="brain.Event:2"))
                writer.write_event(self._event(wall_time=now, step=purge_step,
                                               session_log=SessionLog(status=SessionLog.START)))
            writer.flush()
            self.writers.append(writer)

    @finishes_before_interrupt
    def __call__(self, chunk: Chunk) -> None:
        # One event per (seed, update) holding all of its scalars, not a record per scalar, each
        # with its own step and time.
        first = chunk.update - np.shape(chunk.metrics["episodes"])[1]
        events: dict[tuple[int, int], list] = {}
        for seed, step, tag, value in update_scalars(chunk.metrics, first, self.batch_size):
            events.setdefault((seed, step), []).append(self._value(tag=tag, simple_value=value))
        step = chunk.update * self.batch_size
        events.setdefault((0, step), []).extend(self._value(tag=tag, simple_value=value)
                                                for tag, value in perf_scalars(chunk).items())
        now = time.time()
        for (seed, step), values in events.items():
            self.writers[seed].write_event(self._event(wall_time=now, step=step, summary=self._summary(value=values)))
        for w in self.writers:  # a killed run keeps what it logged up to its last chunk
            w.flush()

    @finishes_before_interrupt
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
            write_json(id_file, {"id": run_id})
        self.run = wandb.init(project=project, entity=entity, name=os.path.basename(os.path.abspath(out_dir)),
                              id=run_id, resume="allow", dir=out_dir, config=config)

    def __call__(self, chunk: Chunk) -> None:
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

    def __call__(self, chunk: Chunk) -> None:
        for lg in self.loggers:
            lg(chunk)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()
