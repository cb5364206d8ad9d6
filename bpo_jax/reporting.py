"""Host-side outputs of a run: the run directory, metrics.csv, summary.json, config.json, curve.png.

A run (:mod:`bpo_jax.session`) streams checkpoints and TensorBoard events into its directory
while it trains, so the directory exists from the start, marked by an ``INCOMPLETE`` file (what
happened and how to resume) that is removed only once the final files are in place: a directory
without the marker is a finished run.  Every file, here and in checkpoints, is written through
:func:`write_atomic` (a temporary name, then a rename), so no file is ever half-written.  Bad
input is rejected before the directory is created.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import tempfile
import time
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np

from bpo_jax import algorithms

from bpo_jax.runner import RunResult

INCOMPLETE = "INCOMPLETE"  # marker file of a run directory whose run has not finished
DIVERGED = "DIVERGED"  # beside INCOMPLETE: stopped by an update that resuming would only repeat (a NaN)
SWEEP_FILE = "sweep.json"  # a sweep directory's record of what it runs (bpo_jax.sweep)
OUTPUT_FILES = ("config.json", "metrics.csv", "summary.json", "curve.png")



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


def check_creatable(path: str) -> None:
    """Fail if directory ``path`` can be neither used nor created: a file in its place or above
    it, or the nearest existing folder above it not writable (os.makedirs would fail late)."""
    if not path:
        raise OutputDirError("the output path `out` is empty; name a directory")
    if os.path.islink(path) and not os.path.exists(path):
        raise OutputDirError(f"output path {path!r} is a symbolic link to {os.readlink(path)!r}, which does not exist; "
                             "remove the link or choose another directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"output path {path!r} is a file; choose a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputDirError(f"cannot create {path!r}: {existing!r} is a file; choose another directory")
    _check_name_lengths(path, existing)
    try:  # a real file, not os.access: root passes os.access on read-only mounts and pseudo-filesystems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OutputDirError(f"cannot write in {existing!r} (a test file there failed: {e.strerror or e}); choose "
                             "another directory") from None


def _check_name_lengths(path: str, existing: str) -> None:
    """Fail if a folder ``path`` would create under ``existing`` has a name longer than that
    file system allows (os.makedirs would fail once the run has started)."""
    try:
        longest = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):  # no such limit to ask for here
        return
    missing = os.path.relpath(os.path.abspath(path), existing)
    for name in missing.split(os.sep) if missing != os.curdir else []:
        if len(os.fsencode(name)) > longest:
            raise OutputDirError(f"cannot create {path!r}: the folder name {name[:20]!r}... is {len(os.fsencode(name))} "
                                 f"bytes, more than the {longest} this file system allows; choose a shorter `out`")


def check_output_dir(path: str, overwrite: bool) -> None:
    """Fail before training, not after, if ``path`` is a non-empty directory, a file, or cannot
    be created.  The message names parameters in backticks (`overwrite`), for a front end to
    reword."""
    check_creatable(path)
    if overwrite and os.path.islink(path) and os.listdir(path):
        raise OutputDirError(f"`overwrite` cannot empty {path!r}: it is a symbolic link to {os.path.realpath(path)!r}; "
                             "give that directory itself as `out`")
    why_not = overwrite and os.path.isdir(path) and os.listdir(path) and _not_to_delete(path)
    if why_not:
        raise OutputDirError(f"`overwrite` would delete {path!r}, {why_not}; choose a new directory for `out`")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        hint = ""
        if is_incomplete(path):
            hint = (f" (it holds an unfinished run: `resume` {shlex.quote(path)} continues it)" if has_checkpoint(path) else
                    " (it holds a run stopped before its first checkpoint: set `overwrite` to start it again)")
        raise OutputDirError(
            f"output directory {path!r} exists and is not empty; set `overwrite` or choose another `out`{hint}")


def has_run_files(path: str) -> bool:
    """A run directory as a run leaves it, finished or not: config.json and its curve or a marker."""
    has = lambda name: os.path.exists(os.path.join(path, name))  # noqa: E731
    return has("config.json") and (has("metrics.csv") or has(INCOMPLETE) or has(DIVERGED))


def _is_run(path: str) -> bool:
    """A run directory of any command: :func:`has_run_files`, or an llm run's (:func:`is_llm_run`)."""
    return has_run_files(path) or is_llm_run(path)


