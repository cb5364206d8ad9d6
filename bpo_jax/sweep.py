"""Reproduce a figure in one call: every (task, algorithm) of a suite with its preset, all seeds
of one run as one vmapped program, then curves, figures and a report against the paper.

    from bpo_jax import sweep

    plan = sweep.plan("paper/mujoco", algos=("bpo", "ppo"), num_seeds=10, total_steps=1_000_000)
    sweep.run(plan, "sweeps/mujoco")        # resumable: finished runs are kept, killed ones resume

The sweep directory holds ``sweep.json`` (what was asked, how its runs compile and on how many
CPU devices),
``runs/<task>__<algo>/`` (one :class:`bpo_jax.session.RunSession` each: config.json, metrics.csv with per-seed rows,
summary.json, checkpoints while it runs), and, refreshed after every run, ``curves.csv``
(every seed's curve in one table), ``figure.png`` (one panel per task, the algorithms on the
same axes), ``report.md`` (against the paper's values, :mod:`bpo_jax.report`) and
``summary.json`` (per run: final return per seed, steps, wall-clock).

Calling :func:`run` again on the same directory with the same plan skips finished runs and
resumes an interrupted one from its newest checkpoint; a plan that differs only by a larger
``total_steps`` takes every run on from its last checkpoint to the new budget (the 1M-step
sweep becomes the 2M-step one without redoing the first million steps; runs whose
learning rate anneals over their budget cannot, see :func:`bpo_jax.session.regrow`); any other
plan is refused.

Runs of one suite differ in network shapes and rollout sizes (each task has its own preset),
so each (task, algorithm) is its own program; its seeds share it.  A ``grid`` (Config field ->
values; any numeric field but the budget and the seed) adds a run per combination of values:
every grid point is a run directory of its own (``runs/<task>__<algo>__eps=0.1``), and the
grid points of one (task, algorithm) that differ only in what a program traces
(:data:`TRACED`: learning rate, eps, BPO's lambda, ...) train as one vmapped program, all their
seeds with it (:func:`bpo_jax.session.run_together`), each seed with the numbers it would have
alone.  Sizes (``num_epochs``, ``num_minibatches``, ...) change the program, so each of their
values is a program of its own::

    plan = sweep.plan("paper/mujoco", algos="bpo", tasks="Hopper-v4", num_seeds=5,
                      grid={"eps": (0.1, 0.2, 0.3), "bpo_lambda": (0.001, 1, 10)})  # 9 runs, 45 seeds, 1 program

A grid field that only another algorithm reads (``bpo_lambda`` for PPO) leaves that
algorithm's runs at their preset, as does one that a run's settings leave unused (``obs_clip``
without ``normalize_obs``, ``init_std`` with discrete actions: :data:`bpo_jax.config.READ_WHEN`);
a field no run reads is refused.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
import os
import time
import typing
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from bpo_jax import curves, presets, report, reporting, runner, tracking
from bpo_jax.config import READ_WHEN, SWEEPABLE, Config
from bpo_jax.errors import PLUGIN_HINT, first_line, unknown_name
from bpo_jax.runner import BadUpdateError
from bpo_jax.session import RunOptions, RunSession, SessionError, check_memory, run_together

SWEEP_FILE = reporting.SWEEP_FILE

# Grid fields a program traces (grid points that differ only in these share one program): the
# sweepable hyperparameters, and eps, which reaches the program as its two bounds.
TRACED: tuple[str, ...] = ("eps",) + SWEEPABLE
# Numeric fields a grid may not vary, and what sets them instead.
_NOT_GRID = {"total_steps": "the sweep's `total_steps` sets every run's budget",
             "seed": "`num_seeds` seeds every run"}


@functools.cache
def _made(env: str, env_options: tuple):
    """One copy of ``env``, to ask for its spaces, or None where it cannot be made (the run
    itself then says what is wrong, naming it)."""
    from bpo_jax import envs

    try:
        return envs.make(env, num_envs=1, **Config(env=env, env_options=env_options).env_kwargs())
    except (ImportError, ValueError, TypeError):
        return None


def _continuous(env: str, env_options: tuple) -> bool:
    """Whether ``env`` acts in a continuous (Box) action space, where a Gaussian policy's
    ``init_std`` and ``min_std`` apply."""
    from bpo_jax.envs.base import Discrete

    made = _made(env, env_options)
    return made is None or not isinstance(made.action_space, Discrete)


def _check_programs(p: "Plan") -> None:
    """Before the sweep claims its folder: every program (the seeds of all its runs) fits in
    memory (:func:`bpo_jax.session.check_memory`), and its algorithm's loss keeps the contract
    (:func:`bpo_jax.train.check_loss`: a plug-in's bad loss left a claimed folder behind)."""
    from bpo_jax.algorithms import LossContractError
    from bpo_jax.networks import make_network
    from bpo_jax.train import check_loss

    for group in p.programs():
        config = group[0].config
        made = _made(config.env, config.env_options)
        if made is None:
            continue
        try:
            network = make_network(config, made.action_space, made.obs_spec)
        except ValueError:  # the run itself says what is wrong, naming it
            continue
        try:
            check_memory(config, p.num_seeds * len(group), made.obs_spec, network)
            check_loss(config, made)
        except (SessionError, LossContractError) as e:
            raise SweepError(f"{group[0].task} {config.algo}: {e}") from None


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
    """Its folder under runs/: <task>__<algo> with / as _, then __<field>=<value> per grid field."""
    task: str
    config: Config
    point: tuple[tuple[str, float], ...] = ()
    """Its grid point: (field, value) pairs (none without a grid)."""


@dataclass(frozen=True)
class Plan:
    suite: str
    algos: tuple[str, ...]
    num_seeds: int
    total_steps: Optional[int]
    """Overrides every preset's budget when set (a shorter reproduction)."""
    runs: tuple[SweepRun, ...]
    grid: tuple[tuple[str, tuple[float, ...]], ...] = ()
    """(field, values) pairs; every combination is a run of each (task, algorithm)."""

    def asked(self) -> dict:
        """What sweep.json records: enough to tell whether a directory holds this sweep."""
        asked = {"suite": self.suite, "algos": list(self.algos), "num_seeds": self.num_seeds,
                 "total_steps": self.total_steps, "tasks": list(dict.fromkeys(r.task for r in self.runs))}
        if self.grid:
            asked["grid"] = {name: list(values) for name, values in self.grid}
        return {**asked, "runs": [r.name for r in self.runs]}

    def programs(self) -> list[list[SweepRun]]:
        """The runs grouped by program, in plan order: the grid points of one (task, algorithm)
        that differ only in :data:`TRACED` fields."""
        groups: dict[tuple, list[SweepRun]] = {}
        for r in self.runs:
            shape = tuple((name, value) for name, value in r.point if name not in TRACED)
            groups.setdefault((r.task, r.config.algo, shape), []).append(r)
        return list(groups.values())


def plan(suite: str, algos: Sequence[str] = ("bpo", "ppo"), num_seeds: int = 10,
         total_steps: Optional[int] = None, tasks: Optional[Sequence[str]] = None,
         grid: Optional[Mapping[str, Sequence[float]]] = None) -> Plan:
    """Every (task, algorithm) of ``suite`` with its preset (only ``tasks`` when given: full
    names such as paper/Hopper-v4, or the part after the slash), and with ``grid`` (numeric
    Config field -> values) once per combination of its values; checks every configuration."""
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
        raise SweepError(f"{unknown_name('algo', unknown[0], algorithms.names())} (in `algos`)" + PLUGIN_HINT)
    _refuse_repeats("algos", algos)
    algos = tuple(sorted(algos, key=algorithms.names().index))  # one sweep, however the algorithms are listed
    num_seeds = _positive_int("num_seeds", num_seeds)
    if total_steps is not None:
        total_steps = _positive_int("total_steps", total_steps, "None (each preset's budget) or ")
    available = SUITES[suite].tasks()
    if not available:
        raise SweepError(f"suite {suite} has no tasks in this installation (its presets are not defined)")
    if suite == "paper/isaaclab":  # torch simulators, stepped from the host: no vmapped seeds
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
            raise SweepError(f"{unknown_name(f'{suite} task', unknown[0], available)} (in `tasks`)")
        _refuse_repeats("tasks", tasks, lambda t: t if t in available else short[t])
        chosen = [t for t in available if t in tasks or t.partition("/")[2] in tasks]
    grid = _grid(grid)
    unread = next((name for name, _ in grid if not any(algorithms.reads(algo, name) for algo in algos)), None)
    if unread is not None:
        raise SweepError(f"`grid` varies {unread}, which no algorithm of this sweep ({', '.join(algos)}) reads")
    presets_of = {}
    for task in chosen:
        for algo in algos:
            fields = SUITES[suite].settings(task, algo)
            if total_steps is not None:
                fields = {**fields, "total_steps": total_steps}
            presets_of[task, algo] = fields
    reads = _reader(grid, presets_of)
    idle = next((name for name, _ in grid if not any(reads(key, name) for key in presets_of)), None)
    if idle is not None:
        raise SweepError(f"`grid` varies {idle}, which no run of this sweep reads: a run reads it only with "
                         f"{READ_WHEN[idle][0]}, and none here has that; vary another field")
    runs = []
    for task in chosen:
        for algo in algos:
            fields = presets_of[task, algo]
            mine = [(name, values) for name, values in grid if reads((task, algo), name)]
            for values in itertools.product(*(v for _, v in mine)):
                point = tuple((name, value) for (name, _), value in zip(mine, values))
                name = "__".join([f"{task.replace('/', '_')}__{algo}"] + [f"{k}={curves.number_text(v)}" for k, v in point])
                config = Config(**{**fields, **dict(point)})
                try:
                    config.validate()
                except ValueError as e:
                    if not point:
                        raise
                    raise SweepError(f"run {name}: {first_line(e)}") from None
                runs.append(SweepRun(name, task, config, point))
    return Plan(suite, algos, num_seeds, total_steps, tuple(runs), grid)


def _reader(grid, presets_of: dict) -> Callable[[tuple, str], bool]:
    """Whether the runs of a (task, algorithm), with its preset ``presets_of[key]``, read grid
    field ``name``: its algorithm reads it, and its settings turn it on (:data:`READ_WHEN`)."""
    from bpo_jax import algorithms

    names = frozenset(name for name, _ in grid)

    def reads(key: tuple, name: str) -> bool:
        if not algorithms.reads(key[1], name):
            return False
        if name not in READ_WHEN:
            return True
        try:
            config = Config(**presets_of[key])
            return READ_WHEN[name][1](config, names, lambda: _continuous(config.env, config.env_options))
        except (TypeError, ValueError):  # a preset validate() refuses below, naming its run
            return True
    return reads


def grid_fields() -> tuple[str, ...]:
    """The Config fields a grid may vary: every int or float field but the budget and the seed."""
    return tuple(name for name, kind in _numeric_fields().items() if name not in _NOT_GRID)


def _numeric_fields() -> dict[str, type]:
    """Config's int and float fields (Optional ones included) -> int or float."""
    kinds = {}
    for name, hint in typing.get_type_hints(Config).items():
        for kind in (int, float):
            if hint is kind or hint == Optional[kind]:
                kinds[name] = kind
    return kinds


def _grid(grid) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """``grid`` checked: a mapping of grid_fields() to non-empty sequences of distinct numbers
    (whole numbers for an int field)."""
    if grid is None:
        return ()
    if not isinstance(grid, Mapping):
        raise SweepError(f"`grid` must map field names to values, e.g. {{'eps': (0.1, 0.2)}}, got {_shown(grid)}")
    kinds = _numeric_fields()
    checked = []
    for name, values in grid.items():
        if name not in Config.__dataclass_fields__:
            raise SweepError(unknown_name("`grid` field", name, grid_fields()))
        if name in _NOT_GRID or name not in kinds:
            why = _NOT_GRID.get(name, "not a number: sweep it as separate sweeps" if name in Config.__dataclass_fields__
                                else "no such field")
            raise SweepError(f"`grid` cannot vary {name!r} ({why}); it varies {', '.join(grid_fields())}")
        values = (values,) if isinstance(values, numbers.Real) else values
        try:
            values = tuple(values)
        except TypeError:
            raise SweepError(f"`grid` values of {name} must be numbers, got {_shown(values)}") from None
        if not values:
            raise SweepError(f"`grid` gives {name} no values; give one or more")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise SweepError(f"`grid` values of {name} must be numbers, got {_shown(v)}")
            if kinds[name] is int and not (math.isfinite(v) and v == int(v)):
                raise SweepError(f"`grid` values of {name} must be whole numbers, got {v!r}")
        values = tuple(sorted(kinds[name](v) for v in values))  # one order, whatever order they came in
        twice = next((a for a, b in zip(values, values[1:]) if a == b), None)
        if twice is not None:
            raise SweepError(f"`grid` gives {name} the value {curves.number_text(twice)} twice; give each value once")
        checked.append((name, values))
    order = list(Config.__dataclass_fields__)  # one order of fields too: the same grid names the same runs
    return tuple(sorted(checked, key=lambda item: order.index(item[0])))


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
    """Run (or finish) every run of ``p`` in ``out``, one program at a time (the grid points of a
    (task, algorithm) together), refreshing the figure, curves and report after each; returns
    the summary.  A run that diverges (a NaN: resuming would repeat it) is marked DIVERGED and
    kept out of the figure, and the runs trained beside it go on without it; a KeyboardInterrupt
    or other failure propagates after the runs' sessions have written their INCOMPLETE notes,
    and calling again resumes."""
    options.validate()  # SessionError (a ValueError), one line, resume_hint included: before anything is written
    if options.tensorboard:  # every seed of a program's runs logs at once
        try:
            tracking.check_open_files(p.num_seeds * max(len(group) for group in p.programs()))
        except tracking.TrackingError as e:
            raise SweepError(str(e)) from None
    _check_programs(p)
    _check_suites(p)
    _claim(p, out, options)
    moved = _devices_moved(p, out)
    if moved:
        say(moved)
    title = title_of(out)
    programs = p.programs()
    for i, group in enumerate(programs):
        head = f"[sweep {i + 1}/{len(programs)}] {group[0].task} {group[0].config.algo}"
        told: set[str] = set()  # runs that diverged in this call (said once)
        while _run_program(p, group, out, options, say, head, told):  # again without a run that diverged
            pass
        write_outputs(out, title=title)
    return write_outputs(out, title=title)


def _check_suites(p: Plan) -> None:
    """A suite whose packages are missing (the atari/ suite without its extra), said before the
    sweep's folder is claimed: its sweep.json would then refuse the sweep the user meant to run
    once the extra is installed ("holds a sweep with another --algos")."""
    from bpo_jax import envs

    for suite in sorted({run.config.env.partition("/")[0] for run in p.runs}):
        try:
            envs.list_envs(suite)
        except (envs.MissingDependencyError, envs.UnknownEnvError) as e:
            raise SweepError(first_line(e)) from None


def _run_program(p: Plan, group: list[SweepRun], out: str, options: RunOptions, say: Callable[[str], None],
                 head: str, told: set[str]) -> bool:
    """Finish the runs of one program; True where one diverged and the others are still to finish."""
    sessions = []
    for r in group:
        run_dir = os.path.join(out, "runs", r.name)
        session = None if os.path.abspath(run_dir) in told else _session(p, r, run_dir, options, group, say, head)
        if session is not None:
            sessions.append(session)
    # Runs that start from the same update train as one program (a grid: all of them).
    for batch in _by_start(sessions):
        # What the program's devices split, from the runs it really trains (not those diverged).
        spread = runner.layout(batch[0].config, len(batch) * batch[0].num_seeds, batch[0].options.split)
        if spread["devices"] > 1:
            together = f"{len(batch)} runs as one program, " if len(batch) > 1 else ""
            say(f"{head}: {together}{runner.layout_words(spread, runner.devices_word())}")
        start = time.perf_counter()
        try:
            done = run_together(batch)
        except BadUpdateError as e:
            told.add(os.path.abspath(e.run_dir))
            words = options.wording or str  # the front end's names for parameters (--lr)
            say(f"{head} {os.path.basename(e.run_dir)}: diverged, kept out of the figure: {words(first_line(e))}")
            if len(batch) == 1:
                continue
            return True
        took = time.perf_counter() - start
        for session, result in zip(batch, done):
            name = f" {os.path.basename(session.out)}" if p.grid else ""
            final = reporting.final_return_text(result.summary["final_episode_return"], 1, explained=False)
            say(f"{head}{name}: final return {final} in {took:.0f}s"
                + (f" ({len(batch)} runs as one program)" if len(batch) > 1 else ""))
    return False


def _session(p: Plan, r: SweepRun, run_dir: str, options: RunOptions, group: list[SweepRun],
             say: Callable[[str], None], head: str) -> Optional[RunSession]:
    """The session that finishes run ``r``: a new one, one resumed from its checkpoint (the
    newest one every resumable run of ``group`` has, so that they resume as one program), or
    None where it finished earlier."""
    from bpo_jax import checkpoint

    head = f"{head} {r.name}" if r.point else head
    state = status(run_dir)
    if state == "diverged":
        say(f"{head}: diverged earlier, kept out of the figure (remove {run_dir} to train it again)")
        return None
    if state == "new":
        say(f"{head}: {p.num_seeds} seed(s) x {r.config.num_updates * r.config.batch_size:,} steps")
        return RunSession.start(r.config, p.num_seeds, run_dir, overwrite=True, options=options)
    saved, _ = _saved(run_dir, state)
    # Budgets compare in whole updates: 16,400 steps of 512-step updates is the 16,384-step run.
    same = saved.num_updates == r.config.num_updates
    if state == "finished" and same:
        say(f"{head}: finished earlier, kept")
        return None
    budget = None if same else r.config.total_steps
    resume = functools.partial(RunSession.resume, options=options, expect={"num_seeds": p.num_seeds},
                               total_steps=budget)
    if state == "finished":
        further = "" if same else f" from {saved.num_updates * saved.batch_size:,} on to {budget:,} steps per seed"
        say(f"{head}: going on {run_dir}{further}")
        return resume(run_dir)
    further = "" if same else f", on to {budget:,} steps per seed"
    say(f"{head}: resuming {run_dir}{further}")
    folder = os.path.join(run_dir, checkpoint.CHECKPOINTS)
    others = [os.path.join(os.path.dirname(run_dir), o.name) for o in group]
    common = set.intersection(*[_checkpoint_names(d) for d in others if status(d) == "resumable"])
    # The newest checkpoint every resumable run has (they resume as one program); one found
    # damaged gives way to the one before it, and that run resumes on its own.
    for name in sorted(common, reverse=True):
        try:
            return resume(os.path.join(folder, name))
        except checkpoint.DamagedCheckpoint as e:
            say(f"{head}: {first_line(e)}; resuming from the checkpoint before it")
    try:
        return resume(run_dir)
    except checkpoint.DamagedCheckpoint as e:
        raise SweepError(f"{first_line(e)}; no checkpoint of {run_dir} is whole: remove that folder and call the "
                         "sweep again to train the run from the start") from None


def _checkpoint_names(run_dir: str) -> set[str]:
    """The step_* folder names of a run's complete checkpoints."""
    from bpo_jax import checkpoint

    return {os.path.basename(c) for c in checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS))}


