"""Host-driven training for simulators that are not JAX (the isaaclab/ suite).

The rollout runs on the host: once per env step one compiled policy call (``Trainer.act``)
samples the actions, the torch environment steps, and the arrays cross through DLPack.  Once
per iteration one compiled call assembles the [T, B] :class:`~bpo_jax.train.Transition` rollout
(episode statistics, time-out bootstrap observations) and one compiled ``Trainer.learn`` runs
the same update as the JAX suites.  rsl_rl's runner features come along: iteration time split
into collection and learning, per-reward-term episode logs from ``extras["log"]``,
``init_at_random_ep_len``, and checkpoints with resume: with ``out``, the learner's state
(parameters, optimiser, normaliser, key) and every row so far are saved to
``out/checkpoints/step_*`` (the same format as every run's), and ``resume=DIR`` continues from
the newest one.  As rsl_rl's ``--resume``, the simulator itself is not saved: a resumed run
starts from the environment's current state and fresh episode counters.

    from bpo_jax.host_loop import train
    result = train(Config(algo="bpo", num_steps=24, ...), env=my_rsl_rl_vec_env, out="runs/x")
"""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax import algorithms, checkpoint, reporting
from bpo_jax.config import Config, ConfigError
from bpo_jax.envs.isaaclab import SUITE, EnvDataError, IsaacLabEnv, unpack
from bpo_jax.errors import interrupt_deferred, what_stopped
from bpo_jax.export import export_onnx, export_policy
from bpo_jax.runner import BadUpdateError, Chunk, History, NonFiniteError, RunResult
from bpo_jax.train import Trainer, TrainState, Transition, make_trainer


@dataclass
class HostRunResult:
    """Outcome of :func:`train`.  Per-iteration arrays are [num_iterations]."""

    config: Config
    metrics: dict[str, np.ndarray]  # the update's metrics (as the JAX suites' metrics.csv)
    episode_terms: dict[str, np.ndarray]  # extras["log"] keys, mean over the iteration's steps (NaN: none)
    env_steps: np.ndarray  # env steps (all envs) after each iteration
    collection_seconds: np.ndarray
    learning_seconds: np.ndarray
    compile_seconds: float
    state: TrainState
    trainer: Trainer = field(repr=False)

    @property
    def train_seconds(self) -> float:
        return float(self.collection_seconds.sum() + self.learning_seconds.sum())

    @property
    def steps_per_second(self) -> float:
        return float(self.env_steps[-1]) / max(self.train_seconds, 1e-9)

    @property
    def final_return(self) -> float:
        """summary.json's final return: the mean of the episodes that ended in the last 10% of
        iterations (NaN where none ended)."""
        return float(reporting.tail_returns({k: self.metrics[k][None] for k in ("episodes", "episode_return_mean")})[0])


def wrap(env: Any, asymmetric_critic: bool = False) -> IsaacLabEnv:
    """``env`` as an :class:`IsaacLabEnv`: an rsl_rl VecEnv gets wrapped, an adapter passes (one
    wrapped without the critic group is refused for ``asymmetric_critic``: the config would say
    asymmetric while the critic reads the policy observation)."""
    if isinstance(env, IsaacLabEnv):
        if asymmetric_critic and not env.asymmetric:
            raise ValueError("`asymmetric_critic` is set, but the IsaacLabEnv passed in was made without it; make it "
                             "with IsaacLabEnv(..., asymmetric_critic=True) or drop `asymmetric_critic`")
        return env
    return IsaacLabEnv(env, asymmetric_critic=asymmetric_critic)


def make_env(config: Config) -> IsaacLabEnv:
    """Build ``config.env`` = ``isaaclab/<IsaacLab task>`` through IsaacLab."""
    suite, _, task = config.env.partition("/")
    if suite != SUITE or not task:
        raise ConfigError(f"the host loop trains isaaclab/<task> environments, got env {config.env!r}")
    from bpo_jax.envs import isaaclab

    return isaaclab.make(task, num_envs=config.num_envs, asymmetric_critic=config.asymmetric_critic,
                         **config.env_kwargs())