def is_llm_run(path: str) -> bool:
    """A ``bpo-jax llm`` run's directory, finished or not: its config.json says ``"kind": "llm"``
    (its curves are seed<S>/curve.csv, not a metrics.csv: plot and report leave it out)."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f).get("kind") == LLM_KIND
    except (OSError, ValueError, AttributeError):
        return False


LLM_KIND = "llm"  # config.json's "kind" of an llm run


def _not_to_delete(path: str) -> Optional[str]:
    """Why ``path`` is no run directory to delete (the working directory or one holding it, the
    home directory, a file system root, a folder inside another run such as its checkpoints/,
    a sweep's directory, a folder holding runs, one holding a name no run writes), or None:
    ``--out . --overwrite`` emptied the directory it was run from before failing to remove it."""
    real, here = os.path.realpath(path), os.path.realpath(os.getcwd())
    owner = run_owning(real)
    if owner is not None:
        return f"a folder of the run in {owner!r}, which it would damage"
    if os.path.isfile(os.path.join(real, SWEEP_FILE)):
        return "a sweep's directory (its runs, curves and report)"
    if real == here:
        return "the current directory"
    if here.startswith(real.rstrip(os.sep) + os.sep):
        return "which holds the current directory"
    if real == os.path.realpath(os.path.expanduser("~")):
        return "the home directory"
    if real == os.path.dirname(real):
        return "a file system root"
    held = None if _is_run(real) else next(runs_below(real), None)
    if held is not None:  # `--out runs --overwrite` deleted every run made with the default --out
        return f"a folder holding runs (such as {os.path.relpath(held, real)}), which it would delete with it"
    # A folder of the user's own (`--out myproject --overwrite`) was deleted with all it held.
    foreign = next((name for name in sorted(os.listdir(real)) if not re.fullmatch(RUN_WRITES, name)), None)
    if foreign is not None:
        return f"which holds {foreign!r}, a name no run writes (a folder of your own?)"
    return None


# What a run's folder holds (a regular expression of names): what train, llm and the host loop
# write, what eval (eval.json, video.mp4 or .gif), export, plot and report write beside them by
# default, atomic writes' temporaries (write_atomic), and what file browsers and NFS add.
RUN_WRITES = "|".join((
    r"config\.json", r"metrics\.csv", r"summary\.json", r"curves?\.png", r"curves\.csv", r"figure\.png",
    r"report\.md", r"iterations\.csv", r"eval\.json", r"video\.(mp4|gif)", r"policy(_seed\d+)?\.(onnx|jaxexport)",
    INCOMPLETE, DIVERGED, "checkpoints", "tb", "wandb", r"wandb\.json", r"seed\d+", r".+\.tmp-\d+",
    r"\.DS_Store", r"Thumbs\.db", r"\._.*", r"\.nfs.*"))


def runs_below(path: str, depth: int = 3):
    """The run directories (:func:`_is_run`) under ``path`` down to ``depth`` levels (a
    project's runs/<sweep>/runs/<run> is as deep as they go), not looking inside a run."""
    for root, dirs, _ in os.walk(path):
        dirs.sort()
        level = os.path.relpath(root, path).count(os.sep) + (root != path)
        for d in list(dirs):
            if _is_run(os.path.join(root, d)):
                dirs.remove(d)
                yield os.path.join(root, d)
        if level + 1 >= depth:
            dirs.clear()


def run_owning(path: str) -> Optional[str]:
    """The run whose checkpoints/, tb/ or (an llm run's) seed<S>/ folder holds ``path`` (a real
    path), or None: the nearest folder above it with a run's files.  A project folder with a
    config.json and a metrics.csv of its own owns only those names' run folders, not a runs/
    beside them."""
    from bpo_jax.checkpoint import CHECKPOINTS

    folder = next((f for f in folders_above(path) if _is_run(f)), None)
    first = None if folder is None else os.path.relpath(path, folder).split(os.sep)[0]
    seeds = folder is not None and re.fullmatch(r"seed\d+", first) and is_llm_run(folder)
    return folder if first in (CHECKPOINTS, "tb") or seeds else None


def folders_above(path: str):
    """The folders holding ``path`` (a real path), nearest first, up to the file system root."""
    folder = os.path.dirname(path)
    while True:
        yield folder
        if folder == os.path.dirname(folder):
            return
        folder = os.path.dirname(folder)


def is_incomplete(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INCOMPLETE))


def has_checkpoint(run_dir: str) -> bool:
    """Whether a run directory holds a checkpoint to resume from."""
    from bpo_jax import checkpoint

    return bool(checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS)))


def open_run_dir(path: str, overwrite: bool, note: str) -> None:
    """Create the run directory (emptied first with ``overwrite``) marked INCOMPLETE with ``note``.
    Call only after every input check has passed."""
    check_output_dir(path, overwrite)
    if os.path.isdir(path) and os.listdir(path) and overwrite:
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    mark_incomplete(path, note)


def incomplete_note(path: str) -> Optional[str]:
    """The note of a run directory's INCOMPLETE marker, without its time (None where it has none)."""
    try:
        with open(os.path.join(path, INCOMPLETE)) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    stamp = re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", text)
    return text[stamp.end():] if stamp else text