def _by_start(sessions: list[RunSession]) -> list[list[RunSession]]:
    """``sessions`` in batches that start at the same update, in order of their first run."""
    batches: dict[int, list[RunSession]] = {}
    for session in sessions:
        batches.setdefault(session.start_update, []).append(session)
    return list(batches.values())


def status(run_dir: str) -> str:
    """finished, diverged (stopped by a NaN, which resuming would repeat), resumable (a
    checkpoint to go on from), damaged (not marked unfinished, yet without config.json or
    metrics.csv), or new (nothing usable: start over)."""
    from bpo_jax import checkpoint

    if not os.path.isdir(run_dir):
        return "new"
    if reporting.diverged_note(run_dir) is not None:
        return "diverged"
    if not reporting.is_incomplete(run_dir):
        if curves.is_run_dir(run_dir):
            return "finished"
        if os.listdir(run_dir):  # unmarked, yet not whole: a file was deleted
            return "damaged"
    if checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS)):
        return "resumable"
    return "new"


def _claim(p: Plan, out: str, options: Optional[RunOptions] = None) -> None:
    """Write sweep.json, or check that ``out`` holds this same sweep (or the same with a budget
    every run in it can go on to, and then record the new budget)."""
    reporting.check_creatable(out)
    path = os.path.join(out, SWEEP_FILE)
    asked, saved = p.asked(), _read_sweep_file(out)
    # A sweep's runs compile alike: those yet to start as its first call chose (_check_compiled_as).
    compiled = {} if options is None else {"fast_compile": options.fast_compile}
    if saved is None and options is not None:
        compiled.update(_cpu_devices())
    if saved is None:
        compiled.update(_plugins(p))
    if saved is not None:
        keys = list(asked) + (["grid"] if "grid" in saved and "grid" not in asked else [])
        diff = sorted((k for k in keys if saved.get(k) != asked.get(k)), key=lambda k: k == "runs")  # runs last
        other = [k for k in diff if k != "total_steps"]
        if other:
            shown = _grid_text if other[0] == "grid" else _listed
            raise SweepError(f"{out} holds a sweep with another `{other[0]}` ({shown(saved.get(other[0]))}, asked "
                             f"{shown(asked.get(other[0]))}); choose another `out`")
        # A sweep.json from before it recorded `fast_compile`: as its runs compiled, else as this call asks.
        recorded = saved["fast_compile"] if "fast_compile" in saved else _compiled_by_runs(p, out)
        # a run taken further by hand, too (`bpo-jax train --resume R --total-steps N`)
        _check_budgets(p, out, options, recorded)
        if recorded is not None:
            compiled = {"fast_compile": recorded}
        for kept in ("cpu_devices", "plugins"):
            if kept in saved:
                compiled[kept] = saved[kept]
        if diff or compiled.keys() - saved.keys():
            reporting.write_json(path, {**asked, **compiled})
        return
    if os.path.isdir(out) and os.listdir(out):
        if os.path.isdir(os.path.join(out, "runs")):  # a sweep's layout: its sweep.json was deleted or moved
            raise SweepError(f"{out} holds a sweep's runs/ but no {SWEEP_FILE} (deleted?), which says what the sweep "
                             f"is: restore it (a copy, or its backup), or choose another `out`")
        raise SweepError(f"{out} exists, is not empty and holds no {SWEEP_FILE}; choose another `out`")
    owner = _enclosing(out)
    if owner is not None:
        sweep = os.path.isfile(os.path.join(owner, SWEEP_FILE))
        why = ("sweep in {}, whose plot and report would count this sweep's runs as its own" if sweep
               else "run in {}, whose folder holds its own files only")
        raise SweepError(f"{out} is inside the {why.format(owner)}; choose an `out` outside it")
    os.makedirs(out, exist_ok=True)
    reporting.write_json(path, {**p.asked(), **compiled})


