"""Reproduce a figure in one call: every (task, algorithm) of a suite with its preset, all seeds
of one run as one vmapped program, then curves, figures and a report against the paper.

    from bpo_jax import sweep

    plan = sweep.plan("paper/mujoco", algos=("bpo", "ppo"), num_seeds=10, total_steps=1_000_000)
    sweep.run(plan, "sweeps/mujoco")        # resumable: finished runs are kept, killed ones resume

The sweep directory holds ``sweep.json`` (what was asked), ``runs/<task>__<algo>/`` (one
:class:`bpo_jax.session.RunSession` each: config.json, metrics.csv with per-seed rows,
summary.json, checkpoints while it runs), and, refreshed after every run, ``curves.csv``
(every seed's curve in one table), ``figure.png`` (one panel per task, the algorithms on the
same axes), ``report.md`` (against the paper's values, :mod:`bpo_jax.report`) and
``summary.json`` (per run: final return per seed, steps, wall-clock).

Calling :func:`run` again on the same directory with the same plan skips finished runs and
resumes an interrupted one from its newest checkpoint; a plan that differs only by a larger
``total_steps`` takes every run on from its last checkpoint to the new budget (the 1M-step
sweep becomes the 2M-step one without redoing the first million steps; runs whose
learning rate anneals over their budget cannot, see :func:`bpo_jax.session.regrow`); any other
plan is refused.  Runs of one sweep differ in network shapes and rollout sizes (each task has
its own preset), so each run is its own program; its seeds share it.
"""
from __future__ import annotations

import numbers
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from bpo_jax import curves, presets, report, reporting
from bpo_jax.config import Config
from bpo_jax.errors import unknown_name
from bpo_jax.session import RunOptions, RunSession, run_dir_config

SWEEP_FILE = "sweep.json"


class SweepError(ValueError):
    """A sweep cannot be planned or run as asked; one line, parameters in backticks."""


@dataclass(frozen=True)
class Suite:
    description: str
    tasks: Callable[[], list[str]]
    """The suite's task names (preset names, or smoke/<id>)."""
    settings: Callable[[str, str], dict]
    """(task, algo) -> Config fields."""


def _paper_tasks(env_suite: str) -> Callable[[], list[str]]:
    """The paper/ presets whose environment is in ``env_suite`` (mjx, atari, isaaclab)."""
    def tasks() -> list[str]:
        return [n for n in presets.names()
                if n.startswith("paper/") and presets.resolve(n, "bpo")["env"].startswith(env_suite + "/")]
    return tasks


# Tiny runs of two gymnax tasks (one discrete, one continuous): the sweep machinery end to end
# on a CPU in about a minute.  Learning is not the point.
# Constant learning rate, as the paper presets: a smoke sweep can go on to a larger budget.
_SMOKE = {"smoke/CartPole-v1": {"env": "gymnax/CartPole-v1", "total_steps": 16_384, "anneal_lr": False},
          "smoke/Pendulum-v1": {"env": "gymnax/Pendulum-v1", "total_steps": 16_384, "anneal_lr": False}}

SUITES: dict[str, Suite] = {
    "paper/mujoco": Suite("the paper's MuJoCo figure: mjx Ant, Hopper, Humanoid, Swimmer (v4), exact paper presets",
                          _paper_tasks("mjx"), lambda task, algo: presets.resolve(task, algo)),
    "paper/atari": Suite("the paper's Atari figure: Pong, Breakout, Boxing, Asterix, paper presets",
                         _paper_tasks("atari"), lambda task, algo: presets.resolve(task, algo)),
    "paper/isaaclab": Suite("the paper's IsaacLab figure: rough-terrain velocity tracking, paper presets",
                            _paper_tasks("isaaclab"), lambda task, algo: presets.resolve(task, algo)),
    "smoke": Suite("two tiny gymnax runs (CartPole, Pendulum): the whole sweep on a CPU in about a minute",
                   lambda: list(_SMOKE), lambda task, algo: {**_SMOKE[task], "algo": algo}),
}


@dataclass(frozen=True)
class SweepRun:
    name: str
    """Its folder under runs/: <task>__<algo> with / as _."""
    task: str
    config: Config


@dataclass(frozen=True)
class Plan:
    suite: str
    algos: tuple[str, ...]
    num_seeds: int
    total_steps: Optional[int]
    """Overrides every preset's budget when set (a shorter reproduction)."""
    runs: tuple[SweepRun, ...]

    def asked(self) -> dict:
        """What sweep.json records: enough to tell whether a directory holds this sweep."""
        return {"suite": self.suite, "algos": list(self.algos), "num_seeds": self.num_seeds,
                "total_steps": self.total_steps, "tasks": list(dict.fromkeys(r.task for r in self.runs)),
                "runs": [r.name for r in self.runs]}


