"""Learning curves read back from finished runs, and figures of several runs side by side.

A run directory (what :class:`bpo_jax.session.RunSession` writes) holds ``config.json`` and
``metrics.csv`` (one row per update and seed).  :func:`load` turns one into a :class:`Curve`;
:func:`plot` draws several: one panel per environment, every algorithm on the same axes, the
mean over seeds with a min-max band, x = environment steps per seed, the budget on the panel.

The return of a run "at" a step is the one :func:`bpo_jax.reporting.tail_returns` defines for
the end of a run: the mean return of the training episodes that ended in the last 10% of the
updates up to that step, per seed.  It is what ``final_episode_return`` in summary.json reports.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import textwrap
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from bpo_jax.reporting import (DIVERGED, INCOMPLETE, carry_forward, csv_number, has_run_files, is_llm_run, pyplot,
                                tail_returns)


class CurveError(ValueError):
    """A directory is not a finished run, or holds nothing to plot; one line."""


@dataclass(frozen=True)
class Curve:
    """One run's per-seed training returns."""

    run_dir: str
    env: str
    algo: str
    total_steps: int
    """The run's budget: environment steps per seed it was configured for."""
    steps: np.ndarray
    """[U] environment steps per seed after each update."""
    returns: np.ndarray
    """[S, U] mean return of the episodes that ended in each update (NaN where none did)."""
    episodes: np.ndarray
    """[S, U] how many episodes ended in each update."""
    settings: dict = field(default_factory=dict, compare=False)
    """The run's config.json."""
    variant: str = ""
    """What sets it apart from other runs of its env and algorithm shown with it (``eps=0.1``,
    :func:`name_variants`); empty where it is the only one."""

    @property
    def num_seeds(self) -> int:
        return self.returns.shape[0]

    @property
    def name(self) -> str:
        """The algorithm, and the variant where there is one: ``BPO eps=0.1``."""
        return f"{self.algo.upper()} {self.variant}".strip()

    @property
    def label(self) -> str:
        return f"{self.name} ({self.num_seeds} seed{'s' if self.num_seeds > 1 else ''})"

    def at(self, step: float, fraction: float = 0.1) -> np.ndarray:
        """[S] return per seed at ``step`` (the last ``fraction`` of updates up to it); NaN for
        a seed with no episode in that window.  ``step`` beyond the run: its end."""
        upto = max(1, int(np.searchsorted(self.steps, step, side="right")))
        return tail_returns({"episodes": self.episodes[:, :upto], "episode_return_mean": self.returns[:, :upto]},
                            fraction)


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "metrics.csv")) and os.path.isfile(os.path.join(path, "config.json"))


