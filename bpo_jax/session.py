"""A training run as a library object: start it in its directory, run it with checkpoints and
loggers, resume it after a kill, and finish it with its final files.

    from bpo_jax import Config
    from bpo_jax.session import RunSession

    session = RunSession.start(Config(env="gymnax/CartPole-v1"), num_seeds=3, out="runs/x")
    done = session.run()                       # chunks, checkpoints, TensorBoard, progress
    print(done.summary["final_episode_return"])
    RunSession.resume("runs/x").run()          # after a kill: on from the newest checkpoint

What a run computes (its :class:`~bpo_jax.config.Config`, number of seeds and chunk size) is
fixed when it starts and saved in every checkpoint.  How it is watched and written
(:class:`RunOptions`) is not, and is all that :meth:`RunSession.resume` takes besides the
path.  A front end that re-reads its original arguments passes them as ``expect``: a value
that differs from the checkpoint's run raises :class:`ProgramMismatch` naming it.

The one exception is the budget: a run, finished or not, can go on to more steps,

    RunSession.resume("runs/x", total_steps=2_000_000).run()   # a 1M-step run, on to 2M

and computes what a run started with that budget computes (on CPU, bit for bit when the old
end is a chunk boundary), provided its updates do not depend on the budget: not with
``lr_schedule`` linear, whose learning rate anneals to 0 at the end of the old budget.

Messages name parameters in backticks (`overwrite`), so that a front end can put its own
spelling in their place (the command line writes ``--overwrite``).

In a multi-process run (``jax.distributed``) every process makes the same session and calls
:meth:`RunSession.run`; only process 0 writes the directory, checkpoints and logs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from bpo_jax import checkpoint, envs, reporting, runner, tracking, train
from bpo_jax.config import Config, ConfigError, plain, plain_fields, type_error
from bpo_jax.envs import contract
from bpo_jax.envs.base import Discrete
from bpo_jax.errors import first_line, interrupt_deferred, what_stopped
from bpo_jax.networks import make_network

DEFAULT_REPORTS = 20  # chunks (progress reports) per run when no chunk size is given


class SessionError(ValueError):
    """A run cannot start or resume as asked; one line.  ``field`` names the parameter to
    change (a Config or RunOptions field, or an argument of start/resume), if one is to blame."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


class ProgramMismatch(SessionError):
    """A value given to :meth:`RunSession.resume` in ``expect`` differs from the checkpoint's run."""

    def __init__(self, field: str, asked: Any, saved_field: str, saved: Any,
                 remedy: str = "a resumed run keeps what it computes (start a new run to change it)"):
        super().__init__(f"`{field}` = {asked!r} differs from the checkpoint's run, whose {saved_field} is "
                         f"{saved!r}; {remedy}", field)
        self.asked = asked
        self.saved_field = saved_field  # the saved value's name (`reports` is checked as chunk_updates)
        self.saved = saved


class RunFinished(SessionError):
    """:meth:`RunSession.resume` was given a run that has finished."""

    def __init__(self, run_dir: str, config: Config):
        further = ("a larger `total_steps` takes it further" if config.schedule != "linear" else
                   "its learning rate anneals over its budget, so a larger budget needs a new run")
        super().__init__(f"the run in {run_dir} has finished (no {reporting.INCOMPLETE} marker); nothing to resume "
                         f"({further})")
        self.run_dir = run_dir


class RunDirectoryGone(RuntimeError):
    """A run's directory was removed while it trained: it stops rather than write its
    checkpoints and results into a new folder that would look like a run of its own."""

    def __init__(self, run_dir: str):
        super().__init__(f"the run directory {run_dir} was removed while the run trained; nothing more is written there")
        self.run_dir = run_dir


