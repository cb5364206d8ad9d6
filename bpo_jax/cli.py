"""``bpo-jax``: command line.  Parses arguments, reports errors in one line, calls the runner.

    bpo-jax train [--preset paper/Hopper-v4] [--env gymnax/CartPole-v1] [--algo bpo|ppo] [--seeds N]
                  [--out DIR] [--chunk-updates K] [--checkpoint-every N|30s] [--wandb] [--<hyperparameter> V ...]
    bpo-jax train --resume DIR
    bpo-jax train ... --coordinator HOST:PORT --num-processes N --process-id I   (one per host)
    bpo-jax eval --checkpoint DIR [--episodes N] [--seed S] [--video]
    bpo-jax envs [--suite gymnax]
    bpo-jax presets
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from typing import Any, Optional, Sequence

from bpo_jax.config import Config, ConfigError

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _parse_optional(inner):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else inner(text)
    parse.__name__ = getattr(inner, "__name__", "value")
    return parse


def _parse_sizes(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        sizes = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64, got {text!r}")
    return sizes


def _parse_strings(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _add_config_arguments(parser: argparse.ArgumentParser, defaults: dict[str, Any], suppress: bool = False) -> None:
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
        default = argparse.SUPPRESS if suppress else defaults.get(f.name, f.default)
        help_text = f"{f.metadata['help']} (default: {_show(defaults.get(f.name, f.default))})"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        if typing.get_origin(base) is tuple and typing.get_args(base)[0] is str:
            kind, metavar = _parse_strings, "K=V,K=V"
        elif typing.get_origin(base) is tuple:
            kind, metavar = _parse_sizes, "W,W"
        else:
            kind, metavar = base, base.__name__.upper()
        if optional:
            kind, metavar = _parse_optional(kind), metavar + "|none"
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def build_parser(defaults: Optional[dict[str, Any]] = None, suppress: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``defaults`` (a preset's values) replace Config's defaults.
    ``suppress``: no defaults at all, so the parsed namespace holds only the flags given."""
    d = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser = argparse.ArgumentParser(prog="bpo-jax", description="Bounded Policy Optimization and PPO in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,envs,presets}")
    sub.required = True

    train = sub.add_parser(
        "train", help="train BPO or PPO (default: BPO on gymnax/CartPole-v1, 3 seeds)",
        description="Train N seeds as one compiled, vmapped program, with checkpoints and TensorBoard logs "
                    "while it runs, and write config.json, metrics.csv, summary.json and curve.png.",
    )
    run = train.add_argument_group("run")
    run.add_argument("--preset", default=d(None), metavar="NAME",
                     help="start from a named configuration, e.g. paper/Hopper-v4 (see `bpo-jax presets`); "
                          "explicit flags override it")
    run.add_argument("--seeds", type=int, default=d(3), metavar="N", help="seeds trained together as one vmapped program (default: 3)")
    run.add_argument("--out", default=d(None), metavar="DIR", help="output directory (default: a fresh runs/<env>__<algo>__<time>)")
    run.add_argument("--overwrite", action="store_true", default=d(False), help="replace a non-empty --out directory (deleted when training starts)")
    run.add_argument("--reports", type=int, default=d(20), metavar="N",
                     help="progress reports per run; sets the chunk size K unless --chunk-updates (default: 20)")
    run.add_argument("--chunk-updates", type=int, default=d(None), metavar="K",
                     help="updates per compiled call (progress, logs and checkpoints happen between calls); "
                          "default: the largest divisor of the update count giving at least --reports chunks")
    run.add_argument("--quiet", action="store_true", default=d(False), help="no progress bar or lines")
    run.add_argument("--no-compile-cache", action="store_true", default=d(False),
                     help="do not use the persistent XLA compilation cache (~/.cache/bpo-jax/xla or $BPO_JAX_CACHE_DIR)")
    run.add_argument("--fast-compile", action="store_true", default=d(False),
                     help="compile with XLA's lowest optimisation: ~40%% less compile time, steps up to 2x slower "
                          "on CPU; for short runs and debugging")
    dist = train.add_argument_group("multi-host (one process per host; the env batch is split over all devices)")
    dist.add_argument("--coordinator", default=d(None), metavar="HOST:PORT",
                      help="address of process 0 for jax.distributed.initialize; without it, a set "
                           "$JAX_COORDINATOR_ADDRESS starts JAX's own cluster detection (SLURM, Open MPI, ...)")
    dist.add_argument("--num-processes", type=int, default=d(None), metavar="N", help="processes in the run")
    dist.add_argument("--process-id", type=int, default=d(None), metavar="I",
                      help="this process's index in [0, N); only process 0 writes outputs, checkpoints and logs")
    ckpt = train.add_argument_group("checkpoints and resume")
    ckpt.add_argument("--resume", default=d(None), metavar="DIR",
                      help="continue the unfinished run in DIR (its run directory, checkpoints/ folder or one "
                           "checkpoints/step_* folder) from its newest checkpoint, with its configuration; flags that "
                           "would change the run's program are refused")
    ckpt.add_argument("--checkpoint-every", default=d(None), metavar="N|30s|10m|2h",
                      help="save a checkpoint every N updates or after a wall-clock duration, at the next chunk end "
                           "(default: after every chunk); the last chunk is always saved")
    ckpt.add_argument("--keep-checkpoints", type=int, default=d(2), metavar="N",
                      help="keep the newest N checkpoints in OUT/checkpoints (default: 2)")
    ckpt.add_argument("--no-checkpoints", action="store_true", default=d(False),
                      help="write no checkpoints (the run cannot be resumed or evaluated)")
    logs = train.add_argument_group("logging")
    logs.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=d(True),
                      help="TensorBoard event files in OUT/tb/seed_<i> (default: on)")
    logs.add_argument("--wandb", action="store_true", default=d(False),
                      help="also log to Weights & Biases (pip install 'bpo-jax[wandb]')")
    logs.add_argument("--wandb-project", default=d("bpo-jax"), metavar="NAME", help="W&B project (default: bpo-jax)")
    logs.add_argument("--wandb-entity", default=d(None), metavar="NAME", help="W&B entity (default: your default)")
    _add_config_arguments(train.add_argument_group("configuration and hyperparameters"), defaults or {}, suppress)

    ev = sub.add_parser(
        "eval", help="evaluate a checkpoint's deterministic policy",
        description="Run N episodes per trained seed with the deterministic policy (Gaussian mean / argmax) "
                    "and the saved observation normaliser; print mean and std of the return and write eval.json.",
    )
    ev.add_argument("--checkpoint", required=True, metavar="DIR",
                    help="a run directory (its newest checkpoint), its checkpoints/ folder or one step_* folder")
    ev.add_argument("--episodes", type=int, default=10, metavar="N", help="episodes per seed (default: 10)")
    ev.add_argument("--seed", type=int, default=0, metavar="S", help="PRNG seed of the evaluation episodes (default: 0)")
    ev.add_argument("--max-steps", type=int, default=10_000, metavar="N",
                    help="stop episodes still running after N steps and report their partial return (default: 10000)")
    ev.add_argument("--out", default=None, metavar="FILE", help="where to write eval.json (default: in the run directory)")
    ev.add_argument("--video", action="store_true",
                    help="also render seed 0's first episode beside eval.json (MuJoCo tasks with an OpenGL context; "
                         "skipped with a message otherwise)")

    envs = sub.add_parser("envs", help="list environment ids")
    envs.add_argument("--suite", default=None, help="only this suite")
    sub.add_parser("presets", help="list named configurations")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse twice when a preset is named: the preset (for the chosen --algo) only replaces
    defaults, so every explicit flag still wins over it."""
    from bpo_jax import presets

    args = build_parser().parse_args(argv)
    if args.command != "train":
        return args
    # Which flags were given (for --resume, which refuses those that change the run).
    args.given = set(vars(build_parser(suppress=True).parse_args(argv))) - {"command"}
    if args.preset is None:
        return args
    try:
        values = presets.resolve(args.preset, args.algo)
    except presets.PresetError as e:
        print(f"bpo-jax: error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    given = args.given | set(values)
    args = build_parser(values).parse_args(argv)
    args.given = given
    return args


def _config_from_args(args: argparse.Namespace) -> Config:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    return Config(**values)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"bpo-jax: error: {message}", file=sys.stderr)
    return code


def cmd_envs(args) -> int:
    from bpo_jax import envs

    try:
        names = envs.list_envs(args.suite)
    except (envs.UnknownEnvError, envs.MissingDependencyError) as e:
        return _fail(str(e))
    for name in names:
        print(name)
    if args.suite is None:
        for suite, why in envs.unavailable_suites().items():
            print(f"# {suite}/ unavailable: {why}", file=sys.stderr)
    return 0


def cmd_presets(args) -> int:
    from bpo_jax import presets

    for name in presets.names():
        print(name)
    return 0


@dataclasses.dataclass
class _Plan:
    """What a train command will do, settled before anything is written."""

    config: Config
    num_seeds: int
    out: str
    chunk_updates: int
    start: Any = None  # runner.Start when resuming
    checkpoint: Optional[str] = None  # the checkpoint resumed from


def _init_distributed(args) -> None:
    """Join a multi-process run before anything touches a device: with --coordinator (and
    --num-processes, --process-id), or JAX's own detection when $JAX_COORDINATOR_ADDRESS is set."""
    flags = (args.coordinator, args.num_processes, args.process_id)
    if all(f is None for f in flags) and not os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return
    import jax

    if any(f is not None for f in flags):
        if None in flags:
            raise ConfigError("--coordinator, --num-processes and --process-id go together; give all three")
        if not 0 <= args.process_id < args.num_processes:
            raise ConfigError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
    # CPU devices of different processes talk through gloo (the default CPU client has no
    # cross-process collectives); GPU/TPU backends ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(*flags) if any(f is not None for f in flags) else jax.distributed.initialize()
    except Exception as e:  # bad address, timeout, no cluster detected
        raise ConfigError(f"jax.distributed.initialize failed: {type(e).__name__}: {_first_line(e)}")