def host_config(config: Config, env: IsaacLabEnv) -> Config:
    """``config`` adjusted to the env: its name (an rsl_rl env passed in is ``isaaclab/custom``),
    batch size, and where the actor's observation ends."""
    changes: dict[str, Any] = {}
    if config.env != env.name:
        changes["env"] = env.name
    if config.num_envs != env.num_envs:
        changes["num_envs"] = env.num_envs
    split = env.policy_obs_dim if env.asymmetric else 0
    if config.policy_obs_dim != split:
        changes["policy_obs_dim"] = split
    return config.replace(**changes) if changes else config


def first_frame(obs: jax.Array) -> jax.Array:
    """The observation [B, D] as a packed frame [B, D + 3] (reward and flags 0), to start a rollout."""
    return jnp.pad(obs, ((0, 0), (0, 3)))


def _commit(tree):
    """``tree`` placed on JAX's default device explicitly.  A compiled function's cache key
    includes whether each argument is committed to a device, and the programs' own outputs are;
    without this, iteration 1 feeds uncommitted arrays and iteration 2 recompiles everything."""
    return jax.device_put(tree, jax.devices()[0])


def make_programs(trainer: Trainer):
    """(policy_step, assemble, learn), each compiled once."""
    def policy_step(params, obs_stats, frame, key):
        """frame [B, D + 3] (an :class:`~bpo_jax.envs.isaaclab.HostStep` frame) -> action [B, A],
        log_prob [B], the next key."""
        key, sub = jax.random.split(key)
        light = TrainState(params=params, opt_state=None, env_state=None, key=None, update=None, obs_stats=obs_stats)
        action, log_prob = trainer.act(light, unpack(frame)[0], sub)
        return action, log_prob, key

    def assemble(frames, actions, log_probs, episode):
        """Stack T host steps into the Transition rollout [T, B].  ``frames``: T + 1 packed frames
        [B, D + 3], the one acted on first, then each step's; ``episode`` = (return, length)
        running per env, carried across iterations."""
        frames, actions, log_probs = map(jnp.stack, (frames, actions, log_probs))
        obs = unpack(frames[:-1])[0]
        next_obs, rewards, terminated, truncated = unpack(frames[1:])
        done = terminated | truncated
        # rsl_rl bootstraps a time-out from V(s_t): the reset already replaced s_{t+1}.
        final_obs = jnp.where(truncated[..., None], obs, next_obs)

        def step(carry, xs):
            ret, length = carry
            reward, d = xs
            ret, length = ret + reward, length + 1
            out = (jnp.where(d, ret, 0.0), jnp.where(d, length, 0))
            return (jnp.where(d, 0.0, ret), jnp.where(d, 0, length)), out

        episode, (done_return, done_length) = jax.lax.scan(step, episode, (rewards, done))
        traj = Transition(obs=obs, action=actions, log_prob=log_probs, reward=rewards, terminated=terminated,
                          truncated=truncated, final_obs=final_obs, done_return=done_return,
                          done_length=done_length, done=done)
        return traj, episode

    return jax.jit(policy_step), jax.jit(assemble), jax.jit(trainer.learn, donate_argnums=(0,))


_TERM = "term:"  # checkpointed metric rows: the per-term episode logs under this prefix
_TIMES = ("collection_seconds", "learning_seconds")