def mark_incomplete(path: str, note: str) -> None:
    """(Re)write the INCOMPLETE marker: when and why the run is not finished, how to go on."""
    write_text(os.path.join(path, INCOMPLETE), f"{time.strftime('%Y-%m-%d %H:%M:%S')} {note}\n")


def restart_how(restart_hint: Optional[str], out: str) -> str:
    """How a note tells a reader to start again a run stopped before its first checkpoint:
    ``restart_hint`` (a command, ``{out}`` standing for the directory), or with `overwrite`."""
    return "with `overwrite`" if restart_hint is None else f"with: {restart_hint.format(out=shlex.quote(out))}"


def running_note(resume: str, restart: str) -> str:
    """INCOMPLETE's note while a run trains: how to go on if it is killed (``resume``, the
    command or call; ``restart``, :func:`restart_how`'s words)."""
    return ("training has not finished (still running, or killed). Continue it from its newest checkpoint with: "
            f"{resume}; where it has none, start it again {restart}")


def stop_note(what: str, kept: Sequence[str], resume: str, restart: str = "with `overwrite`",
              bad_update: bool = False, curve_updates: int = 0) -> str:
    """Why a run stopped and how to go on, one line: its INCOMPLETE note, and what a front end
    prints (names in backticks, `overwrite`, are the library's parameters).  ``what``: how it
    stopped (:func:`bpo_jax.errors.what_stopped`); ``kept``: its checkpoints, oldest first;
    ``resume``: the command or call that continues it from the newest; ``restart``: how to start
    it again where none was kept.  After a ``bad_update`` (a NaN) no resume is offered, as it
    would only meet the same update again; ``curve_updates``: the updates metrics.csv holds
    before it (0: none written)."""
    if bad_update:
        where = f"kept the last good checkpoint {kept[-1]}" if kept else "no checkpoint was saved before it"
        curve = f"; metrics.csv holds the {curve_updates} updates before it" if curve_updates else ""
        return f"{what}; {where}{curve}"
    if not kept:
        return f"{what} before the first checkpoint was saved; nothing to resume: start the run again {restart}"
    return f"{what}; continue from {kept[-1]} with: {resume}"


def mark_complete(path: str) -> None:
    for name in (INCOMPLETE, DIVERGED):
        try:
            os.remove(os.path.join(path, name))
        except FileNotFoundError:
            pass


def mark_diverged(path: str, note: str) -> None:
    """Write the DIVERGED marker: this run stopped at an update that resuming would repeat."""
    write_text(os.path.join(path, DIVERGED), f"{time.strftime('%Y-%m-%d %H:%M:%S')} {note}\n")