def _plugins(p: Plan) -> dict:
    """What sweep.json records of the plug-ins that registered the sweep's algorithms
    (:func:`bpo_jax.plugins.origins`), so that a call without them names what to load."""
    from bpo_jax import plugins

    found = {run.config.algo: plugins.origins(run.config).get("algorithm") for run in p.runs}
    found = {name: origin for name, origin in found.items() if origin is not None}
    return {"plugins": found} if found else {}


def check_plugins(out: str, algos: Sequence[str]) -> None:
    """A SweepError naming the plug-in to load where ``out``'s sweep.json records one for an
    algorithm of ``algos`` that is not registered (a sweep called again without its --plugin)."""
    from bpo_jax import algorithms, plugins

    if not isinstance(out, str) or not os.path.isfile(os.path.join(out, SWEEP_FILE)):
        return
    recorded = (_read_sweep_file(out) or {}).get("plugins") or {}
    if not isinstance(recorded, dict) or isinstance(algos, str) or not isinstance(algos, Sequence):
        return
    for name in algos:
        if name not in algorithms.names() and name in recorded:
            raise SweepError(f"algorithm {name!r} of the sweep in {out} is not registered: "
                             f"{plugins.how_to_load(recorded[name], PLUGIN_HINT.strip())}")


def _cpu_devices() -> dict:
    """What sweep.json records of the devices its programs split over: ``{"cpu_devices": n}`` in
    one process on a CPU (the count sets each device's program, so its float rounding, and a
    resume on another count of cores would go on to float rounding only); nothing elsewhere."""
    import jax

    every = jax.devices()
    return {"cpu_devices": len(every)} if jax.process_count() == 1 and all(
        d.platform == "cpu" for d in every) else {}