def train(config: Config, env: Any = None, *, num_iterations: Optional[int] = None,
          out: Optional[str] = None, log_interval: int = 1,
          on_iteration: Optional[Callable[[int, dict], None]] = None, quiet: bool = False,
          resume: Optional[str] = None, checkpoint_every: Optional[int] = None,
          checkpoint_seconds: Optional[float] = 600.0, keep_checkpoints: int = 2, overwrite: bool = False,
          resume_hint: Optional[str] = None, restart_hint: Optional[str] = None,
          wording: Optional[Callable[[str], str]] = None) -> HostRunResult:
    """Train ``config.algo`` on a host-stepped environment.

    ``env``: an rsl_rl ``VecEnv`` (IsaacLab's ``RslRlVecEnvWrapper``), an :class:`IsaacLabEnv`, or
    None to build ``config.env`` (``isaaclab/<task>``) through IsaacLab.  ``num_iterations``:
    default ``config.num_updates``.  ``out``: a directory for config.json, metrics.csv,
    summary.json, curve.png (as :mod:`bpo_jax.reporting` writes them), iterations.csv (time
    split, learning rate and the per-term episode logs) and checkpoints/: one after every
    ``checkpoint_every`` iterations or ``checkpoint_seconds`` seconds (whichever is given;
    ``checkpoint_seconds=None`` and no ``checkpoint_every``: none) and after the last, the newest
    ``keep_checkpoints`` kept.  ``resume``: a run directory, its checkpoints/ or one step_*
    folder of a host-loop run of the same program (:class:`~bpo_jax.checkpoint.CheckpointError`
    otherwise), continued from its newest checkpoint up to ``num_iterations``.
    ``on_iteration(i, row)`` sees each row.

    As every run directory, ``out`` holds config.json and an INCOMPLETE marker (what happened,
    how to go on: ``resume_hint``, a command in which ``{out}`` stands for the directory; how to
    start again a run stopped before its first checkpoint: ``restart_hint``, likewise; notes
    written in a front end's ``wording``, as :class:`~bpo_jax.session.RunOptions`') from
    the start until the final files are in place; a run stopped by a NaN loss is also marked
    DIVERGED.  A run stopped by a NaN loss or bad env data also leaves metrics.csv with the
    iterations before the bad one (none where the first was bad), as a diverged JAX-suite run
    does; summary.json and curve.png come only with a finished run.  A non-empty ``out`` is
    refused (:class:`~bpo_jax.reporting.OutputDirError`) unless it is the run being resumed or
    ``overwrite`` empties it: two runs' files would mix.
    A NaN loss raises :class:`~bpo_jax.runner.NonFiniteError`, bad env data
    :class:`~bpo_jax.envs.isaaclab.EnvDataError`, each naming the iteration."""
    if num_iterations is not None and int(num_iterations) < 1:
        raise ValueError(f"`num_iterations` must be >= 1, got {num_iterations}")
    in_place = out is not None and resume is not None and _same_dir(out, checkpoint.locate(resume)[0])
    if out is not None and not in_place:
        reporting.check_output_dir(out, overwrite)  # before the env or a compile
    env = make_env(config) if env is None else wrap(env, config.asymmetric_critic)
    config = host_config(config, env)
    trainer = make_trainer(config, env)
    hp = config.hparams()
    iterations = trainer.num_updates if num_iterations is None else int(num_iterations)
    if config.init_at_random_ep_len:
        env.randomize_episode_lengths(config.seed)

    t0 = time.perf_counter()
    hp = _commit(hp)
    state = _commit(jax.jit(trainer.init)(jax.random.key(config.seed), hp))
    rows: list[dict] = []
    terms: list[dict[str, float]] = []
    collect_s, learn_s = [], []
    if resume is not None:
        state, rows, terms, collect_s, learn_s = _restore(resume, state)
        if len(rows) >= iterations:
            raise checkpoint.CheckpointError(f"{resume} has already run {len(rows)} of {iterations} iterations")
    policy_step, assemble, learn = make_programs(trainer)
    key = state.key
    try:
        frame = _commit(first_frame(env.observe()))
    except EnvDataError as e:
        raise EnvDataError(f"at the start (get_observations), {e}") from None
    episode = _commit((jnp.zeros(env.num_envs), jnp.zeros(env.num_envs, jnp.int32)))
    compile_seconds = time.perf_counter() - t0  # init only; the step programs compile in iteration 1
    notes = _Notes(out, resume_hint, restart_hint, wording)
    if out is not None:
        _open(out, config, in_place, overwrite, notes.running())
    saver = None
    if out is not None and (checkpoint_every or checkpoint_seconds):
        saver = checkpoint.Saver(os.path.join(out, checkpoint.CHECKPOINTS), config, num_seeds=1, keep=keep_checkpoints,
                                 every_updates=checkpoint_every,
                                 every_seconds=None if checkpoint_every else checkpoint_seconds,
                                 last_update=len(rows))

    it = len(rows)  # the iteration under way, 0-based, for the note of a stop
    try:
        for it in range(len(rows), iterations):
            t_start = time.perf_counter()
            traj, episode, frame, key, logs = _collect(env, policy_step, assemble, state, frame, episode, key,
                                                       config.num_steps, it)
            t_collected = time.perf_counter()
            state, metrics = learn(state, traj, state.env_state, key, hp)
            key = state.key
            row = {k: float(v) for k, v in jax.device_get(metrics).items()}
            t_learned = time.perf_counter()
            if row.get("nonfinite"):
                raise NonFiniteError(f"non-finite loss or gradient at iteration {it + 1}", update=it + 1)
            # Only now: a bad iteration leaves no row and no times, so that the lists stay parallel.
            rows.append(row)
            collect_s.append(t_collected - t_start)
            learn_s.append(t_learned - t_collected)
            terms.append({k: float(np.mean(v)) for k, v in logs.items()})
            if on_iteration is not None:
                on_iteration(it, {**row, **terms[-1]})
            if not quiet and (it % log_interval == 0 or it == iterations - 1):
                _print_progress(it, iterations, row, collect_s[-1], learn_s[-1], config.batch_size)
            if saver is not None and saver.due(it + 1, iterations):
                _save(saver, state, rows, terms, collect_s, learn_s, iterations)
    except BaseException as e:
        if out is not None and reporting.is_incomplete(out):  # else it stopped before the directory was opened
            if isinstance(e, (BadUpdateError, EnvDataError)):
                _write_curve_before(out, config.batch_size, rows, collect_s, learn_s)
            e.run_note = _record_stop(out, e, notes, it + 1)  # for a front end: this stop's, not an earlier one's
        raise

    term_names = sorted({k for t in terms for k in t})
    result = HostRunResult(
        config=config,
        metrics=_columns(rows),
        episode_terms={k: np.array([t.get(k, np.nan) for t in terms]) for k in term_names},
        env_steps=np.arange(1, iterations + 1) * config.batch_size,
        collection_seconds=np.array(collect_s), learning_seconds=np.array(learn_s),
        compile_seconds=compile_seconds, state=state, trainer=trainer,
    )
    if out is not None:
        write_outputs(result, out)
        reporting.mark_complete(out)
    return result