def load(run_dir: str) -> Curve:
    """The :class:`Curve` of a finished run directory.  A file that cannot be read, a row that
    does not parse, a seed missing updates, rows that end short of the steps summary.json
    records or hold fewer seeds than config.json's ``num_seeds`` (a cut metrics.csv), or a field
    of the wrong type raise :class:`CurveError` naming the file."""
    for marker, state in ((DIVERGED, "diverged"), (INCOMPLETE, "has not finished")):
        if os.path.isfile(os.path.join(run_dir, marker)):
            raise CurveError(f"{run_dir} {state} (its {marker} file says why); it has no final curve")
    if not is_run_dir(run_dir):
        raise CurveError(f"{run_dir} holds no finished run (config.json and metrics.csv)")
    config_path = os.path.join(run_dir, "config.json")
    config = _read_json(config_path, {"env": _NAME, "algo": _NAME, "total_steps": _COUNT}, {"num_seeds": _COUNT})
    path = os.path.join(run_dir, "metrics.csv")
    try:
        cells, steps_of = _read_metrics(path)
    except UnicodeDecodeError as e:
        raise CurveError(f"{path} is not text ({e.reason} at byte {e.start}; a damaged file?)") from None
    if not cells:
        raise CurveError(f"{path} has no rows")
    seeds, updates = sorted({s for s, _ in cells}), sorted(steps_of)
    if len(cells) != len(seeds) * len(updates):
        raise CurveError(f"{path} lacks rows: {len(cells)} (seed, update) rows for {len(seeds)} seed(s) x "
                         f"{len(updates)} updates (a cut or edited file?)")
    if updates != list(range(1, len(updates) + 1)):
        gap = min(set(range(1, updates[-1] + 1)) - set(updates), default=None)
        what = f"no rows of update {gap}" if gap is not None else f"rows of update {updates[0]}"
        raise CurveError(f"{path} has {what} (updates run 1, 2, 3, ..., one row per seed each; an edited file?)")
    back = next((u for u in updates[1:] if steps_of[u] <= steps_of[u - 1]), None)
    if back is not None:
        raise CurveError(f"{path}: update {back} at {steps_of[back]:,} env steps, not past update {back - 1}'s "
                         f"{steps_of[back - 1]:,} (an edited file?)")
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.isfile(summary_path):
        recorded = _read_json(summary_path, {"env_steps": _COUNT})["env_steps"]
        if recorded != steps_of[updates[-1]]:
            raise CurveError(f"{path} ends at {steps_of[updates[-1]]:,} steps per seed but {summary_path} records "
                             f"{recorded:,} (a cut or edited file?)")
    _check_seed_count(path, len(seeds), config_path, config.get("num_seeds"))
    returns = np.array([[cells[s, u][0] for u in updates] for s in seeds]).reshape(len(seeds), len(updates))
    episodes = np.array([[cells[s, u][1] for u in updates] for s in seeds]).reshape(len(seeds), len(updates))
    return Curve(run_dir=run_dir, env=config["env"], algo=config["algo"], total_steps=config["total_steps"],
                 steps=np.array([steps_of[u] for u in updates], dtype=float), returns=returns, episodes=episodes,
                 settings=config)


def _check_seed_count(path: str, seeds: int, config_path: str, recorded: Optional[int]) -> None:
    """A metrics.csv cut at a seed boundary holds whole seeds that each end where summary.json
    says: only the seed count config.json records tells it from a run of fewer seeds (it was
    reported as one, with the wrong numbers)."""
    if recorded is not None and seeds != recorded:
        raise CurveError(f"{path} holds {seeds} seed{'s' * (seeds != 1)} but {config_path} records {recorded} "
                         "(a cut or edited file?)")


def _read_metrics(path: str) -> tuple[dict[tuple[int, int], tuple[float, float]], dict[int, int]]:
    """metrics.csv as {(seed, update): (return, episodes)} and {update: env steps per seed}."""
    cells: dict[tuple[int, int], tuple[float, float]] = {}
    steps_of: dict[int, int] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for r in reader:
            if None in r or None in r.values():  # more or fewer cells than the header names
                given = sum(v is not None for k, v in r.items() if k is not None) + len(r.get(None, ()))
                raise CurveError(f"{path} line {reader.line_num} has {given} cells for {len(reader.fieldnames)} "
                                 "columns (a cut or edited file?)")
            try:
                seed, update = int(r["seed"]), int(r["update"])
                ret = float(r["episode_return_mean"]) if r["episode_return_mean"] else np.nan
                count = float(r["episodes"]) if r.get("episodes") else float(np.isfinite(ret))
                steps = int(r["env_steps"])
            except (KeyError, TypeError, ValueError) as e:
                raise CurveError(f"{path} line {reader.line_num} does not parse ({type(e).__name__}: {e})") from None
            if steps_of.setdefault(update, steps) != steps:  # every seed steps alike
                raise CurveError(f"{path} line {reader.line_num}: update {update} at {steps:,} env steps where an "
                                 f"earlier row has {steps_of[update]:,} (an edited file?)")
            if not (np.isfinite(count) and count >= 0 and count == int(count)):
                raise CurveError(f"{path} line {reader.line_num}: episodes is {r['episodes']!r}, not a count "
                                 "(a cut or edited file?)")
            if count > 0 and not np.isfinite(ret):
                raise CurveError(f"{path} line {reader.line_num}: episode_return_mean is {ret} where {count:g} "
                                 "episode(s) ended (non-finite rewards?)")
            cells[seed, update] = ret, count
    return cells, steps_of


def load_all(run_dirs: Sequence[str]) -> list[Curve]:
    """:func:`load` each run directory, then :func:`name_variants`."""
    return name_variants([load(d) for d in run_dirs])