@dataclass(frozen=True)
class RunOptions:
    """How a run is watched and written.  None of it changes what the run computes, so a
    resumed run may use other options than the session it continues."""

    checkpoint_every_updates: Optional[int] = None
    """When set: save a checkpoint at the first chunk end at least this many updates after the
    last save, instead of by wall clock."""
    checkpoint_every_seconds: Optional[float] = 600.0
    """Save a checkpoint at the first chunk end this many seconds after the last save (or the
    session's start).  With both cadences None: after every chunk.  The last chunk is always
    saved."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept in OUT/checkpoints."""
    checkpoints: bool = True
    """Write checkpoints at all (without them the run can be neither resumed nor evaluated)."""
    tensorboard: bool = True
    """TensorBoard event files in OUT/tb/seed_<i>."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package)."""
    wandb_project: str = "bpo-jax"
    """W&B project."""
    wandb_entity: Optional[str] = None
    """W&B entity; None: the account's default."""
    progress: bool = True
    """Progress on stderr: a bar on a terminal, one line per chunk otherwise."""
    compile_cache: bool = True
    """Use JAX's persistent compilation cache (:func:`bpo_jax.runner.enable_compilation_cache`)."""
    fast_compile: bool = False
    """Compile with :data:`bpo_jax.runner.FAST_COMPILE`: less compile time, slower steps, and
    other float rounding, so the same seed gives other numbers.  Recorded in the checkpoints
    and summary.json; a resume must compile as its run did."""
    split: str = "auto"
    """What the devices split: ``envs`` (the env batch of every seed) or ``seeds`` (each device
    trains whole seeds; the seed count must divide over the devices); ``auto``: seeds where the
    devices are CPUs of one process and the seeds divide over them (:func:`bpo_jax.runner.use_cpu_cores`
    makes a CPU's cores its devices), else envs.  Same run up to float rounding either way."""
    resume_hint: Optional[str] = None
    """How the INCOMPLETE note tells a reader to continue the run, a command line: ``{out}``
    stands for its directory, quoted for the shell where it needs to be (``shlex.quote``).  None:
    the library call, with the options a resume must repeat (``fast_compile``)."""
    restart_hint: Optional[str] = None
    """How it tells a reader to start again a run stopped before its first checkpoint (a sweep:
    its own command, which restarts such runs); None: start it again with `overwrite`."""
    wording: Optional[Callable[[str], str]] = None
    """How the notes in INCOMPLETE and DIVERGED (and :attr:`RunSession.note`) name parameters:
    None keeps the library's backticks (`overwrite`); a front end passes its own words (the
    command line's turns `overwrite` into --overwrite)."""

    def __post_init__(self):
        plain_fields(self)

    def validate(self) -> "RunOptions":
        """Raise :class:`SessionError` naming the field that cannot be used."""
        hints = typing.get_type_hints(RunOptions)
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name in ("resume_hint", "restart_hint"):
            try:
                (getattr(self, name) or "").format(out="OUT")
            except (KeyError, IndexError, ValueError) as e:
                raise SessionError(f"`{name}` may name only {{out}} (a literal brace is written doubled), got "
                                   f"{getattr(self, name)!r} ({first_line(e)})", name) from None
        if self.wording is not None and not callable(self.wording):
            raise SessionError(f"`wording` must be a function from str to str, got {self.wording!r}", "wording")
        for name in ("checkpoint_every_updates", "checkpoint_every_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SessionError(f"`{name}` must be > 0, got {value}", name)
        if self.split not in runner.SPLITS:
            raise SessionError(f"`split` must be one of {', '.join(runner.SPLITS)}, got {self.split!r}", "split")
        if self.keep_checkpoints < 1:
            raise SessionError(f"`keep_checkpoints` must be >= 1, got {self.keep_checkpoints}", "keep_checkpoints")
        if self.wandb:
            tracking.require_wandb()
        if self.compile_cache:  # before anything is written: a bad $BPO_JAX_CACHE_MIN_COMPILE_SECONDS or cache folder
            runner.cache_min_compile_seconds()
            folder = runner.cache_dir()
            try:
                reporting.check_creatable(folder)
            except reporting.OutputDirError as e:
                why = str(e).split(";")[0]  # its remedy names `out`
                raise SessionError(f"the compilation cache folder {folder!r} ($BPO_JAX_CACHE_DIR, or the "
                                   f"default) cannot be used: {why}; point $BPO_JAX_CACHE_DIR at a writable folder "
                                   "(or go without the cache: `compile_cache=False`)", "compile_cache") from None
        return self


@dataclass(frozen=True)
class SessionResult:
    """What :meth:`RunSession.run` returns."""

    result: runner.RunResult
    """Metric rows [seeds, updates], the final state (batched over seeds) and the timings."""
    summary: dict[str, Any]
    """summary.json's content: final return, steps, time split, throughput, checkpoint cost."""
    files: tuple[str, ...]
    """What this process wrote into the run directory (nothing on processes other than 0)."""


@dataclass
class RunSession:
    """One training run in its directory.  Make it with :meth:`start` or :meth:`resume` (every
    check happens there, before anything is written), then call :meth:`run` once."""

    config: Config
    """What the run computes."""
    num_seeds: int
    """Seeds trained together as one vmapped program."""
    chunk_updates: int
    """K, updates per compiled call; progress, logs and checkpoints happen between calls."""
    out: str
    """The run directory."""
    options: RunOptions
    """How this session is watched and written."""
    resumed_from: Optional[checkpoint.Loaded] = None
    """The checkpoint this session continues; None for a fresh run."""
    note: Optional[str] = field(default=None, init=False)
    """Why :meth:`run` stopped early (also in OUT/INCOMPLETE): what happened and how to go on."""
    resume_note: Optional[str] = field(default=None, init=False)
    """A resume whose devices run other programs than its run's (another count of them): that it
    goes on to float rounding, not bit for bit, and why; None where it resumes as it ran."""
    _ran: bool = field(default=False, init=False, repr=False)
    _curve_updates: int = field(default=0, init=False, repr=False)  # written to metrics.csv after a NaN stop

    # ------------------------------------------------------------ making one
    @classmethod
    def start(cls, config: Config, num_seeds: int = 1, out: Optional[str | os.PathLike] = None, *,
              chunk_updates: Optional[int] = None, reports: Optional[int] = None, overwrite: bool = False,
              options: RunOptions = RunOptions(), given: Sequence[str] = ()) -> "RunSession":
        """Check everything, then create ``out`` (default ``runs/<env>__<algo>__<time>``) holding
        config.json and an INCOMPLETE marker.  ``chunk_updates`` (K) or ``reports`` (K = the
        largest divisor of the update count giving at least that many chunks, default 20) sets
        the chunk size; ``overwrite`` empties an existing non-empty ``out``.  ``given``: the
        Config fields set on purpose (a command line's flags), refused where the run would not
        read them (:meth:`Config.check_read`)."""
        _check_type("config", config, Config)
        _check_type("options", options, RunOptions)
        num_seeds, chunk_updates, reports = plain(num_seeds), plain(chunk_updates), plain(reports)
        out = os.fspath(out) if isinstance(out, os.PathLike) else out
        for name, value, hint in (("num_seeds", num_seeds, int), ("out", out, Optional[str]),
                                  ("chunk_updates", chunk_updates, Optional[int]), ("reports", reports, Optional[int]),
                                  ("overwrite", overwrite, bool)):
            _check_type(name, value, hint)
        options.validate()
        config.validate()
        if num_seeds < 1:
            raise SessionError(f"`num_seeds` must be >= 1, got {num_seeds}", "num_seeds")
        k = _chunk_size(config.num_updates, chunk_updates, reports)
        # Unknown ids, bad env options, missing suite packages and settings that cannot apply
        # to the env (its actions, a reset pool, the network its observations get) fail here,
        # before any compile or file; then the device count.
        env = envs.make(config.env, num_envs=1, reset_pool=config.reset_pool, **config.env_kwargs())
        if contract.is_users(env):  # at the run's size, so that its trainer need not trace it again
            contract.check_once(envs.make(config.env, num_envs=config.num_envs, reset_pool=config.reset_pool,
                                          **config.env_kwargs()),
                                contract.made_from(config.env, config.num_envs, config.reset_pool, config.env_kwargs()))
        config.validate_env(env.action_space).check_read(given, continuous=not isinstance(env.action_space, Discrete))
        check_memory(config, num_seeds, env.obs_spec, make_network(config, env.action_space, env.obs_spec))
        train.check_loss(config, env)
        _check_machine(config, num_seeds, options)
        session = cls(config=config, num_seeds=num_seeds, chunk_updates=k,
                      out=reporting.default_run_dir(config) if out is None else out, options=options)
        if is_lead():  # other processes write nothing (and would race process 0 creating it)
            reporting.open_run_dir(session.out, overwrite, session._running_note())
            reporting.write_json(os.path.join(session.out, "config.json"), reporting.run_config(config, num_seeds))
        return session

    @classmethod
    def resume(cls, path: str, options: RunOptions = RunOptions(), *,
               expect: Mapping[str, Any] = {}, total_steps: Optional[int] = None) -> "RunSession":
        """Continue the unfinished run at ``path`` (its directory: from the newest checkpoint; or
        one checkpoints/step_* folder: later ones are dropped when :meth:`run` starts) with its
        configuration, seeds and chunk size.  ``expect``: values the caller means the run to
        have (Config fields, ``num_seeds``, ``chunk_updates`` or ``reports``); one that differs
        from the checkpoint's raises :class:`ProgramMismatch` (except ``total_steps``, taken as
        the argument below when that is not given).

        ``total_steps``: another budget (steps per seed) for the run, finished or not: it goes
        on to that many steps (see :func:`regrow`).  Without it, an unfinished run goes to the
        budget in its config.json, which is the checkpoint's, or the larger one of an extension
        stopped before its first new checkpoint.  Nothing is written here."""
        _check_type("path", os.fspath(path) if isinstance(path, os.PathLike) else path, str)
        _check_type("options", options, RunOptions)
        total_steps = plain(total_steps)
        _check_type("total_steps", total_steps, Optional[int])
        if not isinstance(expect, Mapping):
            raise SessionError(f"`expect` must be a mapping of names to values, got {expect!r}", "expect")
        options.validate()
        if not options.checkpoints:  # it would end past its newest checkpoint, which eval, export and resume read
            raise SessionError("a resumed run goes on writing checkpoints, so that its newest checkpoint is its end; "
                               "resume with `checkpoints` on", "checkpoints")
        run_dir, ckpt = checkpoint.locate(path)
        if run_dir is None:
            raise SessionError(f"a run resumes in its run directory (one holding {checkpoint.CHECKPOINTS}/); "
                               f"{ckpt} is not in one", "resume")
        unfinished = reporting.is_incomplete(run_dir)
        if total_steps is None:  # a front end's expected budget is a budget to go on to
            total_steps = expect.get("total_steps")
        if not unfinished and total_steps is None:
            raise RunFinished(run_dir, checkpoint.read_config(ckpt))
        loaded = checkpoint.load(path)  # names an older checkpoint where the newest is damaged
        _check_expected(loaded, {k: v for k, v in expect.items() if k != "total_steps"})
        if total_steps is None:
            total_steps = _planned_steps(run_dir, loaded.config)
        config = regrow(loaded.config, total_steps, done=loaded.start.update)
        if not unfinished and config.num_updates == loaded.start.update:
            raise RunFinished(run_dir, config)
        compiled = loaded.meta.get("fast_compile")  # None: a checkpoint from before it was recorded
        if compiled is not None and compiled != options.fast_compile:
            raise ProgramMismatch("fast_compile", options.fast_compile, "fast_compile", compiled,
                                  f"it compiles as its run did (float rounding): resume with `fast_compile` = {compiled}")
        layout = loaded.meta.get("layout")  # None: a checkpoint from before it was recorded
        options, moved = _resumed_split(config, loaded.meta["num_seeds"], options, layout)
        _check_machine(config, loaded.meta["num_seeds"], options)
        session = cls(config=config, num_seeds=loaded.meta["num_seeds"],
                      chunk_updates=loaded.meta["chunk_updates"], out=run_dir, options=options, resumed_from=loaded)
        session.resume_note = moved
        return session

    # ---------------------------------------------------------------- running
    @property
    def start_update(self) -> int:
        """Updates already done when this session starts training."""
        return 0 if self.resumed_from is None else self.resumed_from.start.update

    @property
    def label(self) -> str:
        return f"{self.config.algo} {self.config.env}"

    def run(self, on_progress: Optional[runner.ProgressFn] = None) -> SessionResult:
        """Train to the end, in chunks, with checkpoints, loggers and progress (``on_progress`` is
        called with a :class:`bpo_jax.runner.Progress` too); then write the final files and
        remove INCOMPLETE.  When anything stops it (a NaN, Ctrl-C, a logger failing), the note in
        INCOMPLETE and :attr:`note` say what happened and how to go on, and the exception
        propagates."""
        return run_together([self], on_progress)[0]

    def _prepare_directory(self, layout: dict) -> Optional[checkpoint.Saver]:
        """Process 0, before training: a resume drops checkpoints later than its own and marks
        the run unfinished again; returns the checkpoint saver (None without checkpoints), which
        records the program's ``layout`` (:func:`bpo_jax.runner.layout`)."""
        folder = os.path.join(self.out, checkpoint.CHECKPOINTS)
        reporting.mark_incomplete(self.out, self._running_note())  # (a fresh run's note may say it was refused)
        if self.resumed_from is not None:
            checkpoint.remove_after(folder, self.start_update)
            # The budget this session trains to (another one after regrow), so that a kill before
            # the first new checkpoint still resumes to it.
            reporting.write_json(os.path.join(self.out, "config.json"), reporting.run_config(self.config, self.num_seeds))
        o = self.options
        if not o.checkpoints:
            return None
        return checkpoint.Saver(folder, self.config, self.num_seeds, keep=o.keep_checkpoints,
                                every_updates=o.checkpoint_every_updates, every_seconds=o.checkpoint_every_seconds,
                                last_update=self.start_update, fast_compile=o.fast_compile, layout=layout)

    def _loggers(self, stack: contextlib.ExitStack) -> tracking.Loggers:
        """This run's TensorBoard and W&B loggers, closed by ``stack``."""
        o, c, done = self.options, self.config, self.start_update
        return stack.enter_context(contextlib.closing(tracking.Loggers([
            tracking.TensorBoard(os.path.join(self.out, "tb"), self.num_seeds, c.batch_size,
                                 purge_step=done * c.batch_size + 1 if done else None) if o.tensorboard else None,
            tracking.WandB(self.out, reporting.run_config(c, self.num_seeds), c.batch_size, o.wandb_project,
                           o.wandb_entity) if o.wandb else None,
        ])))

    # ------------------------------------------------------------------ notes
    def record_stop(self, e: BaseException, diverged: bool = False) -> None:
        """Say why the run stopped (``e``: a Ctrl-C, a failure) in :attr:`note` and in OUT's
        INCOMPLETE (and DIVERGED, where resuming would repeat the failure) file.  :meth:`run`
        does this itself; a front end calls it for a run stopped before :meth:`run`."""
        self.note = self._stop_note(e)
        if is_lead() and not _removed(self.out):  # not recreated where it was removed
            reporting.mark_incomplete(self.out, self.note)
            if diverged:
                reporting.mark_diverged(self.out, self.note)

    def _resume_hint(self) -> str:
        if self.options.resume_hint is not None:
            return self.options.resume_hint.format(out=shlex.quote(self.out))
        options = ", RunOptions(fast_compile=True)" * self.options.fast_compile  # a resume compiles as its run did
        return f"bpo_jax.session.RunSession.resume({self.out!r}{options})"

    def _worded(self, note: str) -> str:
        return self.options.wording(note) if self.options.wording else note

    def _running_note(self) -> str:
        return self._worded(reporting.running_note(self._resume_hint(), self._restart_hint()))

    def _stop_note(self, e: BaseException) -> str:
        return self._worded(self._stop_reason(e))

    def _stop_reason(self, e: BaseException) -> str:
        if isinstance(e, RunDirectoryGone) and e.run_dir == self.out:
            return f"stopped: {e}"
        return reporting.stop_note(what_stopped(e, (runner.BadUpdateError,)),
                                   checkpoint.list_checkpoints(os.path.join(self.out, checkpoint.CHECKPOINTS)),
                                   self._resume_hint(), self._restart_hint(), isinstance(e, runner.BadUpdateError),
                                   self._curve_updates)

    def _restart_hint(self) -> str:
        return reporting.restart_how(self.options.restart_hint, self.out)


def is_lead() -> bool:
    """Process 0 of a multi-process run (or the only process) writes every output."""
    return jax.process_index() == 0


def run_together(sessions: Sequence[RunSession], on_progress: Optional[runner.ProgressFn] = None) -> list[SessionResult]:
    """Run several sessions as one program: runs whose configurations differ in sweepable fields
    only (a grid of learning rates, eps, lambda, ...; :meth:`Config.program_difference`), with
    the same seed count and chunk size, all fresh or all resumed at the same update.  Every run
    gets its own directory, checkpoints, loggers and final files, as if it had run alone, and
    its seeds start from the keys a run alone gives them (on one device at XLA's default
    options, the very numbers; split over devices, to float rounding).  One progress display
    shows all of them; each summary.json records ``runs_in_program`` and the run's share of the
    throughput.  What stops one run stops all, each with its INCOMPLETE note; a bad update (a
    NaN) is raised as the run and seed it happened in (``run_dir`` names the run, which is also
    marked DIVERGED), and the other runs' notes say they can go on.  Returns one
    :class:`SessionResult` per session, in order.  :meth:`RunSession.run` is the case of one."""
    sessions = list(sessions)
    try:
        _check_together(sessions)
    except SessionError as e:
        for session in sessions:  # started (folders written), never trained: say so, not "continue it"
            if isinstance(session, RunSession) and not session._ran and session.resumed_from is None:
                session.record_stop(e)
        raise
    for session in sessions:
        session._ran = True
    first, count = sessions[0], len(sessions)
    seeds, options, c = first.num_seeds, first.options, first.config
    if options.compile_cache:
        runner.enable_compilation_cache()
    lead = is_lead()
    layout = runner.layout(c, count * seeds, options.split)
    savers = [session._prepare_directory(layout) if lead else None for session in sessions]
    start = _joint_start(sessions)
    try:
        with contextlib.ExitStack() as stack:  # closes the progress bar before any message
            on_chunk, progress = _watchers(sessions, savers, stack, on_progress) if lead else (None, None)
            result = runner.run(
                c, num_seeds=seeds, progress=progress, chunk_updates=first.chunk_updates, start=start,
                on_chunk=on_chunk, wants_state=lambda update: any(s is not None and s.due(update, c.num_updates)
                                                                  for s in savers),
                split=options.split, compiler_options=runner.FAST_COMPILE if options.fast_compile else None,
                variants=None if count == 1 else [session.config for session in sessions])
    except BaseException as e:
        told, owner = _named_member(e, sessions)
        if owner is not None and lead and e.before is not None:
            # A Ctrl-C here would skip the notes below (DIVERGED among them): the run is stopping anyway.
            with contextlib.suppress(OSError), interrupt_deferred():  # the notes matter more than the curve
                owner._curve_updates = _write_curve_before(owner, e.before, sessions.index(owner), count)
        for session in sessions:
            # A run trained beside the one that diverged is sound: it can go on without it.
            beside = owner is not None and session is not owner
            session.record_stop(RuntimeError(f"{owner.out}, trained in the same program, diverged")
                                if beside else told, diverged=session is owner)
        if told is e:
            raise
        raise told from None
    done = []
    state = result.state if count == 1 else runner.to_host(result.state)
    for v, (session, saver) in enumerate(zip(sessions, savers)):
        mine = result if count == 1 else _member_result(result, state, v, seeds, session.config)
        cost = {"checkpoints_written": saver.saved if saver else 0,
                "checkpoint_seconds": round(saver.seconds, 3) if saver else 0.0,
                "fast_compile": options.fast_compile,
                # Each device's program sets the float rounding: a run split otherwise (another
                # machine's core count) is another run's numbers, as its checkpoints record.
                "layout": dict(layout)}
        if count > 1:
            cost["runs_in_program"] = count
        if not lead:
            done.append(SessionResult(result=mine, summary=reporting.summary(mine, **cost), files=()))
            continue
        info = reporting.write_outputs(mine, session.out, **cost)
        reporting.mark_complete(session.out)
        extras = (("checkpoints", saver is not None), ("tb", session.options.tensorboard))
        done.append(SessionResult(result=mine, summary=info,
                                  files=reporting.OUTPUT_FILES + tuple(name for name, on in extras if on)))
    return done


def _watchers(sessions: list[RunSession], savers: list[Optional[checkpoint.Saver]], stack: contextlib.ExitStack,
              on_progress: Optional[runner.ProgressFn]) -> tuple[Callable, Optional[runner.ProgressFn]]:
    """(on_chunk, progress) for runner.run: every run's checkpoints (all saved when any is due,
    so that the runs resume together) and loggers, then one progress display for all; each
    one opened here is closed by ``stack``."""
    first, count = sessions[0], len(sessions)
    c, seeds = first.config, first.num_seeds
    loggers = [session._loggers(stack) for session in sessions]
    histories = [runner.History.since(s.resumed_from and s.resumed_from.start) for s in sessions]
    label = first.label if count == 1 else f"{first.label} ({count} runs as one program)"
    console = tracking.make_progress(label, c.num_updates * c.batch_size, first.start_update * c.batch_size,
                                     quiet=not first.options.progress, num_seeds=count * seeds)
    if console is not None:
        stack.callback(console.close)
    shows = [show for show in (console, on_progress) if show is not None]

    def on_chunk(chunk: runner.Chunk) -> None:
        for session in sessions:
            if _removed(session.out):
                raise RunDirectoryGone(session.out)
        save = chunk.state is not None and any(s is not None and s.due(chunk.update, chunk.num_updates) for s in savers)
        state = chunk.state if count == 1 or not save else runner.to_host(chunk.state)
        for v, (saver, log, history, session) in enumerate(zip(savers, loggers, histories, sessions)):
            mine = chunk if count == 1 else _member_chunk(chunk, state if save else None, v, seeds, history)
            try:
                # Logged first: a kill between the two then leaves TensorBoard ahead of the checkpoint,
                # which the resumed run purges, not a gap it never fills.
                log(mine)
                if save and saver is not None:
                    saver.save(mine)
            except Exception:
                if _removed(session.out):  # while it was written: that is what stopped it
                    raise RunDirectoryGone(session.out) from None
                raise

    def progress(p: runner.Progress) -> None:
        for show in shows:
            show(p)

    return on_chunk, progress if shows else None


def _removed(out: str) -> bool:
    """The run directory ``out`` was removed, or is being removed (an `rm -rf` beside a save
    that writes into it can leave the folder without the config.json every run starts with)."""
    return not os.path.isfile(os.path.join(out, "config.json"))


def _check_together(sessions: list[RunSession]) -> None:
    """A SessionError where ``sessions`` cannot train as one program."""
    if not sessions:
        raise SessionError("`sessions` is empty; give one or more", "sessions")
    for session in sessions:
        _check_type("sessions", session, RunSession)
        if session._ran:
            raise SessionError("a session runs once; resume the run or start another", "run")
    first = sessions[0]
    outs = [os.path.abspath(s.out) for s in sessions]
    if len(set(outs)) < len(outs):
        raise SessionError("two sessions write the same directory; give each run its own", "sessions")
    for s in sessions[1:]:
        difference = first.config.program_difference(s.config)
        if difference:
            raise SessionError(f"{first.out} and {s.out} cannot train as one program: they may differ in sweepable "
                               f"fields only, but {difference}", "sessions")
        for name in ("num_seeds", "chunk_updates", "start_update"):
            if getattr(s, name) != getattr(first, name):
                raise SessionError(f"{first.out} and {s.out} cannot train as one program: their {name} differ "
                                   f"({getattr(first, name)} and {getattr(s, name)})", "sessions")
        for name in ("split", "fast_compile", "compile_cache", "progress"):
            if getattr(s.options, name) != getattr(first.options, name):
                raise SessionError(f"{first.out} and {s.out} cannot train as one program: their options' {name} "
                                   "differ", "sessions")


def _named_member(e: BaseException, sessions: list[RunSession]) -> tuple[BaseException, Optional[RunSession]]:
    """(exception, the session it belongs to): a bad update of runs trained as one program as
    the run and seed it happened in (the runner counts members across runs), with its run in
    ``run_dir``; any other exception as it is, and None."""
    if not isinstance(e, runner.BadUpdateError):
        return e, None
    seeds = sessions[0].num_seeds
    owner, seed = sessions[min(e.seed // seeds, len(sessions) - 1)], e.seed % seeds
    if len(sessions) > 1:
        e = type(e)(str(e).replace(f"(seed index {e.seed})", f"(seed index {seed} of {owner.out})"), e.update, seed)
    e.run_dir = owner.out
    return e, owner


def _write_curve_before(owner: RunSession, before: runner.History, v: int, count: int) -> int:
    """Write the metrics.csv of run ``v`` of ``count`` trained as one program, which diverged:
    its rows ``before`` the bad update, the curve that led there.  Returns how many updates."""
    metrics = before.metrics()
    updates = next(iter(metrics.values())).shape[1]
    if updates == 0:
        return 0
    rows = _rows(v, owner.num_seeds)
    reporting.write_metrics(os.path.join(owner.out, "metrics.csv"), {name: m[rows] for name, m in metrics.items()},
                            np.arange(1, updates + 1) * owner.config.batch_size, before.steps_per_second() / count)
    return updates


def _joint_start(sessions: list[RunSession]) -> Optional[runner.Start]:
    """The resumed sessions' starts as one, members in session order (None for fresh runs)."""
    starts = [s.resumed_from.start for s in sessions if s.resumed_from is not None]
    if not starts:
        return None
    if len(starts) == 1:
        return starts[0]
    joined = jax.tree.map(lambda *xs: _concat(xs), *[s.state for s in starts])
    metrics = {name: np.concatenate([s.metrics[name] for s in starts]) for name in starts[0].metrics}
    return runner.Start(state=joined, update=starts[0].update, metrics=metrics,
                        steps_per_second=np.sum([s.steps_per_second for s in starts], axis=0),
                        train_seconds=max(s.train_seconds for s in starts))


def _concat(leaves) -> Any:
    """Leaves of several runs' states, batched over seeds, as one batch over members."""
    if runner.is_key(leaves[0]):
        impl = str(jax.random.key_impl(leaves[0]))
        return jax.random.wrap_key_data(np.concatenate([np.asarray(jax.random.key_data(x)) for x in leaves]), impl=impl)
    return np.concatenate([np.asarray(x) for x in leaves])


def _rows(v: int, seeds: int) -> slice:
    """Run ``v``'s rows of the members of runs of ``seeds`` seeds each trained as one program."""
    return slice(v * seeds, (v + 1) * seeds)


def _member_chunk(chunk: runner.Chunk, state: Any, v: int, seeds: int, history: runner.History) -> runner.Chunk:
    """Run ``v``'s part of a chunk of runs trained as one program (its history grows here)."""
    rows = _rows(v, seeds)
    metrics = {name: m[rows] for name, m in chunk.metrics.items()}
    share = len(chunk.metrics["episodes"]) // seeds  # runs in the program
    history.blocks.append(metrics)
    history.sps.append(chunk.history.sps[-1] / share)
    return dataclasses.replace(chunk, state=None if state is None else jax.tree.map(lambda x: x[rows], state),
                               metrics=metrics, history=history, steps_per_second=chunk.steps_per_second / share)


def _member_result(result: runner.RunResult, state: Any, v: int, seeds: int, config: Config) -> runner.RunResult:
    """Run ``v``'s part of the result of runs trained as one program."""
    rows = _rows(v, seeds)
    share = result.num_seeds // seeds
    return dataclasses.replace(result, config=config, num_seeds=seeds,
                               metrics={name: m[rows] for name, m in result.metrics.items()},
                               steps_per_second=result.steps_per_second / share,
                               state=jax.tree.map(lambda x: x[rows], state))


def regrow(config: Config, total_steps: int, done: int = 0) -> Config:
    """``config`` with the budget ``total_steps`` (steps per seed), for a run that has done
    ``done`` updates under ``config``.  Its finished updates stay valid only if no update
    depends on the budget, so with ``lr_schedule`` linear (the lr anneals to 0 at the end of the
    budget) the number of updates cannot change; nor can it fall below ``done``.  Raises
    :class:`SessionError` naming ``total_steps``."""
    if total_steps == config.total_steps:
        return config
    grown = config.replace(total_steps=total_steps)
    try:
        grown.validate()
    except ValueError as e:
        raise SessionError(first_line(e), "total_steps") from None
    if grown.num_updates == config.num_updates:
        return grown
    if config.schedule == "linear":
        raise SessionError(f"`total_steps` cannot change the number of updates of this run: its learning rate anneals "
                           f"linearly to 0 over its {config.num_updates} updates (lr_schedule linear), so its "
                           "updates depend on its budget; start a new run with the budget you want", "total_steps")
    if grown.num_updates < done:
        raise SessionError(f"`total_steps` = {total_steps:,} gives {grown.num_updates} updates, but the run has done "
                           f"{done}; give at least {done * config.batch_size:,}", "total_steps")
    return grown


def run_dir_config(run_dir: str) -> Config:
    """The configuration in a run directory's config.json: the budget the run trains to, which
    after :func:`regrow` is ahead of its checkpoints' until the first new one is saved."""
    import json

    with open(os.path.join(run_dir, "config.json")) as f:
        values = json.load(f)
    values.pop("num_seeds", None)
    return checkpoint.config_from_dict(values)


def _planned_steps(run_dir: str, saved: Config) -> int:
    """The budget in the run directory's config.json (``saved``'s when it is unreadable)."""
    try:
        return run_dir_config(run_dir).total_steps
    except (OSError, ValueError, TypeError):
        return saved.total_steps


def check_memory(config: Config, num_seeds: int, obs_spec, network) -> None:
    """Refuse, before compiling, a run that cannot fit in memory, by a lower bound of what an
    update keeps: every observation and final observation of its ``num_steps`` x ``num_envs``
    transitions per seed (Atari's 100,000-frame stacks compiled until the machine ran out,
    killed), ``network``'s parameters with their gradients and Adam's two moments (counted
    abstractly: nothing is allocated), and the cached resets' observations."""
    observation = int(np.prod(obs_spec.shape)) * contract.obs_dtype(obs_spec.dtype).itemsize
    rollout = 2 * observation * config.batch_size * num_seeds
    shapes = jax.eval_shape(network.init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, *obs_spec.shape), contract.obs_dtype(obs_spec.dtype)))
    parameters = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
    networks = 4 * 4 * parameters * num_seeds  # float32 parameters, gradients and two moments
    resets = observation * config.reset_pool * num_seeds
    need = rollout + networks + resets
    have = runner.memory_bytes()
    if have and need > have:
        parts = [(rollout, f"one update's rollout keeps {config.batch_size:,} observations of shape "
                           f"{tuple(obs_spec.shape)} per seed and their final observations"),
                 (networks, f"the networks' {parameters:,} parameters per seed with their gradients and Adam's "
                            "moments"),
                 (resets, f"{config.reset_pool:,} cached resets per seed")]
        parts = [f"{text} ({size / 2**30:,.1f} GiB)" for size, text in parts if size >= need / 10]  # the large ones
        raise SessionError(
            f"{'; '.join(parts)}: at least {need / 2**30:,.1f} GiB for {num_seeds} seed(s), more than the "
            f"{have / 2**30:,.1f} GiB of memory here; lower `num_envs`, `num_steps`, `hidden_sizes`, "
            "`reset_pool` or `num_seeds`", "num_envs")


def _check_machine(config: Config, num_seeds: int, options: RunOptions) -> None:
    """Before anything is written: the ConfigError :func:`bpo_jax.runner.run` would raise for
    these seeds on this machine's devices (a split that does not divide), and the TrackingError
    of more TensorBoard runs than the process may open files for."""
    devices = runner.fitting_devices(None, options.split, num_seeds, config)
    runner.make_mesh(devices, config.num_envs, num_seeds, options.split)
    if options.tensorboard:
        tracking.check_open_files(num_seeds)


def _resumed_split(config: Config, num_seeds: int, options: RunOptions,
                   layout: Optional[dict]) -> tuple[RunOptions, Optional[str]]:
    """The options a resume runs with, and a note where its devices' programs differ from those
    the checkpoint's ``layout`` records.  `split` auto takes the run's own split where this
    process's devices can hold it (its programs, bit for bit); a `split` that would change
    them is refused, as is the run's own where these devices cannot hold it."""
    if layout is None:  # a checkpoint from before layouts were recorded
        return options, None
    count = runner.resumed_devices(layout, num_seeds)
    now = None
    if count is not None and count > 1:  # on one device, either split is its program
        if options.split not in ("auto", layout["split"]):
            raise ProgramMismatch("split", options.split, "split", layout["split"],
                                  f"it splits as its run did (float rounding): resume with `split` auto or "
                                  f"{layout['split']!r}")
        try:
            now = runner.layout(config, num_seeds, layout["split"])
            runner.make_mesh(None, config.num_envs, num_seeds, now["split"])
            options = dataclasses.replace(options, split=layout["split"])
        except ConfigError:  # these devices cannot hold it
            if options.split != "auto":
                raise SessionError(f"this run trained with its {runner.layout_words(layout)}, which this process's "
                                   f"{len(jax.devices())} devices cannot hold; {_to_resume_as_run(num_seeds, layout)}"
                                   ", or resume with `split` auto (other float rounding)", "split") from None
            now = None
    now = now or runner.layout(config, num_seeds, options.split)
    # A grid member alone: its share of the devices; on one device, where one device held as
    # many seeds as it has, the program it ran.
    if runner.program_shape(now) == runner.program_shape(layout) or (count == 1 and now["devices"] == 1):
        return options, None
    how = _to_resume_as_run(num_seeds, layout) if count else "no device count gives its seeds the programs they had"
    return options, (f"note: this run trained with its {runner.layout_words(layout)} and resumes with its "
                     f"{runner.layout_words(now)} ({how}): it goes on to float rounding, not bit for bit")


def _to_resume_as_run(num_seeds: int, layout: dict) -> str:
    """How this process would get the devices of the run ``layout`` records."""
    if jax.process_count() > 1 or not all(d.platform == "cpu" for d in jax.devices()):
        return "it ran on other devices"
    if runner.cpu_device_count_chosen():
        return f"{runner.CHOSEN_COUNT}: unset it to resume bit for bit"
    return (f"call bpo_jax.runner.use_cpu_cores({num_seeds}, devices={runner.resumed_devices(layout, num_seeds)}) "
            "before JAX starts to resume bit for bit")


def _check_type(name: str, value: Any, hint: Any) -> None:
    """A SessionError naming ``name`` where ``value`` does not fit ``hint``: a float seed count
    or budget would otherwise train and then fail writing outputs, or corrupt a resumed run."""
    message = type_error(f"`{name}`", value, hint)
    if message:
        raise SessionError(message, name)


def _chunk_size(num_updates: int, chunk_updates: Optional[int], reports: Optional[int]) -> int:
    if chunk_updates is not None and reports is not None:
        raise SessionError("`chunk_updates` and `reports` both set the chunk size; give one", "reports")
    if reports is not None and reports < 1:
        raise SessionError(f"`reports` must be >= 1, got {reports}", "reports")
    k = chunk_updates if chunk_updates is not None else runner.chunk_size(num_updates, reports or DEFAULT_REPORTS)
    if not 1 <= k <= num_updates:
        raise SessionError(f"`chunk_updates` must be in [1, {num_updates}] (the run's updates), got {k}", "chunk_updates")
    return k


_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(Config))
_RUN_FIELDS = frozenset({"num_seeds", "chunk_updates", "reports"})