def _is_lead() -> bool:
    """Process 0 of a multi-process run (or the only process) writes every output."""
    import jax

    return jax.process_index() == 0


def _fresh_plan(args) -> _Plan:
    from bpo_jax import envs, reporting, runner

    config = _config_from_args(args)
    config.validate()
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.reports < 1:
        raise ConfigError(f"--reports must be >= 1, got {args.reports}")
    given = getattr(args, "given", set())
    if "chunk_updates" in given and "reports" in given:
        raise ConfigError("--chunk-updates and --reports both set the chunk size; give one")
    k = args.chunk_updates if args.chunk_updates is not None else runner.chunk_size(config.num_updates, args.reports)
    if not 1 <= k <= config.num_updates:
        raise ConfigError(f"--chunk-updates must be in [1, {config.num_updates}] (the run's updates), got {k}")
    # Unknown ids, bad env options and missing suite packages fail here, before any compile.
    envs.make(config.env, num_envs=1, **config.env_kwargs())
    out = args.out or reporting.default_run_dir(config)
    if _is_lead():  # other processes write nothing (and would race process 0 creating it)
        reporting.check_output_dir(out, args.overwrite)
    return _Plan(config, args.seeds, out, k)


# Flags that may accompany --resume: they change how the run is watched or compiled, not what it computes.
_RESUME_FREE = {"resume", "out", "quiet", "no_compile_cache", "fast_compile", "checkpoint_every",
                "keep_checkpoints", "no_checkpoints", "tensorboard", "wandb", "wandb_project", "wandb_entity",
                "preset", "coordinator", "num_processes", "process_id"}