def recorded_devices(out: str) -> Optional[int]:
    """The CPU device count ``out``'s sweep trained on (sweep.json's ``cpu_devices``), for a
    front end to restore before JAX starts (:func:`bpo_jax.runner.use_cpu_cores`); None where
    ``out`` holds no such record (:func:`run` reports a damaged one)."""
    try:
        saved = _read_sweep_file(out)
    except SweepError:
        return None
    return None if saved is None else saved.get("cpu_devices")


def _devices_moved(p: Plan, out: str) -> Optional[str]:
    """A note where runs of ``out`` go on from checkpoints made on another count of CPU devices
    than this process has (their programs, and so float rounding, differ: the runs continue,
    not bit for bit); None otherwise."""
    recorded, now = recorded_devices(out), _cpu_devices().get("cpu_devices")
    if recorded is None or now is None or recorded == now:
        return None
    for r in (r for group in p.programs() for r in group):
        run_dir = os.path.join(out, "runs", r.name)
        state = status(run_dir)
        if state == "resumable" or (state == "finished" and _saved(run_dir, state)[0].num_updates
                                    != r.config.num_updates):
            how = (f"{runner.CHOSEN_COUNT}: unset it" if runner.cpu_device_count_chosen() else
                   f"`bpo-jax sweep` restores the count; from Python, call bpo_jax.runner.use_cpu_cores(..., "
                   f"devices={recorded}) before JAX starts")
            return (f"note: this sweep's runs trained on {recorded} CPU device(s) and this process has {now}: the "
                    f"runs it resumes go on to float rounding, not bit for bit ({how})")
    return None