def _collect(env: IsaacLabEnv, policy_step, assemble, state: TrainState, frame, episode, key, num_steps: int,
             it: int):
    """One iteration's rollout: (traj, episode, last frame, key, per-term logs).  Bad env data is
    raised naming iteration ``it`` (0-based), which the env itself does not know."""
    frames, actions, log_probs = [frame], [], []
    logs: dict[str, list[float]] = {}
    for _ in range(num_steps):
        action, log_prob, key = policy_step(state.params, state.obs_stats, frame, key)
        try:
            step = env.step(action)
        except EnvDataError as e:
            raise EnvDataError(f"at iteration {it + 1}, {e}") from None
        frame = step.frame
        frames.append(frame)
        actions.append(action)
        log_probs.append(log_prob)
        for k, v in step.log.items():
            logs.setdefault(k, []).append(v)
    traj, episode = assemble(frames, actions, log_probs, episode)
    jax.block_until_ready(traj)
    return traj, episode, frame, key, logs


# ------------------------------------------------------------------ the run directory
def _same_dir(a: Optional[str], b: Optional[str]) -> bool:
    return a is not None and b is not None and os.path.abspath(a) == os.path.abspath(b)


@dataclass(frozen=True)
class _Notes:
    """How a run's notes (INCOMPLETE, DIVERGED) tell a reader to go on, in whose words."""

    out: Optional[str]
    resume_hint: Optional[str] = None
    restart_hint: Optional[str] = None
    wording: Optional[Callable[[str], str]] = None

    def resume(self) -> str:
        """How to continue the run: ``resume_hint`` with ``{out}``, or the library call."""
        if self.resume_hint is not None:
            return self.resume_hint.format(out=shlex.quote(self.out))
        return f"bpo_jax.host_loop.train(config, env, resume={self.out!r}, out={self.out!r})"

    def worded(self, note: str) -> str:
        return self.wording(note) if self.wording else note

    def running(self) -> str:
        return self.worded(reporting.running_note(self.resume(), reporting.restart_how(self.restart_hint, self.out)))


def _open(out: str, config: Config, in_place: bool, overwrite: bool, note: str) -> None:
    """Mark ``out`` INCOMPLETE (``note``: how to go on) and write its config.json before the
    first iteration, as :meth:`bpo_jax.session.RunSession.start` does: a fresh run creates the
    directory (emptied with ``overwrite``); a resume in place clears an earlier stop's DIVERGED
    marker and metrics.csv."""
    if in_place:
        reporting.mark_complete(out)  # drops DIVERGED too; INCOMPLETE is written again just below
        reporting.mark_incomplete(out, note)
        # The stop's rows past the newest checkpoint are of iterations this resume runs again.
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, "metrics.csv"))
    else:
        reporting.open_run_dir(out, overwrite, note)
    reporting.write_json(os.path.join(out, "config.json"), reporting.run_config(config, 1))