# Settings a label leaves out: the budget and seed count are on the figure already.
_UNLABELLED = ("total_steps", "num_seeds")


def name_variants(curves: Sequence[Curve]) -> list[Curve]:
    """``curves`` with :attr:`Curve.variant` set where several runs share an env and algorithm:
    the settings in which they differ (a sweep's grid point, ``eps=0.1, bpo_lambda=1``); the
    budget or seed count where only they differ; else where each run lies."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(curves):
        groups.setdefault((c.env, c.algo), []).append(i)
    named = list(curves)
    for members in groups.values():
        if len(members) < 2:
            continue
        mine = [curves[i].settings for i in members]
        labels = _differences(mine, leave_out=_UNLABELLED)
        if len(set(labels)) < len(labels):
            labels = _differences(mine, leave_out=())
        if len(set(labels)) < len(labels):  # the same settings: name the folders
            dirs = [os.path.abspath(curves[i].run_dir) for i in members]
            common = os.path.commonpath(dirs)
            labels = [", ".join(filter(None, (label, os.path.relpath(d, common))))
                      for label, d in zip(labels, dirs)]
        for i, label in zip(members, labels):
            named[i] = dataclasses.replace(curves[i], variant=label)
    return named


def _differences(settings: Sequence[dict], leave_out: Sequence[str]) -> list[str]:
    """Per run, the settings in which the runs differ (``eps=0.1, lr=0.001``; the first few)."""
    keys = [k for k in dict.fromkeys(k for s in settings for k in s) if k not in leave_out]
    differ = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]
    if "eps" in differ and all(s.get("eps_low") == s.get("eps_high") == s.get("eps") for s in settings):
        differ = [k for k in differ if k not in ("eps_low", "eps_high")]  # symmetric bounds: eps says it
    shown = differ[:_MOST_SHOWN] if len(differ) <= _MOST_SHOWN else differ[:_MOST_SHOWN - 1]
    more = f", +{len(differ) - len(shown)} more" if len(shown) < len(differ) else ""
    return [", ".join(f"{k}={_shown(s.get(k))}" for k in shown) + more for s in settings]


def number_text(value: float) -> str:
    """The shortest text of a number that reads back as that number: 0.001, 1e-05, 1048576."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


_MOST_SHOWN = 4  # settings named in a label; runs of other presets differ in dozens


def _shown(value) -> str:
    return number_text(value) if isinstance(value, float) else str(value)


# What a field of config.json or summary.json must hold: (test, what the message says it is not).
_NAME = (lambda v: isinstance(v, str) and bool(v), "a name")
_COUNT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a whole number above 0")


def _read_json(path: str, needs: dict, may: Optional[dict] = None) -> dict:
    """A JSON object holding the keys ``needs``, each of its kind (``_NAME``, ``_COUNT``), and
    the keys ``may`` of theirs where present; else a one-line CurveError naming the file and the
    field (a hand-edited ``"algo": null`` was an AttributeError traceback from plot and report)."""
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise CurveError(f"{path} is unreadable ({e})") from None
    missing = [k for k in needs if not isinstance(values, dict) or k not in values]
    if missing:
        raise CurveError(f"{path} lacks {', '.join(missing)}")
    for key, (valid, kind) in {**needs, **(may or {})}.items():
        if key in values and not valid(values[key]):
            raise CurveError(f"{path}: {key} is {values[key]!r}, not {kind} (an edited file?)")
    return values


@dataclass(frozen=True)
class Found:
    """The run directories under some paths, by state."""

    runs: tuple[str, ...]
    """Finished runs (config.json and metrics.csv, no INCOMPLETE or DIVERGED marker)."""
    unfinished: tuple[str, ...] = ()
    """Marked INCOMPLETE: still training, interrupted, or taken further and not there yet (its
    metrics.csv, if any, is an earlier finish's, not its result)."""
    diverged: tuple[str, ...] = ()
    """Marked DIVERGED: stopped by a NaN; no curve."""


def _is_any_run(path: str) -> bool:
    """A run directory in any state: :func:`has_run_files`, or checkpoints beside its config.json
    or curve (a run whose other file was deleted)."""
    has = lambda name: os.path.exists(os.path.join(path, name))  # noqa: E731
    if is_llm_run(path):  # its curves are no RL run's
        return False
    return has_run_files(path) or (has("checkpoints") and (has("config.json") or has("metrics.csv")))