def _resume_plan(args) -> _Plan:
    from bpo_jax import checkpoint, envs, reporting, runner

    if args.overwrite:
        raise ConfigError("--resume continues a run in its own directory; it cannot be combined with --overwrite")
    run_dir, ckpt = checkpoint.locate(args.resume)
    if run_dir is None:
        raise ConfigError(f"--resume needs a run directory (one holding {checkpoint.CHECKPOINTS}/); {ckpt} is not in one")
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(run_dir):
        raise ConfigError(f"--resume continues in the run's own directory {run_dir}; drop --out {args.out}")
    if not reporting.is_incomplete(run_dir):
        raise ConfigError(f"the run in {run_dir} has finished (no {reporting.INCOMPLETE} marker); nothing to resume "
                          f"(evaluate it with: bpo-jax eval --checkpoint {run_dir})")
    meta = checkpoint.read_metadata(ckpt)
    config = checkpoint.read_config(ckpt)
    if meta.get("num_updates") != config.num_updates:
        raise checkpoint.CheckpointError(f"checkpoint {ckpt}: metadata and config.json disagree on the number of updates")
    _check_same_run(args, config, meta)
    envs.make(config.env, num_envs=1, **config.env_kwargs())
    template = runner.state_template(config, meta["num_seeds"])
    state, metrics, sps, meta = checkpoint.restore(ckpt, template)
    start = runner.Start(state, meta["update"], metrics, sps, meta["train_seconds"])
    return _Plan(config, meta["num_seeds"], run_dir, meta["chunk_updates"], start, ckpt)