def _stop_note(e: BaseException, out: str, notes: _Notes, iteration: int) -> str:
    """Why the run in ``out`` stopped and how to go on, one line, in a JAX suite's run's words
    (:func:`bpo_jax.reporting.stop_note`): INCOMPLETE's note, and what a front end prints.  A
    Ctrl-C names the ``iteration`` (1-based) it stopped; a NaN or bad env data name theirs."""
    kept = checkpoint.list_checkpoints(os.path.join(out, checkpoint.CHECKPOINTS))
    bad = isinstance(e, BadUpdateError)
    # metrics.csv there is this stop's (a resume in place removes an earlier one): every
    # iteration before the bad one.
    curve = e.update - 1 if bad and os.path.isfile(os.path.join(out, "metrics.csv")) else 0
    what = what_stopped(e, (BadUpdateError, EnvDataError))
    if isinstance(e, KeyboardInterrupt):
        what += f" in iteration {iteration}"
    return notes.worded(reporting.stop_note(what, kept, notes.resume(), reporting.restart_how(notes.restart_hint, out),
                                            bad_update=bad, curve_updates=curve))


def _record_stop(out: str, e: BaseException, notes: _Notes, iteration: int) -> str:
    """The stop's note in ``out``'s INCOMPLETE and, for a NaN loss, DIVERGED (as the JAX suites');
    returns it."""
    note = _stop_note(e, out, notes, iteration)
    reporting.mark_incomplete(out, note)
    if isinstance(e, BadUpdateError):
        reporting.mark_diverged(out, note)
    return note


def recorded_note(e: BaseException) -> Optional[str]:
    """The note :func:`train` wrote in its run directory's INCOMPLETE for the stop ``e`` (None
    where it wrote none: it failed before the run directory was there)."""
    return getattr(e, "run_note", None)


def _write_curve_before(out: str, batch_size: int, rows: list[dict], collect_s: list[float],
                        learn_s: list[float]) -> None:
    """metrics.csv in ``out`` of the ``rows`` (one per iteration) before a bad one, as a normal
    run writes it, and as :func:`bpo_jax.session._write_curve_before` writes a diverged JAX
    run's: the curve that led there, which no final files will show.  None before the first
    good iteration.  A failure (a full disk) or Ctrl-C here must not cost the markers after it."""
    if not rows:
        return
    with contextlib.suppress(OSError), interrupt_deferred():
        reporting.write_metrics(os.path.join(out, "metrics.csv"), {k: v[None] for k, v in _columns(rows).items()},
                                np.arange(1, len(rows) + 1) * batch_size,
                                _steps_per_second(batch_size, collect_s, learn_s))


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """The rows as metric columns [iterations] (without the program's flags: 0 in every kept row)."""
    return {k: np.array([r[k] for r in rows]) for k in rows[0] if k not in algorithms.PROGRAM_METRICS}


def _steps_per_second(batch_size: int, collect_s, learn_s) -> np.ndarray:
    """[iterations] env steps per second of each iteration's collection and learning."""
    return batch_size / np.maximum(np.asarray(collect_s) + np.asarray(learn_s), 1e-9)


def _history(rows, terms, collect_s, learn_s) -> dict[str, np.ndarray]:
    """Every row so far as checkpoint metrics, [1 seed, iterations] each."""
    names = {k for t in terms for k in t}
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns.update({f"{_TERM}{k}": [t.get(k, np.nan) for t in terms] for k in names})
    columns.update(zip(_TIMES, (collect_s, learn_s)))
    return {k: np.asarray(v, np.float64)[None] for k, v in columns.items()}


def _save(saver: checkpoint.Saver, state, rows, terms, collect_s, learn_s, iterations: int) -> None:
    sps = _steps_per_second(saver.config.batch_size, collect_s, learn_s)
    saver(Chunk(state=jax.tree.map(lambda x: x[None], state), update=len(rows), num_updates=iterations,
                chunk_updates=1, metrics={}, history=History([_history(rows, terms, collect_s, learn_s)], [sps]),
                steps_per_second=float(sps[-1]), train_seconds=float(np.sum(collect_s) + np.sum(learn_s)),
                compile_seconds=0.0, first=False))