def find_runs(paths) -> Found:
    """The run directories among ``paths``: each path is a run directory, or a folder whose
    sub-folders (at any depth, through symbolic links) are; sorted, so figures and tables come
    out in a stable order, each once however often it is reached.  One path may be given alone
    (a str or os.PathLike), not in a list: a str is not iterated as its characters.  A path that
    is no directory, or holds no run, raises :class:`CurveError`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    seen, found = set(), []
    for path in map(os.fspath, paths):
        if not os.path.isdir(path):
            raise CurveError(f"{path} is not a directory")
        inside = [path] if _is_any_run(path) else sorted(root for root in _folders(path) if _is_any_run(root))
        if not inside:
            raise CurveError(f"{path} holds no finished run (no config.json with metrics.csv under it)")
        for run in inside:
            if os.path.realpath(run) not in seen:
                seen.add(os.path.realpath(run))
                found.append(run)
    diverged = tuple(d for d in found if os.path.isfile(os.path.join(d, DIVERGED)))
    unfinished = tuple(d for d in found if d not in diverged and os.path.isfile(os.path.join(d, INCOMPLETE)))
    damaged = next((d for d in found if d not in diverged + unfinished and not is_run_dir(d)), None)
    if damaged is not None:  # finished, as no marker says otherwise, yet not whole
        missing = [f for f in ("config.json", "metrics.csv") if not os.path.isfile(os.path.join(damaged, f))]
        raise CurveError(f"{damaged} lacks {' and '.join(missing)} (deleted?); restore it or leave that run out")
    return Found(tuple(d for d in found if d not in diverged and d not in unfinished), unfinished, diverged)


def _folders(path: str):
    """``path`` and every folder under it, symbolic links followed (a folder of links to runs is
    a selection of them), each real folder once: a link to a folder above it (a loop) or to one
    reached already is not walked again.  Sorted names, so which link reaches a folder first is
    the same every time."""
    walked = set()
    for root, dirs, _ in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in walked:
            dirs[:] = []
            continue
        walked.add(real)
        dirs.sort()
        yield root


def plot(curves: Sequence[Curve], path: str, title: Optional[str] = None, format: str = "png") -> list[str]:
    """One panel per environment (in order of first appearance), each algorithm's mean over
    seeds with a min-max band, x = environment steps per seed; written to ``path`` as
    ``format`` (one of :func:`image_formats`).  Returns a note per run that had nothing to draw
    (no training episode ended), for the caller to print: the figure says so too, but an
    empty panel is easy to take for a drawing bug.  No curve at all raises :class:`CurveError`."""
    plt = pyplot()
    fig, notes = _draw(curves, title)
    try:
        fig.savefig(path, format=format)
    finally:
        plt.close(fig)
    return notes


def _draw(curves: Sequence[Curve], title: Optional[str]):
    """:func:`plot`'s figure (open: the caller closes it) and its notes."""
    plt = pyplot()

    if not curves:
        raise CurveError("no run to draw (the figure needs at least one finished run)")
    envs = list(dict.fromkeys(c.env for c in curves))
    cols = min(len(envs), 2)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 3.8 * rows), dpi=110, squeeze=False)
    names = list(dict.fromkeys(c.name for c in curves))
    # Matplotlib's 10 cycle colours; a larger grid's lines from one colour map, none repeated.
    colours = {name: f"C{i}" if len(names) <= 10 else plt.get_cmap("turbo")(i / (len(names) - 1))
               for i, name in enumerate(names)}
    notes = []
    for ax, env in zip(axes.flat, envs):
        mine = [c for c in curves if c.env == env]
        empty = [c for c in mine if not _draw_curve(ax, c, colours[c.name])]
        notes += [f"{c.run_dir}: no training episode ended; nothing to draw" for c in empty]
        unseen = "no training episode ended: " + "; ".join(c.label for c in empty) if empty else ""
        if unseen and len(empty) == len(mine):  # an empty panel says why in its middle
            ax.text(0.5, 0.5, _plain(unseen), transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    wrap=True)
        budget = _budgets(mine)
        # The budget (and the runs not drawn) under the panel's title, where no curve or legend can cover it.
        below = [f"budget: {budget}"] + [unseen] * (0 < len(empty) < len(mine))
        ax.set_title(_plain("\n".join([env] + [textwrap.fill(t, 90, break_on_hyphens=False) for t in below])),
                     fontsize=9)
        ax.set_xlabel("environment steps per seed")
        ax.set_ylabel("training episode return")
        ax.grid(alpha=0.3)
        if len(empty) < len(mine):
            ax.legend(loc="best", fontsize=8, title="band: min-max over seeds", title_fontsize=7)
    for ax in axes.flat[len(envs):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(_plain(title))
    fig.tight_layout()
    return fig, notes


def _draw_curve(ax, c: Curve, colour) -> bool:
    """``c``'s mean over seeds and min-max band on ``ax``, with markers where it has a single
    point (a 1-update run, or a run whose only episodes ended in its last update: a line of one
    point shows nothing); False, drawing nothing, where no episode ended."""
    r = carry_forward(c.returns)  # an update in which no episode ended keeps the last value
    if not np.isfinite(r).any():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any episode
        mean, lo, hi = np.nanmean(r, 0), np.nanmin(r, 0), np.nanmax(r, 0)
    alone = np.isfinite(mean).sum() == 1
    ax.plot(c.steps, mean, color=colour, lw=1.6, marker="o" if alone else None, label=_plain(f"{c.label}: mean"))
    if c.num_seeds > 1:
        ax.fill_between(c.steps, lo, hi, color=colour, alpha=0.2, lw=0)
        if alone:  # a band one point wide is invisible too: the seeds' range as a bar
            ax.vlines(c.steps, lo, hi, color=colour, alpha=0.5)
    return True


def _plain(text: str) -> str:
    """``text`` drawn as typed: matplotlib reads text between two ``$`` as math, so a title
    ``Cost: $5 vs $10`` was drawn as math and ``Hopper: $x^$`` stopped the figure with a
    mathtext traceback; ``\\$`` is its literal dollar sign.  Control characters are left out
    (a bell in a title made an SVG no XML parser reads)."""
    kept = (" " if ch == "\t" else ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return "".join(kept).replace("$", r"\$")


# Matplotlib's formats that cannot hold the figure, and why.
_NO_TRANSPARENCY = "PostScript has no transparency: the seeds' bands, drawn opaque, would hide one another"
NOT_FIGURES = {"eps": _NO_TRANSPARENCY, "ps": _NO_TRANSPARENCY,
               "pgf": "pgf is LaTeX code, which needs a TeX system to write"}


def _budgets(curves: Sequence[Curve]) -> str:
    """One panel's budgets: ``BPO 1,000,000 steps x 5 seeds, PPO ...``; an algorithm's runs of
    several budgets (grid points taken to other budgets) each by name (``BPO eps=0.1 ...``)."""
    parts = set()
    for algo in {c.algo for c in curves}:
        runs = [c for c in curves if c.algo == algo]
        alike = len({(c.steps[-1], c.num_seeds) for c in runs}) == 1
        parts |= {f"{algo.upper() if alike else c.name} {c.steps[-1]:,.0f} steps x {c.num_seeds} seeds" for c in runs}
    return ", ".join(sorted(parts))


def image_formats() -> list[str]:
    """The file formats :func:`plot` writes (matplotlib's: png, pdf, svg, ...; not eps, ps, pgf)."""
    pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(set(FigureCanvasBase.get_supported_filetypes()) - set(NOT_FIGURES))


def write_csv(curves: Sequence[Curve], path: str) -> None:
    """Every curve in one long table: run, env, algo, variant, seed, update, env_steps, episodes,
    return."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "env", "algo", "variant", "seed", "update", "env_steps", "episodes", "episode_return_mean"])
        for c in curves:
            for s in range(c.num_seeds):
                for u, steps in enumerate(c.steps):
                    value = c.returns[s, u]
                    w.writerow([c.run_dir, c.env, c.algo, c.variant, s, u + 1, int(steps), int(c.episodes[s, u]),
                                csv_number(value)])