def plan(suite: str, algos: Sequence[str] = ("bpo", "ppo"), num_seeds: int = 10,
         total_steps: Optional[int] = None, tasks: Optional[Sequence[str]] = None) -> Plan:
    """Every (task, algorithm) of ``suite`` with its preset (only ``tasks`` when given: full
    names such as paper/Hopper-v4, or the part after the slash); checks every configuration."""
    from bpo_jax import algorithms

    if not isinstance(suite, str):
        raise SweepError(f"`suite` must be a suite name (one of {', '.join(SUITES)}), got {_shown(suite)}")
    if suite not in SUITES:
        raise SweepError(unknown_name("suite", suite, SUITES))
    algos = _names("algos", algos)
    if not algos:
        raise SweepError("`algos` is empty; give one or more of " + ", ".join(algorithms.names()))
    unknown = [a for a in algos if a not in algorithms.names()]
    if unknown:
        raise SweepError(f"unknown algo {unknown[0]!r} in `algos`; valid: {', '.join(algorithms.names())}")
    _refuse_repeats("algos", algos)
    num_seeds = _positive_int("num_seeds", num_seeds)
    if total_steps is not None:
        total_steps = _positive_int("total_steps", total_steps, "None (each preset's budget) or ")
    available = SUITES[suite].tasks()
    if not available:
        raise SweepError(f"suite {suite} has no tasks in this installation (its presets are not defined)")
    if suite == "paper/isaaclab":  # torch simulators, stepped from the host: no vmapped seeds
        from bpo_jax.envs import isaaclab

        isaaclab.require("torch", "rsl_rl", "isaaclab")  # one line with the install hint
        raise SweepError("a sweep trains JAX environments, seeds vmapped; run each isaaclab/ preset on its own: "
                         "bpo-jax train --preset paper/isaaclab/<task> --algo bpo|ppo (the host loop)")
    chosen = available
    if tasks is not None:
        tasks = _names("tasks", tasks)
        if not tasks:
            raise SweepError(f"`tasks` is empty; give one or more of {', '.join(available)} (or leave it out: all)")
        short = {t.partition("/")[2]: t for t in available}
        unknown = [t for t in tasks if t not in available and t not in short]
        if unknown:
            raise SweepError(f"suite {suite} has no task {unknown[0]!r} in `tasks`; valid: {', '.join(available)}")
        _refuse_repeats("tasks", tasks, lambda t: t if t in available else short[t])
        chosen = [t for t in available if t in tasks or t.partition("/")[2] in tasks]
    runs = []
    for task in chosen:
        for algo in algos:
            fields = SUITES[suite].settings(task, algo)
            if total_steps is not None:
                fields = {**fields, "total_steps": total_steps}
            config = Config(**fields)
            config.validate()
            runs.append(SweepRun(f"{task.replace('/', '_')}__{algo}", task, config))
    return Plan(suite, algos, num_seeds, total_steps, tuple(runs))


def _shown(value) -> str:
    """A value and its type for an error line: 2.5 (float), '2' (str)."""
    return f"{value!r} ({type(value).__name__})"


def _names(param: str, value) -> tuple[str, ...]:
    """``value`` as a tuple of names: one string is one name (not its characters)."""
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise SweepError(f"`{param}` must be a name or a sequence of names, got {_shown(value)}") from None
    for name in names:
        if not isinstance(name, str):
            raise SweepError(f"`{param}` must hold names (strings), got {_shown(name)} in it")
    return names


def _refuse_repeats(param: str, names: Sequence[str], key: Callable[[str], str] = lambda n: n) -> None:
    """One line naming the first name that ``names`` gives twice (``key``: what a name stands for)."""
    seen: dict[str, str] = {}
    for name in names:
        k = key(name)
        if k in seen:
            same = f" ({seen[k]!r} and {name!r})" if seen[k] != name else ""
            raise SweepError(f"`{param}` names {k!r} twice{same}; give each once")
        seen[k] = name