def _check_same_run(args, config: Config, meta: dict) -> None:
    """Refuse flags given with --resume that differ from the checkpoint's run: its program
    (configuration, seeds, chunk size) is fixed; repeating the original values is fine."""
    from bpo_jax import runner

    given = getattr(args, "given", set())
    asked, saved = _config_from_args(args).resolved(), config.resolved()
    for name in sorted(given - _RESUME_FREE):
        flag = "--" + name.replace("_", "-")
        if hasattr(saved, name):
            if getattr(asked, name) != getattr(saved, name):
                raise ConfigError(f"--resume continues the checkpoint's run, whose {name} is {_show(getattr(saved, name))}; "
                                  f"drop {flag} (start a new run to change it)")
        elif name == "seeds" and args.seeds != meta["num_seeds"]:
            raise ConfigError(f"--resume continues the checkpoint's run of {meta['num_seeds']} seed(s); drop --seeds")
        elif name == "chunk_updates" and args.chunk_updates != meta["chunk_updates"]:
            raise ConfigError(f"--resume keeps the checkpoint's {meta['chunk_updates']} updates per chunk "
                              f"(the compiled program); drop --chunk-updates")
        elif name == "reports" and runner.chunk_size(config.num_updates, args.reports) != meta["chunk_updates"]:
            raise ConfigError(f"--resume keeps the checkpoint's {meta['chunk_updates']} updates per chunk; drop --reports")
        elif name == "overwrite":
            pass  # refused above