def diverged_note(path: str) -> Optional[str]:
    """The DIVERGED note of a run directory (None where the run has not diverged)."""
    try:
        with open(os.path.join(path, DIVERGED)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def write_atomic(path: str, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then rename it into place: readers
    (and a run killed half-way) see the old file or the new one, never a part.  A symbolic link
    is followed (its target is replaced, the link kept); what is there and is no regular file
    (``/dev/null``, a pipe), or is reached through /dev or /proc (``/dev/stdout``, which may be
    the file a shell redirects to), is written as it is, never replaced by a file.  An OSError
    names ``path`` (a missing folder, a full disk), not the temporary file."""
    special = os.path.abspath(path).startswith(("/dev/", "/proc/"))  # /dev/stdout: whatever the shell opened
    if os.path.exists(path) and (special or not os.path.isfile(path)):
        write(path)
        return
    path = os.path.realpath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename == tmp:  # the file asked for, not our temporary one
            raise type(e)(e.errno, e.strerror, path) from None
        raise


def write_text(path: str, text: str) -> None:
    """``text`` into ``path``, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    write_atomic(path, write)


def write_json(path: str, obj: dict) -> None:
    """JSON (tuples as lists; NaN and infinities as null, which strict JSON readers require: a
    run in which no episode ended has no final return), written atomically."""
    def strict(o):
        if isinstance(o, float) and not np.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: strict(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [strict(v) for v in o]
        return o
    write_text(path, json.dumps(strict(obj), indent=2, allow_nan=False, default=str) + "\n")


def tail_returns(metrics: dict, fraction: float = 0.1) -> np.ndarray:
    """[seeds] mean return of the episodes that ended in the last ``fraction`` of updates
    (NaN for a seed with none); ``metrics`` arrays are [seeds, updates]."""
    n = metrics["episodes"].shape[1]
    tail = slice(n - max(1, int(round(n * fraction))), n)
    counts = metrics["episodes"][:, tail].astype(np.float64)
    # No episode ended: the row's mean is NaN and its weight 0.  A NaN where episodes ended stays.
    returns = np.where(counts > 0, metrics["episode_return_mean"][:, tail].astype(np.float64), 0.0)
    per_seed = (returns * counts).sum(1) / np.maximum(counts.sum(1), 1)
    return np.where(counts.sum(1) > 0, per_seed, np.nan)


def final_episode_return(result: RunResult, fraction: float = 0.1) -> float:
    """Mean over seeds of the mean return of episodes that ended in the last ``fraction`` of updates."""
    per_seed = tail_returns(result.metrics, fraction)
    return float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else float("nan")


def final_return_text(value: Optional[float], digits: int = 2, over_seeds: bool = False, explained: bool = True) -> str:
    """:func:`final_episode_return` in a progress line's words: the value and what it averages
    (``explained``), or n/a where no episode ended in the last 10% of updates (episodes may have
    ended before)."""
    if value is None or not math.isfinite(value):
        return "n/a (no episode ended in the last 10% of updates)"
    what = f" ({'mean over seeds, ' * over_seeds}episodes that ended in the last 10% of updates)" * explained
    return f"{value:.{digits}f}{what}"


def summary(result: RunResult, **extra: Any) -> dict:
    """summary.json: final return, steps, the time split into compile, training and host work
    between chunks, and the one throughput figure (all seeds, training time); ``extra`` adds
    fields (e.g. what the checkpoints cost)."""
    return {
        "env": result.config.env,
        "algo": result.config.algo,
        "num_seeds": result.num_seeds,
        "final_episode_return": final_episode_return(result),
        "env_steps": int(result.env_steps[-1]),
        "env_steps_all_seeds": result.total_env_steps,
        "num_updates": int(len(result.env_steps)),
        "compile_seconds": round(result.compile_seconds, 3),
        "cached_programs": result.cached_programs,
        "train_seconds": round(result.train_seconds, 3),
        "io_seconds": round(result.io_seconds, 3),
        "env_steps_per_second_all_seeds": round(result.throughput, 1),
        "chunk_updates": result.chunk_updates,
        **extra,
    }


def run_config(config, num_seeds: int) -> dict:
    """config.json: the resolved configuration and the seed count."""
    return {**config.resolved().to_dict(), "num_seeds": num_seeds}


def write_outputs(result: RunResult, path: str, **extra: Any) -> dict:
    """Write (or replace) config.json, metrics.csv, summary.json (with ``extra``) and curve.png
    in the existing directory ``path``, each file atomically; returns the summary."""
    info = summary(result, **extra)
    write_json(os.path.join(path, "config.json"), run_config(result.config, result.num_seeds))
    write_metrics(os.path.join(path, "metrics.csv"), result.metrics, result.env_steps, result.steps_per_second)
    write_json(os.path.join(path, "summary.json"), info)
    write_atomic(os.path.join(path, "curve.png"), lambda tmp: plot_curve(result, tmp, format="png"))
    return info


def write_metrics(path: str, metrics: dict[str, np.ndarray], env_steps: np.ndarray,
                  steps_per_second: np.ndarray) -> None:
    """metrics.csv at ``path`` (atomically): one row per (seed, update) of the [seeds, updates]
    ``metrics``; ``env_steps`` and ``steps_per_second`` are [updates]."""
    # CSV order: the shared metrics, then the algorithm's own (absent ones are skipped).
    names = [m for m in algorithms.metric_tags() if m in metrics]
    num_seeds = len(metrics[names[0]])

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["update", "seed", "env_steps", *names, "steps_per_second"])
            for seed in range(num_seeds):
                for u, steps in enumerate(env_steps):
                    vals = [csv_number(metrics[m][seed, u]) for m in names]
                    w.writerow([u + 1, seed, int(steps), *vals, f"{steps_per_second[u]:.1f}"])

    write_atomic(path, write)


def csv_number(x) -> str:
    """A metric as a CSV cell: empty for NaN, else 9 significant digits (a float32 exactly)."""
    x = float(x)
    return "" if np.isnan(x) else f"{x:.9g}"


def carry_forward(returns) -> np.ndarray:
    """[seeds, updates] float64 copy of ``returns`` with each NaN replaced by the last finite value
    before it in its row (NaN until the first one)."""
    r = np.array(returns, np.float64)
    for row in r:
        last = np.nan
        for i, v in enumerate(row):
            last = v if np.isfinite(v) else last
            row[i] = last
    return r


def pyplot():
    """``matplotlib.pyplot``, drawing to files only (the Agg backend, no display needed); a
    missing matplotlib is an ImportError saying what to install."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"drawing figures needs matplotlib, a bpo-jax dependency that is missing here ({e}); "
                          "install it with: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(result: RunResult, path: str, format: Optional[str] = None) -> None:
    """Learning curve: mean over seeds with a min-max band, against env steps per seed."""
    plt = pyplot()

    r = carry_forward(result.metrics["episode_return_mean"])  # over updates in which no episode ended
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
    fig.savefig(path, format=format)
    plt.close(fig)