def _enclosing(out: str) -> Optional[str]:
    """The nearest sweep or run directory above ``out`` (real paths), if any.  A run is known by
    its checkpoints/ or a marker beside its files: a project folder may hold a config.json and a
    metrics.csv of its own."""
    def is_run(folder: str) -> bool:
        return curves.has_run_files(folder) and any(os.path.exists(os.path.join(folder, name)) for name in (
            "checkpoints", reporting.INCOMPLETE, reporting.DIVERGED))

    return next((f for f in reporting.folders_above(os.path.realpath(out))
                 if os.path.isfile(os.path.join(f, SWEEP_FILE)) or is_run(f)), None)


def _listed(value) -> str:
    """A sweep.json value as a message shows it: a list as its items, comma-separated."""
    return ", ".join(map(str, value)) if isinstance(value, list) else repr(value)


def _grid_text(grid: Optional[dict]) -> str:
    """A grid as sweep.json holds it, in the words of its parameter: eps=0.1,0.3 bpo_lambda=1."""
    if not grid:
        return "none"
    return " ".join(f"{name}={','.join(curves.number_text(v) for v in values)}" for name, values in grid.items())


def _check_budgets(p: Plan, out: str, options: Optional[RunOptions] = None, compiled: Optional[bool] = None) -> None:
    """Before anything runs: every run already in ``out`` is the plan's run (its settings but
    the budget, its seeds; a finished one with a curve that loads) and can go on to the plan's
    budget (none has gone past it), compiled as it started (``options.fast_compile``); a run yet
    to start, as the sweep's first call chose (``compiled``, from sweep.json; None: unknown)."""
    from bpo_jax import checkpoint
    from bpo_jax.session import SessionError, regrow

    for r in p.runs:
        run_dir = os.path.join(out, "runs", r.name)
        state = status(run_dir)
        if state == "damaged":
            missing = [f for f in ("config.json", "metrics.csv") if not os.path.isfile(os.path.join(run_dir, f))]
            raise SweepError(f"{run_dir} lacks {' and '.join(missing)} (deleted?); remove {run_dir} and run the sweep "
                             "again to train it anew")
        kept = checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS))
        if state == "new" and options is not None:
            _check_compiled_as(r, out, kept, options.fast_compile, compiled)
        if state in ("new", "diverged"):  # diverged runs stay as they are
            continue
        saved, seeds = _saved(run_dir, state)
        differs, how = _difference(saved, r.config), "its config.json edited, or the preset changed since?"
        if differs is None and seeds is not None and seeds != p.num_seeds:
            differs, how = f"`num_seeds` {seeds} where this sweep has {p.num_seeds}", "its config.json edited?"
        if differs is not None:
            raise SweepError(f"{run_dir} holds a run with {differs} ({how}); restore it, or remove {run_dir} and run "
                             "the sweep again to train it anew")
        if state == "finished":
            _load(run_dir)  # a cut or edited metrics.csv: said now, not after the runs before it have trained
        if options is not None and (state == "resumable" or (kept and r.config.num_updates > saved.num_updates)):
            _check_compiled_as(r, out, kept, options.fast_compile, compiled)
        if r.config.num_updates < saved.num_updates:
            raise SweepError(f"{r.name} in {out} trains to {saved.num_updates * saved.batch_size:,} steps per seed; a "
                             f"sweep goes on to more steps, not fewer: raise `total_steps` or choose another `out`")
        if r.config.num_updates == saved.num_updates:  # nothing to go on to (budgets count whole updates)
            continue
        if not kept:
            raise SweepError(f"{r.name} in {out} kept no checkpoint to go on from (its checkpoints deleted?); remove "
                             f"{run_dir} to train it anew to the new budget, or choose another `out`")
        try:
            regrow(saved, r.config.total_steps)
        except SessionError as e:
            raise SweepError(f"{r.name} in {out}: {e}") from None