def _positive_int(param: str, value, alternative: str = "") -> int:
    """``value`` as an int >= 1, or one line naming ``param`` (a bool or 2.5 is no count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SweepError(f"`{param}` must be {alternative}a positive integer, got {_shown(value)}")
    if value < 1:
        raise SweepError(f"`{param}` must be >= 1, got {value}")
    return int(value)


def run(p: Plan, out: str, options: RunOptions = RunOptions(),
        say: Callable[[str], None] = print) -> dict:
    """Run (or finish) every run of ``p`` in ``out``, refreshing the figure, curves and report
    after each; returns the summary.  A KeyboardInterrupt or failure propagates after the run's
    session has written its INCOMPLETE note; calling again resumes."""
    options.validate()  # SessionError (a ValueError), one line, resume_hint included: before anything is written
    _claim(p, out)
    for i, r in enumerate(p.runs):
        run_dir = os.path.join(out, "runs", r.name)
        state = status(run_dir)
        head = f"[sweep {i + 1}/{len(p.runs)}] {r.task} {r.config.algo}"
        budget = r.config.total_steps
        saved = None if state == "new" else run_dir_config(run_dir).total_steps
        if state == "finished" and saved == budget:
            say(f"{head}: finished earlier, kept")
            continue
        if state != "new":
            further = "" if saved == budget else f" from {saved:,} on to {budget:,} steps per seed"
            say(f"{head}: {'going on' if state == 'finished' else 'resuming'} {run_dir}{further}")
            session = RunSession.resume(run_dir, options, expect={"num_seeds": p.num_seeds}, total_steps=budget)
        else:
            say(f"{head}: {p.num_seeds} seed(s) x {budget:,} steps")
            session = RunSession.start(r.config, p.num_seeds, run_dir, overwrite=True, options=options)
        start = time.perf_counter()
        done = session.run()
        say(f"{head}: final return {done.summary['final_episode_return']:.1f} in {time.perf_counter() - start:.0f}s")
        write_outputs(out, title=f"{p.suite}: {', '.join(a.upper() for a in p.algos)}, {p.num_seeds} seeds")
    return write_outputs(out, title=f"{p.suite}: {', '.join(a.upper() for a in p.algos)}, {p.num_seeds} seeds")


def status(run_dir: str) -> str:
    """finished, resumable (a checkpoint to go on from), or new (nothing usable: start over)."""
    from bpo_jax import checkpoint

    if not os.path.isdir(run_dir):
        return "new"
    if not reporting.is_incomplete(run_dir) and curves.is_run_dir(run_dir):
        return "finished"
    if checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS)):
        return "resumable"
    return "new"


def _claim(p: Plan, out: str) -> None:
    """Write sweep.json, or check that ``out`` holds this same sweep (or the same with a budget
    every run in it can go on to, and then record the new budget)."""
    reporting.check_creatable(out)
    path = os.path.join(out, SWEEP_FILE)
    asked = p.asked()
    if os.path.isfile(path):
        import json

        with open(path) as f:
            saved = json.load(f)
        diff = [k for k in asked if saved.get(k) != asked[k]]
        other = [k for k in diff if k != "total_steps"]
        if other:
            raise SweepError(f"{out} holds a sweep with another `{other[0]}` ({saved.get(other[0])!r}, asked "
                             f"{asked[other[0]]!r}); choose another `out`")
        if diff:
            _check_budgets(p, out)
            reporting.write_json(path, asked)
        return
    if os.path.isdir(out) and os.listdir(out):
        raise SweepError(f"{out} exists, is not empty and holds no {SWEEP_FILE}; choose another `out`")
    os.makedirs(out, exist_ok=True)
    reporting.write_json(path, p.asked())


def _check_budgets(p: Plan, out: str) -> None:
    """Before anything runs: every run already in ``out`` can go on to the plan's budget."""
    from bpo_jax import checkpoint
    from bpo_jax.session import SessionError, regrow

    for r in p.runs:
        run_dir = os.path.join(out, "runs", r.name)
        if status(run_dir) == "new":
            continue
        saved = run_dir_config(run_dir)
        if r.config.total_steps < saved.total_steps:
            raise SweepError(f"{r.name} in {out} trains to {saved.total_steps:,} steps per seed; a sweep goes on to "
                             f"more steps, not fewer: raise `total_steps` or choose another `out`")
        if not checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS)):
            raise SweepError(f"{r.name} in {out} kept no checkpoint to go on from; choose another `out`")
        try:
            regrow(saved, r.config.total_steps)
        except SessionError as e:
            raise SweepError(f"{r.name} in {out}: {e}") from None


def write_outputs(out: str, title: Optional[str] = None) -> dict:
    """curves.csv, figure.png, report.md and summary.json from the finished runs under ``out``."""
    found = [d for d in sorted_runs(out) if status(d) == "finished"]
    if not found:
        return {"runs": []}
    cs = [curves.load(d) for d in found]
    reporting.write_atomic(os.path.join(out, "curves.csv"), lambda tmp: curves.write_csv(cs, tmp))
    reporting.write_atomic(os.path.join(out, "figure.png"), lambda tmp: curves.plot(cs, tmp, title))
    reporting.write_text(os.path.join(out, "report.md"), report.markdown(cs, title or "Results against the paper"))
    summary = {"runs": [_run_summary(c) for c in cs]}
    reporting.write_json(os.path.join(out, "summary.json"), summary)
    return summary


def sorted_runs(out: str) -> list[str]:
    """Run folders under out/runs in the order the sweep made them (sweep.json), else by name."""
    root = os.path.join(out, "runs")
    if not os.path.isdir(root):
        return []
    names = sorted(os.listdir(root))
    path = os.path.join(out, SWEEP_FILE)
    if os.path.isfile(path):
        import json

        with open(path) as f:
            order = json.load(f).get("runs", [])
        names = [n for n in order if n in names] + [n for n in names if n not in order]
    return [os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))]


def _run_summary(c: curves.Curve) -> dict:
    import json

    with open(os.path.join(c.run_dir, "summary.json")) as f:
        s = json.load(f)
    final = c.at(c.steps[-1])
    return {"run": os.path.basename(c.run_dir), "env": c.env, "algo": c.algo, "seeds": c.num_seeds,
            "env_steps": int(c.steps[-1]), "final_return_per_seed": [round(float(v), 3) for v in final],
            "final_return_mean": s.get("final_episode_return"), "compile_seconds": s.get("compile_seconds"),
            "train_seconds": s.get("train_seconds"),
            "env_steps_per_second_all_seeds": s.get("env_steps_per_second_all_seeds")}