def _restore(path: str, fresh: TrainState):
    """(state, rows, terms, collection and learning seconds) of the newest checkpoint in ``path``,
    its leaves checked against ``fresh`` (this program's initial state)."""
    _, ckpt = checkpoint.locate(path)
    batched, metrics, _, _ = checkpoint.restore(ckpt, jax.tree.map(lambda x: x[None], fresh))
    if not all(k in metrics for k in _TIMES):
        raise checkpoint.CheckpointError(f"checkpoint {ckpt} is not a host-loop (isaaclab/) run's")
    n = metrics[_TIMES[0]].shape[1]
    row_names = [k for k in metrics if k not in _TIMES and not k.startswith(_TERM)]
    rows = [{k: float(metrics[k][0, i]) for k in row_names} for i in range(n)]
    terms = [{k[len(_TERM):]: float(v[0, i]) for k, v in metrics.items()
              if k.startswith(_TERM) and not np.isnan(v[0, i])} for i in range(n)]
    state = _commit(jax.tree.map(lambda x: x[0], batched))
    return state, rows, terms, list(metrics[_TIMES[0]][0]), list(metrics[_TIMES[1]][0])


def _print_progress(it: int, total: int, row: dict, collect: float, learn: float, batch: int) -> None:
    ret = row.get("episode_return_mean", math.nan)
    lr = f" | lr {row['lr']:.2e}" if "lr" in row else ""
    print(f"it {it + 1}/{total} | return {ret:8.3f} | length {row.get('episode_length_mean', math.nan):6.1f}{lr}"
          f" | collect {collect:.3f} s, learn {learn:.3f} s | {batch / max(collect + learn, 1e-9):,.0f} steps/s",
          file=sys.stdout, flush=True)


def write_outputs(result: HostRunResult, path: str) -> dict:
    """config.json, metrics.csv, summary.json and curve.png as :func:`bpo_jax.reporting.write_outputs`
    (one seed), plus iterations.csv (time split, lr and the per-term episode logs) and
    policy.jaxexport (:func:`bpo_jax.export.export_policy`) and, with the onnx extra, policy.onnx."""
    os.makedirs(path, exist_ok=True)
    n = len(result.env_steps)
    sps = _steps_per_second(result.config.batch_size, result.collection_seconds, result.learning_seconds)
    run = RunResult(
        config=result.config, num_seeds=1, metrics={k: v[None] for k, v in result.metrics.items()},
        env_steps=result.env_steps, steps_per_second=sps, compile_seconds=result.compile_seconds,
        train_seconds=result.train_seconds, state=result.state, io_seconds=0.0, chunk_updates=1, cached_programs=0)
    info = reporting.write_outputs(
        run, path, collection_seconds=round(float(result.collection_seconds.sum()), 3),
        learning_seconds=round(float(result.learning_seconds.sum()), 3), driver="host_loop")
    # The deployable policy, runnable with jax alone (bpo_jax.export), and as rsl_rl's policy.onnx
    # where the onnx extra is installed.
    space, obs_dim = result.trainer.env.action_space, result.trainer.env.obs_spec.shape[-1]
    export_policy(os.path.join(path, "policy.jaxexport"), result.config, space, result.state, obs_dim=obs_dim)
    if importlib.util.find_spec("onnx") is not None:
        export_onnx(os.path.join(path, "policy.onnx"), result.config, space, result.state, obs_dim=obs_dim)
    with open(os.path.join(path, "iterations.csv"), "w", newline="") as f:
        w = csv.writer(f)
        extra = [k for k in ("lr",) if k in result.metrics]
        w.writerow(["iteration", "env_steps", "collection_seconds", "learning_seconds", *extra,
                    *result.episode_terms])
        for i in range(n):
            w.writerow([i + 1, int(result.env_steps[i]), f"{result.collection_seconds[i]:.4f}",
                        f"{result.learning_seconds[i]:.4f}", *(reporting.csv_number(result.metrics[k][i]) for k in extra),
                        *(reporting.csv_number(result.episode_terms[k][i]) for k in result.episode_terms)])
    return info