def _saved(run_dir: str, state: str) -> tuple[Config, Optional[int]]:
    """The configuration and seed count in a run's config.json; for an unfinished run whose
    config.json is gone or unreadable, its newest checkpoint's (resuming writes config.json
    again).  Else a SweepError naming the file and what to do."""
    import json

    from bpo_jax import checkpoint

    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError(f"a JSON {type(values).__name__}, not an object")
        seeds = values.pop("num_seeds", None)
        return checkpoint.config_from_dict(values).validate(), seeds
    except (OSError, ValueError, TypeError) as e:
        why = "is missing" if isinstance(e, FileNotFoundError) else \
            f"is unreadable ({first_line(e)}; edited, or written by another bpo-jax version?)"
    if state == "resumable":
        try:
            ckpt = checkpoint.list_checkpoints(os.path.join(run_dir, checkpoint.CHECKPOINTS))[-1]
            return checkpoint.read_config(ckpt), checkpoint.read_metadata(ckpt)["num_seeds"]
        except (IndexError, ValueError):
            pass
    raise SweepError(f"{path} {why}; restore it, or remove {run_dir} and run the sweep again to train it anew")


def _difference(saved: Config, planned: Config) -> Optional[str]:
    """The first setting but the budget in which a run's saved configuration is not the plan's,
    in words (`lr` 0.5 where this sweep has 0.001); None where there is none."""
    mine = dataclasses.replace(saved, total_steps=planned.total_steps).resolved()
    theirs = planned.resolved()
    for f in dataclasses.fields(Config):
        a, b = getattr(mine, f.name), getattr(theirs, f.name)
        if a != b:
            return f"`{f.name}` {a!r} where this sweep has {b!r}"
    return None