def cmd_train(args) -> int:
    from bpo_jax import checkpoint, reporting, runner, tracking

    try:
        _init_distributed(args)
        plan = _resume_plan(args) if args.resume else _fresh_plan(args)
        runner.make_mesh(None, plan.config.num_envs)  # num_envs divisible by the device count
        every = checkpoint.parse_every(args.checkpoint_every) if args.checkpoint_every else (None, None)
        if args.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be >= 1, got {args.keep_checkpoints}")
        if args.wandb:
            tracking.require_wandb()
    except (ConfigError, ValueError, ImportError, reporting.OutputDirError, tracking.TrackingError) as e:
        return _fail(_first_line(e))

    # ---- every input check has passed: from here on the run directory exists
    config, out, start = plan.config, plan.out, plan.start
    if not _is_lead():
        return _train_follower(args, plan)
    if not args.no_compile_cache:
        runner.enable_compilation_cache()
    note = f"training has not finished (still running, or killed). Continue it with: bpo-jax train --resume {out}"
    ckpt_dir = os.path.join(out, checkpoint.CHECKPOINTS)
    if start is None:
        reporting.open_run_dir(out, args.overwrite, note)
        reporting.write_json(os.path.join(out, "config.json"), reporting.run_config(config, plan.num_seeds))
    else:
        checkpoint.remove_after(ckpt_dir, start.update)  # a resume from an older checkpoint abandons later ones
        reporting.mark_incomplete(out, note)
    label = f"{config.algo} {config.env}"
    done = 0 if start is None else start.update
    resumed = f"; resuming at update {done} from {plan.checkpoint}" if start is not None else ""
    print(f"[{label}] {plan.num_seeds} seed(s) x {config.num_updates} updates x {config.batch_size} steps, "
          f"{plan.chunk_updates} updates per chunk{resumed}; compiling...", file=sys.stderr, flush=True)

    saver = None if args.no_checkpoints else checkpoint.Saver(
        ckpt_dir, config, plan.num_seeds, keep=args.keep_checkpoints,
        every_updates=every[0], every_seconds=every[1], start_update=done)
    progress = loggers = None
    try:
        try:
            loggers = tracking.Loggers([
                tracking.TensorBoard(os.path.join(out, "tb"), plan.num_seeds, config.batch_size,
                                     purge_step=done * config.batch_size + 1 if done else None)
                if args.tensorboard else None,
                tracking.WandB(out, reporting.run_config(config, plan.num_seeds), config.batch_size,
                               args.wandb_project, args.wandb_entity) if args.wandb else None,
            ])

            def on_chunk(chunk):
                if saver is not None:
                    saver(chunk)
                loggers(chunk)

            progress = tracking.make_progress(label, config.num_updates * config.batch_size,
                                              done * config.batch_size, quiet=args.quiet)
            result = runner.run(config, num_seeds=plan.num_seeds, progress=progress,
                                chunk_updates=plan.chunk_updates, start=start, on_chunk=on_chunk,
                                compiler_options=_compiler_options(args))
        finally:  # stop the progress bar before any message below
            for closable in (progress, loggers):
                if closable is not None:
                    closable.close()
    except runner.NonFiniteError as e:
        kept = checkpoint.list_checkpoints(ckpt_dir)
        where = f"; kept the last good checkpoint {kept[-1]}" if kept else "; no checkpoint was saved before it"
        reporting.mark_incomplete(out, f"stopped: {e}{where}")
        return _fail(f"{e}{where}", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail(f"interrupted; continue with: bpo-jax train --resume {out}", 130)
    except Exception as e:  # e.g. W&B cannot start: keep the one-line contract
        if os.environ.get("BPO_JAX_DEBUG"):
            raise  # the full traceback, for a bug report
        reporting.mark_incomplete(out, f"stopped: {type(e).__name__}: {_first_line(e)}")
        return _fail(f"{type(e).__name__}: {_first_line(e)}", EXIT_FAILURE)

    info = reporting.write_outputs(result, out)
    reporting.mark_complete(out)
    cached = f" ({result.cached_programs} from cache)" if result.cached_programs else ""
    print(
        f"[{label}] final return {info['final_episode_return']:.2f} (mean over seeds, last 10% of episodes) | "
        f"compile {info['compile_seconds']:.1f}s{cached} | train {info['train_seconds']:.1f}s | "
        f"checkpoints+logs {info['io_seconds']:.1f}s | {info['steps_per_second']:,.0f} steps/s",
        file=sys.stderr,
    )
    extras = ",".join(x for x, on in (("checkpoints", saver is not None), ("tb", args.tensorboard)) if on)
    print(f"wrote {out}/{{config.json,metrics.csv,summary.json,curve.png{',' + extras if extras else ''}}}")
    return 0


def _compiler_options(args):
    from bpo_jax import runner

    return runner.FAST_COMPILE if args.fast_compile else None


def _train_follower(args, plan: _Plan) -> int:
    """A process other than 0 of a multi-process run: compute its share, write nothing."""
    from bpo_jax import runner

    if not args.no_compile_cache:
        runner.enable_compilation_cache()
    try:
        runner.run(plan.config, num_seeds=plan.num_seeds, chunk_updates=plan.chunk_updates, start=plan.start,
                   compiler_options=_compiler_options(args))
    except runner.NonFiniteError as e:
        return _fail(str(e), EXIT_FAILURE)  # process 0 reports it and marks the run
    return 0


def cmd_eval(args) -> int:
    from bpo_jax import checkpoint, envs, evaluate, reporting, runner

    try:
        if args.episodes < 1:
            raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
        if args.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
        run_dir, ckpt = checkpoint.locate(args.checkpoint)
        meta = checkpoint.read_metadata(ckpt)
        config = checkpoint.read_config(ckpt)
        envs.make(config.env, num_envs=1, **config.env_kwargs())
        state, _, _, meta = checkpoint.restore(ckpt, runner.state_template(config, meta["num_seeds"]))
        out = args.out or evaluate.default_eval_path(run_dir, ckpt)
        if os.path.isdir(out):
            raise ConfigError(f"--out {out} is a directory; give a file name such as {os.path.join(out, 'eval.json')}")
    except (ConfigError, ValueError, ImportError) as e:
        return _fail(_first_line(e))

    print(f"[{config.algo} {config.env}] checkpoint at update {meta['update']}: {args.episodes} episode(s) per seed, "
          f"deterministic policy, eval seed {args.seed}; compiling...", file=sys.stderr, flush=True)
    result = evaluate.run_eval(config, state, episodes=args.episodes, seed=args.seed, max_steps=args.max_steps)
    result = {"checkpoint": os.path.abspath(ckpt), "update": meta["update"],
              "env_steps": meta["update"] * config.batch_size, **result}
    if args.video:
        try:
            result["video"] = evaluate.record_video(config, state, os.path.join(os.path.dirname(os.path.abspath(out)), "video"),
                                                    seed=args.seed)
        except evaluate.VideoUnavailable as e:
            print(f"bpo-jax: video skipped: {e}", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    reporting.write_json(out, result)
    for line in evaluate.summary_lines(result):
        print(line)
    print(f"wrote {out}" + (f" and {result['video']}" if "video" in result else ""))
    return 0


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return {"train": cmd_train, "eval": cmd_eval, "envs": cmd_envs, "presets": cmd_presets}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