def _check_expected(loaded: checkpoint.Loaded, expect: Mapping[str, Any]) -> None:
    """Raise :class:`ProgramMismatch` for the first value in ``expect`` that differs from the
    checkpoint's run (repeating the original value is fine).  Config fields are compared after
    resolving the algorithm's defaults, so lr=None and the algorithm's lr are the same."""
    unknown = sorted(set(expect) - _CONFIG_FIELDS - _RUN_FIELDS)
    if unknown:
        raise TypeError(f"expect takes Config fields, num_seeds, chunk_updates and reports; got {', '.join(unknown)}")
    saved = loaded.config.resolved()
    asked = saved.replace(**{k: v for k, v in expect.items() if k in _CONFIG_FIELDS}).resolved()
    meta = loaded.meta
    for name in sorted(expect):
        if name in _CONFIG_FIELDS:
            mine, theirs, saved_field = getattr(asked, name), getattr(saved, name), name
        elif name == "num_seeds":
            mine, theirs, saved_field = expect[name], meta["num_seeds"], name
        else:  # chunk_updates, or reports: the chunk size it gives
            mine = expect[name] if name == "chunk_updates" else runner.chunk_size(saved.num_updates, expect[name])
            theirs, saved_field = meta["chunk_updates"], "chunk_updates"
        if mine != theirs:
            raise ProgramMismatch(name, expect[name], saved_field, theirs)