def _check_compiled_as(r: SweepRun, out: str, kept: list[str], fast_compile: bool,
                       sweep_compiled: Optional[bool]) -> None:
    """A run that goes on from its checkpoints (``kept``) is compiled as it started (they record
    `fast_compile`); one that starts afresh (none kept), as the sweep's runs compile
    (``sweep_compiled``, None: unknown).  Refused before anything runs, in the sweep's words,
    else the sweep stops at that run."""
    compiled = _compiled(kept) if kept else sweep_compiled
    if compiled is None or bool(compiled) == fast_compile:
        return
    how = "with" if compiled else "without"
    if not kept:
        raise SweepError(f"the sweep in {out} compiles its runs {how} `fast_compile` (as its first call chose) and "
                         f"{r.name} starts from the beginning: run the sweep {how} `fast_compile`, so that its runs "
                         "compile alike (float rounding differs)")
    raise SweepError(f"{r.name} in {out} was compiled {how} `fast_compile`, and a run goes on compiled as it started "
                     f"(float rounding differs): run the sweep {how} `fast_compile`")


def _compiled(kept: list[str]) -> Optional[bool]:
    """`fast_compile` as the newest of a run's checkpoints ``kept`` records it; None where it does
    not (none kept, or a damaged one: the resume says so, naming it)."""
    from bpo_jax import checkpoint

    try:
        compiled = checkpoint.read_metadata(kept[-1]).get("fast_compile") if kept else None
    except ValueError:
        return None
    return compiled if isinstance(compiled, bool) else None


def _compiled_by_runs(p: Plan, out: str) -> Optional[bool]:
    """How the runs of ``p`` in ``out`` compiled, for a sweep.json from before it recorded that;
    None where no checkpoint says."""
    from bpo_jax import checkpoint

    found = (_compiled(checkpoint.list_checkpoints(os.path.join(out, "runs", r.name, checkpoint.CHECKPOINTS)))
             for r in p.runs)
    return next((c for c in found if c is not None), None)


def write_outputs(out: str, title: Optional[str] = None) -> dict:
    """curves.csv, figure.png, report.md and summary.json from the finished runs under ``out``."""
    states = {d: status(d) for d in sorted_runs(out)}
    found = [d for d, state in states.items() if state == "finished"]
    diverged = [d for d, state in states.items() if state == "diverged"]
    if not found and not diverged:
        return {"runs": [], "diverged": []}
    title = title or title_of(out)
    cs = grid_labels(curves.name_variants([_load(d) for d in found]))
    if cs:
        reporting.write_atomic(os.path.join(out, "curves.csv"), lambda tmp: curves.write_csv(cs, tmp))
        reporting.write_atomic(os.path.join(out, "figure.png"), lambda tmp: curves.plot(cs, tmp, title))
    reporting.write_text(os.path.join(out, "report.md"), report_text(cs, title, diverged, pending_runs(out)))
    summary = {"runs": [_run_summary(c) for c in cs],
               "diverged": [{"run": os.path.basename(d), "note": reporting.diverged_note(d)} for d in diverged]}
    reporting.write_json(os.path.join(out, "summary.json"), summary)
    return summary


def _load(run_dir: str) -> curves.Curve:
    """A finished run's curve; a damaged one raises SweepError saying how to train it again."""
    try:
        return curves.load(run_dir)
    except curves.CurveError as e:
        raise SweepError(f"{e}; remove {run_dir} and run the sweep again to train it anew") from None


def report_text(cs: Sequence[curves.Curve], title: Optional[str], diverged: Sequence[str] = (),
                pending: Sequence[str] = ()) -> str:
    """The report of ``cs`` (:func:`bpo_jax.report.markdown`), then the runs that diverged, each
    with its DIVERGED note, then a sweep's runs that have not finished yet."""
    text = report.markdown(cs, title or "Results against the paper")
    if diverged:
        text += "\nDiverged (kept out of the table and figure):\n\n" + "".join(
            f"* {os.path.basename(os.path.normpath(d))}: {reporting.diverged_note(d)}\n" for d in diverged)
    if pending:
        text += (f"\nNot finished yet ({len(pending)} of the sweep's runs; its command goes on with them): "
                 f"{', '.join(pending)}\n")
    return text


def pending_runs(out: str) -> list[str]:
    """The runs a sweep directory's sweep.json plans that have neither finished nor diverged
    (none for another directory, or a damaged record)."""
    try:
        asked = _read_sweep_file(out)
    except SweepError:
        return []
    return [] if asked is None else [name for name in asked["runs"]
                                     if status(os.path.join(out, "runs", name)) not in ("finished", "diverged")]


def title_of(out: str) -> Optional[str]:
    """A sweep directory's title, from its sweep.json (``paper/mujoco: BPO, PPO, 10 seeds``);
    None for any other directory."""
    try:
        asked = _read_sweep_file(out)
    except SweepError:
        return None
    if asked is None:
        return None
    n = asked["num_seeds"]
    return f"{asked['suite']}: {', '.join(a.upper() for a in asked['algos'])}, {n} seed{'s' * (n != 1)}"


def _read_sweep_file(out: str) -> Optional[dict]:
    """``out``'s sweep.json (None where it has none); a damaged one raises SweepError naming it."""
    import json

    path = os.path.join(out, SWEEP_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            asked = json.load(f)
    except (OSError, ValueError) as e:
        raise SweepError(f"{path} is unreadable ({first_line(e)}): this sweep's record is damaged; restore "
                         "it, or choose another `out`") from None
    def names(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)

    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    valid = {"suite": lambda v: isinstance(v, str), "algos": names, "num_seeds": count, "tasks": names,
             "total_steps": lambda v: v is None or count(v), "runs": names}
    bad = [k for k, ok in valid.items() if not (isinstance(asked, dict) and k in asked and ok(asked[k]))]
    bad += ["fast_compile"] * (isinstance(asked, dict) and not isinstance(asked.get("fast_compile", False), bool))
    bad += ["cpu_devices"] * (isinstance(asked, dict) and not count(asked.get("cpu_devices", 1)))
    if bad:
        raise SweepError(f"{path} is not a sweep record ({', '.join(bad)} missing or malformed; was it edited?): "
                         "restore it, or choose another `out`")
    return asked


def grid_labels(cs: Sequence[curves.Curve]) -> list[curves.Curve]:
    """Runs of a grid sweep (``<sweep>/runs/<task>__<algo>__eps=0.1__lr=0.001``) labelled by
    their grid point, as their names say it, also where a point is the only one left of its
    task and algorithm (the others diverged); other curves as they are."""
    def point(c: curves.Curve) -> str:
        sweep_dir = os.path.dirname(os.path.dirname(os.path.abspath(c.run_dir)))
        if not os.path.isfile(os.path.join(sweep_dir, SWEEP_FILE)):
            return ""
        return ", ".join(os.path.basename(os.path.normpath(c.run_dir)).split("__")[2:])

    labels = [point(c) for c in cs]
    return [dataclasses.replace(c, variant=label) if label else c for c, label in zip(cs, labels)]


def sorted_runs(out: str) -> list[str]:
    """Run folders under out/runs in the order the sweep made them (sweep.json), else by name."""
    root = os.path.join(out, "runs")
    if not os.path.isdir(root):
        return []
    names = sorted(os.listdir(root))
    saved = _read_sweep_file(out)
    if saved is not None:
        order = saved["runs"]
        names = [n for n in order if n in names] + [n for n in names if n not in order]
    return [os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))]


def _run_summary(c: curves.Curve) -> dict:
    import json

    import numpy as np

    try:  # curves.load refused an unreadable one; a deleted one leaves the timings unknown
        with open(os.path.join(c.run_dir, "summary.json")) as f:
            s = json.load(f)
    except FileNotFoundError:
        s = {}
    final = c.at(c.steps[-1])
    if "final_episode_return" not in s:
        finite = final[np.isfinite(final)]
        s = {**s, "final_episode_return": float(finite.mean()) if len(finite) else None}
    return {"run": os.path.basename(c.run_dir), "env": c.env, "algo": c.algo, "variant": c.variant, "seeds": c.num_seeds,
            "env_steps": int(c.steps[-1]), "final_return_per_seed": [round(float(v), 3) for v in final],
            "final_return_mean": s.get("final_episode_return"), "compile_seconds": s.get("compile_seconds"),
            "train_seconds": s.get("train_seconds"),
            "env_steps_per_second_all_seeds": s.get("env_steps_per_second_all_seeds")}
