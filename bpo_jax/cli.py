"""``bpo-jax``: command line.  Parses arguments, calls the library (a run is a
:class:`bpo_jax.session.RunSession`) and prints; every error is one line.

    bpo-jax train [--preset paper/Hopper-v4] [--env gymnax/CartPole-v1] [--algo bpo|ppo] [--seeds N]
                  [--out DIR] [--chunk-updates K] [--checkpoint-every N|30s] [--wandb] [--<hyperparameter> V ...]
    bpo-jax train --resume DIR
    bpo-jax train ... --coordinator HOST:PORT --num-processes N --process-id I   (one per host)
    bpo-jax eval --checkpoint DIR [--episodes N] [--seed S] [--video]
    bpo-jax export --checkpoint DIR [--format onnx|jax] [--seed-index I] [--out FILE]
    bpo-jax envs [--suite gymnax]
    bpo-jax presets [NAME]

Every command that trains or reads runs takes ``--plugin MODULE`` (repeatable): a module or .py
file imported first, which registers algorithms or suites (:mod:`bpo_jax.plugins`).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import re
import shlex
import socket
import signal
import sys
import threading
import typing
import urllib.error
from typing import Any, Optional, Sequence

from bpo_jax.config import Config, ConfigError, shown
from bpo_jax.console import say as _say
from bpo_jax.errors import (EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, first_line, in_words, interrupt_deferred,
                            interrupts_never_lost)

# Library names -> this command line's flags, where they differ from the name with dashes.
_FLAGS = {"num_seeds": "--seeds", "checkpoint_every_updates": "--checkpoint-every",
          "checkpoint_every_seconds": "--checkpoint-every", "checkpoints": "--no-checkpoints",
          "progress": "--quiet", "compile_cache": "--no-compile-cache",
          "tensorboard": "--no-tensorboard"}
_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(Config))


def _flag(name: str) -> str:
    """The flag that sets the library parameter ``name``."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _dest(name: str) -> str:
    """The argparse attribute of the flag that sets the library parameter ``name``."""
    return _flag(name).removeprefix("--").replace("-", "_")


def _worded(message: str, command: str = "train") -> str:
    """A library message in the words of subcommand ``command``: parameters, which the library
    writes in backticks (`overwrite`), become its flags (--overwrite); a parameter it has no flag
    for loses its backticks (a sweep sets `lr` through its presets or --grid, not --lr)."""
    def flag(name: str) -> Optional[str]:
        base = name.removesuffix("=False")
        f = _flag(base)
        if base != name and not f.startswith("--no-"):  # a switch turned off: its negative flag
            f = "--no-" + f.removeprefix("--")
        return f if f in _options_of(command) else None

    return in_words(message, flag)


@functools.cache
def _options_of(command: str) -> frozenset[str]:
    """The flags of subcommand ``command``."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(o for action in sub.choices[command]._actions for o in action.option_strings)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line and exit code 2, without argparse's usage block."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A value such as -1e-3 is a number, not a flag (Python 3.13's rule): before 3.13 argparse
        # took it for an unknown option and said "--kl-coef: expected one argument", not what
        # is wrong with the value.
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)  # "-inf": a value

    def error(self, message: str):
        _say(f"bpo-jax: error: {message}")
        raise SystemExit(EXIT_USAGE)


def parse_every(text: str) -> tuple[Optional[int], Optional[float]]:
    """--checkpoint-every's value: 'N' updates, or a duration 'Ns', 'Nm', 'Nh' -> (updates, seconds)."""
    t = text.strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        if t and t[-1] in units:
            seconds = float(t[:-1]) * units[t[-1]]
            if 0 < seconds < math.inf:
                return None, seconds
        else:
            updates = int(t)
            if updates > 0:
                return updates, None
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"takes a positive number of updates (50) or a duration (30s, 10m, 2h), got {text!r}")


def _parse_optional(inner):
    def parse(text: str):
        if not text.strip():  # `--lr "$LR"` with LR unset: not a choice of the default
            raise argparse.ArgumentTypeError("empty value; give a number or none")
        return None if text.lower() in ("none", "null") else inner(text)
    parse.__name__ = getattr(inner, "__name__", "value")
    return parse


def _parse_sizes(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:  # every item a width: "64," or " , " is a slip, not (64,) or a linear policy
        return tuple(int(x) for x in text.split(","))  # int() takes " 64" but not "64 64" (was 6464)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64 (or an empty string: "
                                         f"none), got {text!r}")


def _parse_strings(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); a comma inside brackets stays (healthy_z_range=(0.8,2.0) is one item)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth <= 0:
            items.append(text[start:i].strip())
            start, depth = i + 1, 0
    if depth > 0:  # the rest was never an item: it vanished from the run's settings
        raise argparse.ArgumentTypeError(f"a bracket opened in {text[start:].strip()!r} is not closed")
    return tuple(x for x in items if x)


def _parse_grid(text: str) -> tuple[str, tuple[float, ...]]:
    """'eps=0.1,0.2' -> ('eps', (0.1, 0.2)); the field may be spelt with dashes (bpo-lambda)."""
    name, sep, values = text.partition("=")
    name = name.strip().removeprefix("--").replace("-", "_")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected FIELD=V,V (e.g. eps=0.1,0.2), got {text!r}")
    if any(not v.strip() for v in values.split(",")):
        raise argparse.ArgumentTypeError(f"an empty value in --grid {text}; give FIELD=V,V (e.g. eps=0.1,0.2)")
    try:
        return name, tuple(int(v) if re.fullmatch(r"[+-]?\d+", v) else float(v) for v in _parse_strings(values))
    except ValueError:
        raise argparse.ArgumentTypeError(f"the values of {name} must be numbers, got {values!r}") from None


def _add_config_arguments(parser: argparse.ArgumentParser, defaults: dict[str, Any], suppress: bool = False) -> None:
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
        default = argparse.SUPPRESS if suppress else defaults.get(f.name, f.default)
        help_text = f.metadata["help"]
        if f.name == "algo":
            help_text += _registered_algorithms()
        if not re.search(r"\(default|by default", help_text):  # some helps say their default in words already
            help_text += f" (default: {shown(defaults.get(f.name, f.default))})"
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


def _registered_algorithms() -> str:
    """"; registered now: X, Y" for the algorithms plug-ins have registered ("" if none), so that
    ``--help --plugin FILE`` lists the names FILE adds."""
    from bpo_jax import algorithms, plugins

    added = [name for name in algorithms.names() if not plugins.built_in(type(algorithms.get(name)).__module__)]
    return f"; registered now: {', '.join(added)}" if added else ""


PLUGIN_HELP = ("import MODULE first (a module name, or a .py file's path; repeat for more): a plug-in that "
               "registers algorithms or environment suites.  Installed packages' plug-ins (entry-point group "
               "bpo_jax.plugins) load without it")


# The commands that take --plugin; plot and report read saved files only, llm has its own algorithms.
PLUGIN_COMMANDS = ("train", "sweep", "eval", "export", "envs", "presets")


def _add_plugin_argument(parser, default=None) -> None:
    # main() loads the plug-ins before parsing (they add names that parse_args and presets
    # check); declared here so that the flag is in each command's help and accepted in any position.
    parser.add_argument("--plugin", action="append", default=default, metavar="MODULE", help=PLUGIN_HELP)


FAST_COMPILE_HELP = ("compile with XLA's lowest optimisation: ~40%% less compile time, steps up to 2x slower on CPU; "
                     "for short runs and debugging.  Float rounding differs, so the same seed gives other numbers "
                     "than without it")


def build_parser(defaults: Optional[dict[str, Any]] = None, suppress: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``defaults`` (a preset's values) replace Config's defaults.
    ``suppress``: no defaults at all, so the parsed namespace holds only the flags given."""
    d = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser = _Parser(prog="bpo-jax", description="Bounded Policy Optimization and PPO in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,export,envs,presets,sweep,plot,report,llm}")
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
    run.add_argument("--reports", type=int, default=d(None), metavar="N",
                     help="progress reports per run; sets the chunk size K unless --chunk-updates (default: 20)")
    run.add_argument("--chunk-updates", type=int, default=d(None), metavar="K",
                     help="updates per compiled call (progress, logs and checkpoints happen between calls); "
                          "default: the largest divisor of the update count giving at least --reports chunks")
    run.add_argument("--quiet", action="store_true", default=d(False), help="no progress bar or lines")
    run.add_argument("--no-compile-cache", action="store_true", default=d(False),
                     help="do not use the persistent XLA compilation cache (~/.cache/bpo-jax/xla or $BPO_JAX_CACHE_DIR)")
    run.add_argument("--fast-compile", action="store_true", default=d(False), help=FAST_COMPILE_HELP)
    _add_plugin_argument(run, d(None))
    run.add_argument("--split", choices=("auto", "envs", "seeds"), default=d("auto"),
                     help="what several devices split: the env batch of every seed, or the seeds (each device "
                          "trains whole seeds, no collectives; --seeds must divide over the devices).  auto "
                          "(default): on a CPU, several seeds go whole onto every core (the cores become host "
                          "devices, the same numbers as one device), else the env batch")
    dist = train.add_argument_group("multi-host (one process per host; the env batch is split over all devices)")
    dist.add_argument("--coordinator", default=d(None), metavar="HOST:PORT",
                      help="address of process 0 for jax.distributed.initialize; without it, a set "
                           "$JAX_COORDINATOR_ADDRESS starts JAX's own cluster detection (SLURM, Open MPI, ...)")
    dist.add_argument("--num-processes", type=int, default=d(None), metavar="N", help="processes in the run")
    dist.add_argument("--process-id", type=int, default=d(None), metavar="I",
                      help="this process's index in [0, N); only process 0 writes outputs, checkpoints and logs")
    dist.add_argument("--join-timeout", type=int, default=d(300), metavar="SECONDS",
                      help="how long the processes wait for each other to join (default 300, JAX's)")
    ckpt = train.add_argument_group("checkpoints and resume")
    ckpt.add_argument("--resume", default=d(None), metavar="DIR",
                      help="continue the unfinished run in DIR (its run directory, checkpoints/ folder or one "
                           "checkpoints/step_* folder) from its newest checkpoint, with its configuration; flags that "
                           "would change the run's program are refused, except --total-steps: a larger budget takes "
                           "the run, finished or not, on to it (JAX environments; not with a linearly annealed lr)")
    ckpt.add_argument("--checkpoint-every", type=parse_every, default=d(None), metavar="N|30s|10m|2h",
                      help="save a checkpoint every N updates or after a wall-clock duration, at the next chunk end "
                           "(default: 10m); the last chunk is always saved")
    ckpt.add_argument("--keep-checkpoints", type=int, default=d(2), metavar="N",
                      help="keep the newest N checkpoints in OUT/checkpoints (default: 2)")
    ckpt.add_argument("--no-checkpoints", action="store_true", default=d(False),
                      help="write no checkpoints (the run cannot be resumed or evaluated)")
    logs = train.add_argument_group("logging")
    logs.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=d(True),
                      help="TensorBoard event files in OUT/tb/seed_<i> (default: on; with --resume, as the run had "
                           "them)")
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

    ex = sub.add_parser(
        "export", help="write a checkpoint's deterministic policy for deployment (ONNX or jax.export)",
        description="Write one seed's deterministic policy (Gaussian mean mapped to the action bounds, or argmax) "
                    "with its observation normaliser as constants: ONNX (input obs [batch, D] float32, or uint8 frames "
                    "[batch, H, W, C] for Atari's CNN; the onnx extra) or a jax.export file that needs only jax (bpo_jax.export.load_policy).",
    )
    ex.add_argument("--checkpoint", required=True, metavar="DIR",
                    help="a run directory (its newest checkpoint), its checkpoints/ folder or one step_* folder")
    ex.add_argument("--format", choices=("onnx", "jax"), default="onnx", help="file format (default: onnx)")
    ex.add_argument("--seed-index", type=int, default=0, metavar="I", help="which of the run's seeds (default: 0)")
    ex.add_argument("--out", default=None, metavar="FILE",
                    help="where to write it (default: policy_seed<I>.onnx or .jaxexport in the run directory)")

    envs = sub.add_parser("envs", help="list environment ids")
    envs.add_argument("--suite", default=None, help="only this suite")
    presets = sub.add_parser("presets", help="list named configurations, or show one's full setting")
    for command in (ev, ex, envs, presets):
        _add_plugin_argument(command)
    presets.add_argument("name", nargs="?", default=None, metavar="NAME",
                         help="show every configuration value this preset gives, for each algorithm")
    _add_sweep_parsers(sub)
    from bpo_jax.llm import cli as llm_cli  # argparse only; the trainer is imported when `llm` runs

    llm_cli.add_parser(sub)
    return parser


def _add_sweep_parsers(sub) -> None:
    from bpo_jax import sweep

    sw = sub.add_parser(
        "sweep", help="every (task, algorithm) of a suite with its preset, then figure and report",
        description="Run every (task, algorithm) of a suite with its preset, all seeds of a run as one vmapped "
                    "program, and write curves.csv, figure.png, report.md (against the paper) and summary.json "
                    "into --out.  Run the same command again to resume an interrupted sweep.",
        epilog="suites: " + "; ".join(f"{name}: {s.description}" for name, s in sweep.SUITES.items()))

    def names(example: str):
        """A,B as names; an empty one between commas (bpo,,ppo, a slip) refused, not dropped."""
        def parse(text: str) -> tuple[str, ...]:
            if text.strip(", ") and any(not item.strip() for item in text.split(",")):
                raise argparse.ArgumentTypeError(f"an empty name in {text!r}; give names separated by single commas "
                                                 f"(e.g. {example})")
            return _parse_strings(text)
        return parse

    sw.add_argument("--suite", required=True, metavar="NAME", help=f"one of {', '.join(sweep.SUITES)}")
    sw.add_argument("--tasks", type=names("Hopper-v4,Ant-v4"), default=None, metavar="T,T",
                    help="only these tasks of the suite, e.g. Hopper-v4 (default: all)")
    sw.add_argument("--algos", type=names("bpo,ppo"), default=("bpo", "ppo"), metavar="A,B",
                    help="algorithms, each with its preset settings (default: bpo,ppo)" + _registered_algorithms())
    sw.add_argument("--seeds", type=int, default=10, metavar="N", help="seeds per run, one program (default: 10)")
    sw.add_argument("--total-steps", type=int, default=None, metavar="N",
                    help="environment steps per seed for every run (default: each preset's budget, the paper's)")
    sw.add_argument("--grid", type=_parse_grid, action="append", default=None, metavar="FIELD=V,V",
                    help="also vary a setting, e.g. --grid eps=0.1,0.2,0.3 (repeat for more fields: every "
                         "combination); grid points of a task and algorithm that differ only in "
                         + ", ".join(f.replace("_", "-") for f in sweep.TRACED)
                         + " train as one program; sizes such as num-epochs are a program each")
    sw.add_argument("--out", required=True, metavar="DIR", help="the sweep directory (a new one, or this sweep's)")
    _add_plugin_argument(sw)
    sw.add_argument("--checkpoint-every", type=parse_every, default=None, metavar="N|30s|10m|2h",
                    help="checkpoint cadence within each run (default: 10m)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    sw.add_argument("--no-compile-cache", action="store_true", help="do not use the persistent XLA compilation cache")
    sw.add_argument("--fast-compile", action="store_true", help=FAST_COMPILE_HELP)
    sw.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                    help="TensorBoard event files in each run's tb/ (default: on)")
    for name, what in (("plot", "redraw the figure"), ("report", "write the Markdown report against the paper")):
        cmd = sub.add_parser(name, help=f"{what} from finished runs' saved CSVs",
                             description=f"{what[0].upper() + what[1:]} from finished runs: each DIR is a run "
                                         "directory, a sweep directory or any folder holding run directories.")
        cmd.add_argument("dirs", nargs="+", metavar="DIR")
        cmd.add_argument("--out", default=None, metavar="FILE",
                         help=f"where to write it (default: {'figure.png' if name == 'plot' else 'report.md'} in DIR; "
                              "needed with several DIRs)")
        cmd.add_argument("--title", default=None, help="title of the figure or report")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse twice when a preset is named: the preset (for the chosen --algo) only replaces
    defaults, so every explicit flag still wins over it."""
    from bpo_jax import presets

    args = build_parser().parse_args(argv)
    # What main() did not load before the parse: an abbreviation (--plug), which argparse takes
    # (a no-op for the others; none on --help, which ends in the parse).
    _load(getattr(args, "plugin", None) or ())
    if args.command != "train":
        return args
    # Which flags were given (for --resume, which refuses those that change the run).
    args.given = set(vars(build_parser(suppress=True).parse_args(argv))) - {"command"}
    args.typed = frozenset(args.given)  # without a preset's values, which `given` takes in below
    if args.preset is None:
        return args
    if args.resume:  # the preset's values would be reported as flags the user never typed
        raise SystemExit(_fail("--resume continues the checkpoint's run with its configuration; drop --preset"))
    try:
        values = presets.resolve(args.preset, args.algo)
    except presets.PresetError as e:
        raise SystemExit(_fail(str(e)))
    if "env" in args.given and args.env != values["env"]:
        # Allowed (a Hopper preset on Walker2d is a fair start), but an Atari preset on a MuJoCo
        # task is more likely a slip: say so before a long run starts.
        _say(f"bpo-jax: note: preset {args.preset} was set for {values['env']}; training {args.env} with it")
    given, typed = args.given | set(values), args.typed
    args = build_parser(values).parse_args(argv)
    args.given, args.typed = given, typed
    return args


def _config_from_args(args: argparse.Namespace) -> Config:
    return Config(**{name: getattr(args, name) for name in _CONFIG_FIELDS})


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    _say(f"bpo-jax: error: {message}")
    return code


def cmd_envs(args) -> int:
    import textwrap

    from bpo_jax import envs

    if args.suite is not None:  # one id per line: for scripts and grep
        try:
            names = envs.list_envs(args.suite)
        except (envs.UnknownEnvError, envs.MissingDependencyError, envs.EnvContractError) as e:
            return _fail(str(e))
        for name in names:
            _say(name, sys.stdout)
        return 0
    for info in envs.describe_suites():
        count = "unavailable" if info.unavailable_reason else f"{len(info.ids)} envs"
        _say(f"{info.name}/  ({count}) {info.description}", sys.stdout)
        marked = set(info.unbuildable)
        body = info.unavailable_reason or "  ".join(i.partition("/")[2] + "*" * (i in marked) for i in info.ids)
        if marked:
            body += f"\n* {info.unbuildable_reason}"
        for paragraph in body.split("\n"):
            _say(textwrap.fill(paragraph, 100, initial_indent="    ", subsequent_indent="    ",
                               break_long_words=False, break_on_hyphens=False), sys.stdout)
    _say("ids are suite/name, e.g. gymnax/CartPole-v1; --suite NAME lists one suite's ids, one per line", sys.stdout)
    return 0


def cmd_presets(args) -> int:
    from bpo_jax import presets

    if args.name is None:
        rows = [("name", "env", "steps", "what")] + [
            (name, values["env"], f"{values['total_steps']:,}", presets.summary(name))
            for name in presets.names() for values in [presets.resolve(name, "bpo")]]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3], sys.stdout)
        _say("bpo-jax presets NAME: every value for BPO and PPO and the implementation each equals; without "
             "--preset, train runs PureJaxRL's CartPole configuration (its PPO equals PureJaxRL's ppo.py)", sys.stdout)
        return 0
    try:
        settings = _preset_settings(args.name)
    except presets.PresetError as e:
        return _fail(str(e))
    for line in _preset_lines(args.name, settings):
        _say(line, sys.stdout)
    return 0


def _preset_settings(name: str) -> dict[str, Config]:
    """The full resolved configuration preset ``name`` gives each algorithm it has settings for."""
    from bpo_jax import algorithms, presets

    settings = {}
    for algo in algorithms.names():
        try:
            settings[algo] = Config(**presets.resolve(name, algo)).resolved()
        except presets.PresetError:
            if name not in presets.names():
                raise  # unknown name: its message lists the valid ones
    return settings


def _preset_lines(name: str, settings: dict[str, Config]) -> list[str]:
    """Where each algorithm's values come from (when presets say), then one row per field."""
    from bpo_jax import algorithms, presets

    source = getattr(presets, "source", None)
    lines = [f"{name}: bpo-jax train --preset {name} --algo {'|'.join(settings)}"]
    if source is not None:
        lines += [f"  {algo}: {source(name, algo)}" for algo in settings]
    rows = [("field", *settings)] + [(f, *(shown(getattr(c, f)) if algorithms.reads(algo, f) else "-"
                                           for algo, c in settings.items())) for f in _CONFIG_FIELDS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return lines + ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows] + \
        ["(-: a field that algorithm does not read)"] * any("-" in row[1:] for row in rows)


def _init_distributed(args) -> None:
    """Join a multi-process run before anything touches a device: with --coordinator (and
    --num-processes, --process-id), or JAX's own detection when $JAX_COORDINATOR_ADDRESS is set."""
    flags = (args.coordinator, args.num_processes, args.process_id)
    if not _distributed(args):
        if _dest("join_timeout") in args.given:  # accepted and ignored, whatever its value, alone
            raise ConfigError("--join-timeout is how long the processes of a multi-process run wait for each other; "
                              "give it with --coordinator, --num-processes and --process-id, or drop it")
        return
    import jax

    from bpo_jax import reporting

    if not args.resume:  # joining waits for every process: refuse bad settings before it, as alone
        _config_from_args(args).validate()
        if args.out is not None:
            reporting.check_output_dir(args.out, args.overwrite)
    if args.join_timeout < 1:
        raise ConfigError(f"--join-timeout must be >= 1 second, got {args.join_timeout}")
    address = os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    given = any(f is not None for f in flags)
    if given:
        if None in flags:
            raise ConfigError("--coordinator, --num-processes and --process-id go together; give all three")
        address = args.coordinator
        host, colon, port = args.coordinator.rpartition(":")
        bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
        if not (host and colon and port.isdigit() and 0 < int(port) < 65536) or bare_ipv6:
            raise ConfigError(f"--coordinator must be HOST:PORT (process 0's address, e.g. 10.0.0.1:1234, or "
                              f"[::1]:1234 for IPv6), got {args.coordinator!r}")
        if args.num_processes < 1:
            raise ConfigError(f"--num-processes must be >= 1, got {args.num_processes}")
        if not 0 <= args.process_id < args.num_processes:
            raise ConfigError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
        try:  # an unknown host waited silently for ever
            socket.getaddrinfo(host.strip("[]"), int(port))
        except OSError as e:
            raise ConfigError(f"--coordinator host {host!r} does not resolve ({e.strerror or e}); give process 0's "
                              "address") from None
        who = f"process {args.process_id} of {args.num_processes}"
        remedy = ("process 0 must be able to listen at that address and every other process reach it: start all "
                  f"{args.num_processes} with the same --coordinator and --num-processes and their own --process-id")
    else:
        who = "this process (JAX detects the cluster)"
        remedy = "check $JAX_COORDINATOR_ADDRESS and that the cluster started every process"
    # CPU devices of different processes talk through gloo (the default CPU client has no
    # cross-process collectives); GPU/TPU backends ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _say(f"joining the run at {address} as {who}; waiting up to {args.join_timeout} s for it to form...")
    # Past its deadline JAX's coordination service aborts the process (a C++ stack trace, exit
    # 134): JAX is given a few seconds more, and at ours the process stops with one line.
    watchdog = threading.Timer(args.join_timeout, _joined_too_late, (address, args.join_timeout, remedy))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(*(flags if given else ()), initialization_timeout=args.join_timeout + 10)
    except Exception as e:  # bad address, timeout, no cluster detected
        if "must be defined" in str(e) and not given:
            raise ConfigError(f"$JAX_COORDINATOR_ADDRESS is set ({address}) but JAX detected no cluster (SLURM, "
                              "Open MPI, ...) to take the process count and index from: give --coordinator, "
                              "--num-processes and --process-id, or unset it") from None
        raise ConfigError(f"jax.distributed.initialize failed: {type(e).__name__}: {first_line(e)}") from None
    finally:
        watchdog.cancel()


def _joined_too_late(address: str, seconds: int, remedy: str) -> None:
    """The join's deadline: one line and exit 2, before JAX's coordination service aborts."""
    _say(f"bpo-jax: error: no run formed at {address} within {seconds} s: {remedy} (or give a longer --join-timeout)")
    os._exit(EXIT_USAGE)


def cmd_train(args) -> int:
    from bpo_jax import runner, session as sessions, tracking

    if _host_run(args):
        return _train_host(args)
    session = None
    try:
        # Held over the setup, mostly imports and JAX tracing, where a KeyboardInterrupt can
        # turn into an ImportError or be dropped (errors.interrupt_deferred).
        with interrupt_deferred() as pressed:
            _init_distributed(args)
            _use_cpu_cores(args)
            session = _open_session(args)
    except sessions.ProgramMismatch as e:
        if e.field == "fast_compile":
            return _fail(f"--resume continues the checkpoint's run, which compiled {'with' if e.saved else 'without'} "
                         f"--fast-compile (its float rounding): {'give' if e.saved else 'drop'} --fast-compile")
        return _fail(f"--resume continues the checkpoint's run, whose {_flag(e.saved_field)} is {shown(e.saved)}; "
                     f"drop {_flag(e.field)} (start a new run to change it)")
    except sessions.RunFinished as e:
        return _fail(_worded(f"{e}; or evaluate it with: bpo-jax eval --checkpoint {shlex.quote(e.run_dir)}"))
    except (ValueError, ImportError, tracking.TrackingError) as e:
        return _fail(_worded(first_line(e)))
    finally:
        if pressed and session is not None and session.resumed_from is None:  # a resume has written nothing
            session.record_stop(KeyboardInterrupt())
    if pressed:
        return _fail(_worded(session.note) if session and session.note else
                     "interrupted while starting; nothing was run or written", EXIT_INTERRUPTED)

    # ---- every input check has passed: from here on the run directory exists
    lead = sessions.is_lead()
    if lead:
        _say(_header(session))
        if session.resume_note:
            _say(_worded(session.resume_note))
    try:
        done = session.run()
    except KeyboardInterrupt:
        return _fail(_worded(session.note or "interrupted"), EXIT_INTERRUPTED)
    except Exception as e:
        if os.environ.get("BPO_JAX_DEBUG") and not isinstance(e, runner.BadUpdateError):
            raise  # the full traceback, for a bug report
        # (No note where the session stopped before its run began, e.g. the file system refused.)
        return _fail(_worded(session.note or f"stopped: {type(e).__name__}: {first_line(e)}"), EXIT_FAILURE)
    if lead:
        _say(_final_line(session, done))
        _say(f"wrote {_folder(session.out)}{{{','.join(done.files)}}}", sys.stdout)
    return 0


def _use_cpu_cores(args) -> None:
    """Before anything starts JAX's backends: with --split auto or seeds in a one-process run,
    this CPU's cores become host devices for the run's seeds (:func:`bpo_jax.runner.use_cpu_cores`)."""
    from bpo_jax import checkpoint, runner
    from bpo_jax.envs import registry

    if (args.split == "envs" and not args.resume) or _distributed(args):
        return
    seeds, env, devices = args.seeds, args.env, None
    if args.resume:  # whatever --split says: the session refuses one that changes the run's programs
        try:
            ckpt = checkpoint.locate(args.resume)[1]
            meta = checkpoint.read_metadata(ckpt)
            seeds, env = meta["num_seeds"], checkpoint.read_config(ckpt).env
        except (ValueError, OSError):
            return  # the run session reports what is wrong with the checkpoint
        devices = runner.resumed_devices(meta.get("layout"), seeds)  # the run's own, whatever the cores
    if not registry.host_state(env):  # such envs train on one device (runner.fitting_devices)
        runner.use_cpu_cores(seeds, devices)


def _distributed(args) -> bool:
    """Whether this is one process of a multi-process run."""
    return any(getattr(args, f) is not None for f in ("coordinator", "num_processes", "process_id")) \
        or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))


def _host_run(args) -> bool:
    """Whether the run is an isaaclab/ one (the host loop): by --env, or with --resume by the
    checkpoint's configuration."""
    if not args.resume:
        return args.env.startswith("isaaclab/")
    return _is_isaaclab_checkpoint(args.resume)


def _is_isaaclab_checkpoint(path: str) -> bool:
    """Whether the checkpoint at ``path`` is of an isaaclab/ run; False where it cannot be read
    (whoever loads it next reports what is wrong with it)."""
    from bpo_jax import checkpoint

    try:
        return checkpoint.read_config(checkpoint.locate(path)[1]).env.startswith("isaaclab/")
    except (ValueError, OSError):
        return False


def _train_host(args) -> int:
    """isaaclab/<task>: the host-driven loop of :mod:`bpo_jax.host_loop` (the simulator is torch),
    one seed, outputs, checkpoints and an exported policy in --out; --resume continues one.  A
    run that stops (Ctrl-C, a NaN, bad env data) ends in one line: what happened, the newest
    checkpoint kept and the --resume command, as its INCOMPLETE note says."""
    from bpo_jax import checkpoint, host_loop, reporting, runner

    try:
        config, out = _host_run_config(args)
        env = host_loop.make_env(config)  # one line with the install hint when IsaacLab is missing
    except (ValueError, ImportError) as e:
        return _fail(_worded(first_line(e)))
    every_updates, every_seconds = args.checkpoint_every or (None, 600.0)
    if args.no_checkpoints:
        every_updates = every_seconds = None
    resuming = f"; resuming from {args.resume}" if args.resume else ""
    _say(f"[{config.algo} {config.env}] 1 seed x {config.num_updates} iteration{'s' * (config.num_updates != 1)} x "
         f"{config.batch_size} steps, "
         f"host-driven rollout{resuming}; compiling...")
    try:
        result = host_loop.train(config, env, out=out, quiet=args.quiet, resume=args.resume,
                                 checkpoint_every=every_updates, checkpoint_seconds=every_seconds,
                                 keep_checkpoints=args.keep_checkpoints, overwrite=args.overwrite,
                                 resume_hint=_resume_command(args), restart_hint=_restart_command(args),
                                 wording=_worded)
    except KeyboardInterrupt as e:
        # The note the run wrote in INCOMPLETE (it names the iteration); none before it began.
        return _fail(host_loop.recorded_note(e) or "interrupted (Ctrl-C) before the first iteration; nothing was "
                     "written", EXIT_INTERRUPTED)
    except checkpoint.CheckpointError as e:
        return _fail(first_line(e))
    except Exception as e:
        if os.environ.get("BPO_JAX_DEBUG") and not isinstance(e, runner.BadUpdateError):
            raise  # the full traceback, for a bug report
        # Failed before the run directory was opened: nothing to resume.
        return _fail(host_loop.recorded_note(e) or _worded(first_line(e)), EXIT_FAILURE)
    finally:
        env.close()
    _say(f"[{config.algo} {config.env}] final return {reporting.final_return_text(result.final_return)} | collect "
         f"{result.collection_seconds.sum():.1f}s, learn {result.learning_seconds.sum():.1f}s | "
         f"{result.steps_per_second:,.0f} steps/s; wrote {out}")
    return 0


def _host_run_config(args) -> tuple[Config, str]:
    """(config, run directory) of an isaaclab/ run: the checkpoint's with --resume, else the
    flags'; every check before anything is built or written."""
    from bpo_jax import checkpoint, reporting

    unread = [_flag(name) for name in ("coordinator", "num_processes", "process_id", "join_timeout", "split")
              if _dest(name) in args.given]
    if unread:  # accepted and ignored, as if the run were split or joined
        raise ConfigError(f"isaaclab/ runs one simulator process on one device, never split or joined with others; "
                          f"drop {', '.join(unread)}")
    if not args.resume:
        if "seeds" in args.given and args.seeds != 1:
            raise ConfigError("isaaclab/ trains one seed per simulator process; drop --seeds or give --seeds 1")
        config = _config_from_args(args)
        # before Isaac Sim starts; an rsl_rl VecEnv's actions are continuous
        config.validate().check_read(_given_fields(args), continuous=True)
        out = reporting.default_run_dir(config) if args.out is None else args.out
        reporting.check_output_dir(out, args.overwrite)
        return config, out
    changed = sorted(_flag(name) for name in _expected(args))
    if changed:
        raise ConfigError(f"--resume continues the checkpoint's run with its configuration; drop {', '.join(changed)}")
    if args.overwrite:
        raise ConfigError("--resume continues a run in its own directory; it cannot be combined with --overwrite")
    run_dir, ckpt = checkpoint.locate(args.resume)
    if run_dir is None:
        raise ConfigError(f"--resume needs the run's directory around {ckpt}")
    if args.out and os.path.abspath(args.out) != os.path.abspath(run_dir):
        raise ConfigError(f"--resume continues in the run's own directory {run_dir}; drop --out {args.out}")
    config, done = checkpoint.read_config(ckpt), checkpoint.read_metadata(ckpt)["update"]
    if done >= config.num_updates:
        raise ConfigError(f"the run in {run_dir} has finished ({done} of {config.num_updates} iterations)")
    return config, run_dir


def _open_session(args):
    """The run session the arguments ask for: a fresh run, or a resumed one."""
    from bpo_jax.session import RunSession

    options = _run_options(args)
    if not args.resume:
        return RunSession.start(_config_from_args(args), args.seeds, args.out, chunk_updates=args.chunk_updates,
                                reports=args.reports, overwrite=args.overwrite, options=options,
                                given=_given_fields(args))
    if args.overwrite:
        raise ConfigError("--resume continues a run in its own directory; it cannot be combined with --overwrite")
    session = RunSession.resume(args.resume, options, expect=_expected(args))
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(session.out):
        raise ConfigError(f"--resume continues in the run's own directory {session.out}; drop --out {args.out}")
    return session


def _run_options(args):
    """The watching and writing flags, which a resumed run may change."""
    from bpo_jax.session import RunOptions

    if args.no_checkpoints:
        if args.resume:  # the run would end past its newest checkpoint, which eval, export and --resume read
            raise ConfigError("--resume goes on writing checkpoints, so that the run's newest checkpoint is its end; "
                              "drop --no-checkpoints")
        clash = [_flag(name) for name in ("checkpoint_every_seconds", "keep_checkpoints") if _dest(name) in args.given]
        if clash:
            raise ConfigError(f"--no-checkpoints writes none; drop {' and '.join(clash)} or --no-checkpoints")
    where = [_flag(name) for name in ("wandb_project", "wandb_entity") if _dest(name) in args.given]
    if where and not args.wandb:
        one = len(where) == 1
        raise ConfigError(f"{' and '.join(where)} {'says' if one else 'say'} where W&B logs, and nothing logs there "
                          f"without --wandb; give --wandb, or drop {'it' if one else 'them'}")
    cadence = {}
    if args.checkpoint_every is not None:
        cadence = dict(zip(("checkpoint_every_updates", "checkpoint_every_seconds"), args.checkpoint_every))
    return RunOptions(keep_checkpoints=args.keep_checkpoints, checkpoints=not args.no_checkpoints,
                      tensorboard=_tensorboard(args), wandb=args.wandb, wandb_project=args.wandb_project,
                      wandb_entity=args.wandb_entity, progress=not args.quiet, compile_cache=not args.no_compile_cache,
                      fast_compile=args.fast_compile, split=args.split,
                      resume_hint=_resume_command(args) + " --fast-compile" * args.fast_compile,
                      restart_hint=_restart_command(args), wording=_worded, **cadence)


def _tensorboard(args) -> bool:
    """--tensorboard, which a resumed run takes from its own directory unless given: one
    trained without it has no tb/ to go on."""
    from bpo_jax import checkpoint

    if not args.resume or "tensorboard" in args.given:
        return args.tensorboard
    try:
        run_dir = checkpoint.locate(args.resume)[0]
    except checkpoint.CheckpointError:  # the resume itself says what is wrong with the path
        return args.tensorboard
    return run_dir is None or os.path.isdir(os.path.join(run_dir, "tb"))


def _resume_command(args) -> str:
    """The command that resumes this train run (``{out}``: its directory), with its plug-ins."""
    return "bpo-jax train --resume {out}" + _plugin_flags(args).replace("{", "{{").replace("}", "}}")


def _plugin_flags(args) -> str:
    """" --plugin X" for each plug-in the command was given (quoted for a shell)."""
    return "".join(f" --plugin {shlex.quote(spec)}" for spec in getattr(args, "plugin", None) or ())


def _restart_command(args) -> str:
    """The command that starts this train run again in its directory, as a RunOptions hint
    (``{out}`` stands for the directory; other braces doubled)."""
    again = ["bpo-jax", *args.argv] + ["--overwrite"] * (not args.overwrite)
    hint = shlex.join(again).replace("{", "{{").replace("}", "}}")
    return hint if "out" in args.given else f"{hint} --out {{out}}"


def _given_fields(args) -> list[str]:
    """The Config fields whose flags were typed (a preset's values are not)."""
    return [name for name in _CONFIG_FIELDS if _dest(name) in args.typed]


def _expected(args) -> dict[str, Any]:
    """The flags given with --resume that define a run's program (configuration, seeds, chunk
    size), by their library names: the session refuses any that differs from the checkpoint's."""
    names = (*_CONFIG_FIELDS, "num_seeds", "chunk_updates", "reports")
    return {name: getattr(args, _dest(name)) for name in names if _dest(name) in args.given}


def _header(session) -> str:
    c = session.config
    resumed = "" if session.resumed_from is None else \
        f"; resuming at update {session.start_update} from {session.resumed_from.path}"
    return (f"[{session.label}] {session.num_seeds} seed(s) x {c.num_updates} update{'s' * (c.num_updates != 1)} x "
            f"{c.batch_size} steps, "
            f"{session.chunk_updates} update{'s' if session.chunk_updates != 1 else ''} per chunk"
            f"{_layout(session)}{resumed}; compiling...")


def _layout(session) -> str:
    """How the run spreads over several devices ("" on one): the layout the runner takes, as a
    sweep's line says it."""
    from bpo_jax import runner

    spread = runner.layout(session.config, session.num_seeds, session.options.split)
    return "" if spread["devices"] == 1 else ", " + runner.layout_words(spread, runner.devices_word())


def _final_line(session, done) -> str:
    """The last line: return, the time split, what checkpoints cost, the run's throughput."""
    from bpo_jax import reporting, tracking

    info = done.summary

    cached = f" ({info['cached_programs']} from cache)" if info["cached_programs"] else ""
    ret = reporting.final_return_text(info["final_episode_return"], over_seeds=True)
    return (f"[{session.label}] final return {ret} | compile {info['compile_seconds']:.1f}s{cached} | "
            f"train {info['train_seconds']:.1f}s | checkpoints+logs {info['io_seconds']:.1f}s ({info['checkpoints_written']} checkpoint(s) "
            f"{info['checkpoint_seconds']:.1f}s) | "
            f"{tracking.throughput_text(done.result.throughput, session.num_seeds)}")


def cmd_eval(args) -> int:
    from bpo_jax import checkpoint, evaluate, reporting
    from bpo_jax.checks import check_int, check_seed

    try:  # the library's checks, before a checkpoint is read
        check_int("--episodes", args.episodes, high=evaluate.MAX_EPISODES)
        check_int("--max-steps", args.max_steps)
        check_seed(args.seed, "--seed")
        loaded = checkpoint.load(args.checkpoint)
        out = args.out or evaluate.default_eval_path(loaded.run_dir, loaded.path)
        _check_file_out(out, "eval.json")
    except (ValueError, ImportError) as e:
        return _fail(_worded(first_line(e), "eval"))

    config, state, update = loaded.config, loaded.start.state, loaded.start.update
    _say(f"[{config.algo} {config.env}] checkpoint at update {update}: {args.episodes} episode(s) per seed, "
         f"deterministic policy, eval seed {args.seed}; compiling...")
    try:
        result = evaluate.run_eval(config, state, episodes=args.episodes, seed=args.seed, max_steps=args.max_steps)
    except ValueError as e:  # a checkpoint whose state does not match its config.json, or is not finite
        return _fail(_worded(f"checkpoint {loaded.path}: {first_line(e)}", "eval"))
    result = {"checkpoint": os.path.abspath(loaded.path), "update": update, "env_steps": update * config.batch_size,
              **result}
    with _parents_made(out):  # the video goes beside it
        if args.video:
            try:
                result["video"] = evaluate.record_video(config, state, os.path.join(os.path.dirname(os.path.abspath(out)),
                                                                                    "video"),
                                                        seed=args.seed, max_steps=args.max_steps)
            except evaluate.VideoUnavailable as e:
                _say(f"bpo-jax: video skipped: {e}")
        reporting.write_json(out, result)
    for line in evaluate.summary_lines(result):
        _say(line, sys.stdout)
    _say(f"wrote {out}" + (f" and {result['video']}" if "video" in result else ""), sys.stdout)
    return 0


@contextlib.contextmanager
def _parents_made(path: str):
    """The missing folders above file ``path`` made for the body, and removed again where it
    fails: a failed command leaves nothing behind."""
    made, folder = [], os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:  # deepest first; one the body wrote into stays
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def cmd_export(args) -> int:
    import jax
    import numpy as np

    from bpo_jax import checkpoint, export
    from bpo_jax.envs import make as make_env

    try:
        named = os.path.splitext(args.out or "")[1].lower()
        if named in (".onnx", ".jaxexport") and named != (".onnx" if args.format == "onnx" else ".jaxexport"):
            raise ConfigError(f"--out {args.out} names the other format than --format {args.format} writes; "
                              "change one of them")
        if _is_isaaclab_checkpoint(args.checkpoint):
            raise ConfigError("an isaaclab/ run writes policy.jaxexport (and policy.onnx with the onnx extra) in its "
                              "folder when it ends; bpo-jax export reads the runs of the other suites")
        loaded = checkpoint.load(args.checkpoint)
        config, seeds = loaded.config, loaded.meta["num_seeds"]
        if not 0 <= args.seed_index < seeds:
            raise ConfigError(f"--seed-index must be in [0, {seeds - 1}] (the run has {seeds} seed(s)), "
                              f"got {args.seed_index}")
        suffix = ".onnx" if args.format == "onnx" else ".jaxexport"
        out = args.out or os.path.join(loaded.run_dir or os.path.dirname(loaded.path),
                                       f"policy_seed{args.seed_index}{suffix}")
        _check_file_out(out, f"policy{suffix}")
        env = make_env(config.env, num_envs=1, reset_pool=0, **config.env_kwargs())
        shape = tuple(env.obs_spec.shape)
        state = jax.tree.map(lambda x: x[args.seed_index], loaded.start.state)
        write = export.export_onnx if args.format == "onnx" else export.export_policy
        image = len(shape) == 3 and np.dtype(env.obs_spec.dtype) == np.uint8  # Atari frames; MinAtar's grids are flat
        with _parents_made(out):
            try:
                write(out, config, env.action_space, state, obs_dim=shape if image else int(np.prod(shape)))
            except export.ExportError:  # what ONNX export needs or covers
                raise
            except ValueError as e:  # the checkpoint's state: not finite, or not its config's network
                raise ValueError(f"checkpoint {loaded.path}: {first_line(e)}") from None
    except (ValueError, ImportError) as e:
        return _fail(_worded(first_line(e), "export"))
    _say(f"wrote {out}: seed {args.seed_index}'s deterministic policy at update {loaded.start.update}", sys.stdout)
    return 0


def cmd_sweep(args) -> int:
    from bpo_jax import runner, sweep
    from bpo_jax.session import RunOptions

    try:
        every = dict(zip(("checkpoint_every_updates", "checkpoint_every_seconds"), args.checkpoint_every or ()))
        again = _sweep_command(args).replace("{", "{{").replace("}", "}}")  # a brace in --out is a path's
        options = RunOptions(progress=not args.quiet, compile_cache=not args.no_compile_cache,
                             fast_compile=args.fast_compile, tensorboard=args.tensorboard,
                             resume_hint=again, restart_hint=again,
                             wording=functools.partial(_worded, command="sweep"),
                             **every).validate()
        names = [name for name, _ in args.grid or ()]
        repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if repeated:
            raise ConfigError(f"--grid names {repeated} twice; give its values once: --grid {repeated}=V,V")
        grid = dict(args.grid or ())
        sweep.check_plugins(args.out, args.algos)  # called again without its --plugin: say which
        plan = sweep.plan(args.suite, args.algos, args.seeds, args.total_steps, args.tasks, grid or None)
    except (ValueError, ImportError) as e:
        return _fail(_worded(first_line(e), "sweep"))
    # Every program's seeds go whole onto the CPU's cores: a count of devices that divides the
    # members (grid points x seeds) of every program; a sweep called again, the count its runs
    # trained on, whatever the cores (the same programs: its runs resume bit for bit).
    runner.use_cpu_cores(plan.num_seeds * math.gcd(*(len(group) for group in plan.programs())),
                         sweep.recorded_devices(args.out))
    try:
        summary = sweep.run(plan, args.out, options, say=_say)
    except KeyboardInterrupt:
        return _fail(f"interrupted; run the same command to resume: {_sweep_command(args)}", EXIT_INTERRUPTED)
    except (ValueError, ImportError) as e:
        return _fail(_worded(first_line(e), "sweep"))
    except Exception as e:
        if os.environ.get("BPO_JAX_DEBUG"):
            raise
        return _fail(f"stopped: {type(e).__name__}: {first_line(e)}; run the same command to resume: "
                     f"{_sweep_command(args)}", EXIT_FAILURE)
    diverged = f", {len(summary['diverged'])} diverged (listed in report.md)" if summary.get("diverged") else ""
    if not summary["runs"]:
        return _fail(f"every run diverged ({len(summary['diverged'])}, listed in report.md); wrote "
                     f"{_folder(args.out)}{{report.md,summary.json}}", EXIT_FAILURE)
    _say(f"{len(summary['runs'])} run(s) finished{diverged}; wrote "
         f"{_folder(args.out)}{{curves.csv,figure.png,report.md,summary.json}}", sys.stdout)
    return 0


def _folder(path: str) -> str:
    """``path`` as the folder part of a file list: one trailing slash (``out/{a,b}``)."""
    return os.path.join(path, "")


def _sweep_command(args) -> str:
    """The command that resumes this sweep as it was started, its --plugin flags and watching
    flags included (quoted for a shell)."""
    from bpo_jax import curves

    q = shlex.quote
    steps = f" --total-steps {args.total_steps}" if args.total_steps else ""
    tasks = f" --tasks {q(','.join(args.tasks))}" if args.tasks else ""
    tasks += "".join(f" --grid {q(name + '=' + ','.join(curves.number_text(v) for v in values))}"
                     for name, values in args.grid or ())
    fast = " --fast-compile" if args.fast_compile else ""
    watch = ""
    if args.checkpoint_every:
        updates, seconds = args.checkpoint_every
        watch += f" --checkpoint-every {updates if updates else f'{seconds:g}s'}"
    watch += " --quiet" * args.quiet + " --no-compile-cache" * args.no_compile_cache
    watch += " --no-tensorboard" * (not args.tensorboard)
    return (f"bpo-jax sweep{_plugin_flags(args)} --suite {q(args.suite)}{tasks} --algos {q(','.join(args.algos))} --seeds "
            f"{args.seeds}{steps} --out {q(args.out)}{fast}{watch}")


def _extension(path: str) -> str:
    """A file name's extension, lower case, without its dot: what picks plot's image format."""
    return os.path.splitext(path)[1].lstrip(".").lower()


def cmd_plot(args) -> int:
    from bpo_jax import curves, reporting

    def write(cs, diverged, title, path):
        notes = []  # runs with nothing to draw: said on the figure and here
        reporting.write_atomic(path, lambda tmp: notes.extend(curves.plot(cs, tmp, title, format=_extension(path))))
        for note in notes:
            _say(f"bpo-jax: note: {note}")

    def check(path):
        if _extension(path) not in curves.image_formats():
            why = f" ({curves.NOT_FIGURES[_extension(path)]})" if _extension(path) in curves.NOT_FIGURES else ""
            raise ConfigError(f"--out {path}: the file name's extension picks the image format{why}; use .png, .pdf "
                              f"or .svg (any of {', '.join(curves.image_formats())})")
    return _from_runs(args, "figure.png", write, check, draws=True)


def cmd_report(args) -> int:
    from bpo_jax import curves, reporting, sweep

    def write(cs, diverged, title, path):
        pending = sweep.pending_runs(args.dirs[0]) if len(args.dirs) == 1 else []
        text = sweep.report_text(cs, title, diverged, pending)
        reporting.write_text(path, text)
        _say(text, sys.stdout)

    def check(path):
        if _extension(path) in {*curves.image_formats(), *curves.NOT_FIGURES}:
            raise ConfigError(f"--out {path}: the report is Markdown text; give a .md file name (bpo-jax plot draws "
                              "the figure)")
    return _from_runs(args, "report.md", write, check)


def _check_file_out(out: str, example: str) -> None:
    """Before any work: --out names a file that can be written (its folder exists or can be
    made), and no file of a run or sweep, which writing it would destroy."""
    from bpo_jax import reporting

    if os.path.isdir(out) or out.endswith(("/", os.sep)):  # newdir/ wrote a file called newdir
        raise ConfigError(f"--out {out} is a directory; give a file name such as {os.path.join(out, example)}")
    owner = _owning_run(os.path.realpath(out))
    if owner is not None:
        raise ConfigError(f"--out {out} is a file of the run or sweep in {owner}, which writing it would destroy; "
                          f"give another name such as {os.path.join(owner, example)}")
    try:  # where a link points: that is the file written
        reporting.check_creatable(os.path.dirname(os.path.realpath(out)))
    except reporting.OutputDirError as e:
        raise ConfigError(f"--out {out}: {e}") from None


def _owning_run(path: str) -> Optional[str]:
    """The run, checkpoint or sweep directory whose own file ``path`` (a real path) is: a file
    bpo-jax writes there and reads back (config.json, metrics.csv, summary.json, the markers,
    a sweep's sweep.json and curves.csv), or anything under its checkpoints/ or tb/.  None for
    any other path, such as the eval.json, figure.png or report.md these commands write."""
    from bpo_jax import reporting, sweep

    owner = reporting.run_owning(path)  # the nearest run above path: its checkpoints/ and tb/ are its own
    if owner is not None:
        return owner
    folder, name = os.path.split(path)
    run_files = (*reporting.OUTPUT_FILES, reporting.INCOMPLETE, reporting.DIVERGED, "metadata.json")
    if name in run_files and os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    if name in (sweep.SWEEP_FILE, "curves.csv", "summary.json") and os.path.isfile(os.path.join(folder, sweep.SWEEP_FILE)):
        return folder
    return None


# How plot and report tell what to do with runs marked INCOMPLETE: resume those with a
# checkpoint, start the others again; each one's note says which, with the command.
_FINISH = "marked INCOMPLETE: each one's INCOMPLETE file says how to finish it"


def _from_runs(args, default_name: str, write, check=lambda out: None, draws: bool = False) -> int:
    """Load the finished runs under args.dirs and ``write(curves, diverged, title, path)`` one
    file from them (the title: --title, else a sweep directory's own); ``check(path)`` first
    refuses a path ``write`` cannot serve.  Unfinished runs are left out, and said so; diverged
    ones are listed by a report and cannot be drawn (``draws``)."""
    from bpo_jax import curves, sweep

    try:
        if args.out is None and len(args.dirs) > 1:
            raise ConfigError(f"--out is needed with several DIRs (where to write {default_name})")
        not_dir = next((d for d in args.dirs if not os.path.isdir(d)), None)
        if not_dir is not None:
            raise ConfigError(f"{not_dir} is not a directory (give run or sweep directories)")
        out = args.out or os.path.join(args.dirs[0], default_name)
        _check_file_out(out, default_name)
        check(out)
        found = curves.find_runs(args.dirs)
        if not found.runs and (draws or not found.diverged):
            why = [f"{len(found.diverged)} diverged (their DIVERGED files say where)"] * bool(found.diverged) + \
                  [f"{len(found.unfinished)} unfinished ({_FINISH})"] * bool(found.unfinished)
            raise ConfigError(f"{', '.join(args.dirs)}: no finished run to {'draw' if draws else 'report'}; "
                              f"{' and '.join(why)}")
        loaded = sweep.grid_labels(curves.load_all(found.runs))
        title = args.title or (sweep.title_of(args.dirs[0]) if len(args.dirs) == 1 else None)
    except (ValueError, OSError, ImportError) as e:
        return _fail(_worded(first_line(e), args.command))
    if found.unfinished:
        _say(f"bpo-jax: note: left out {len(found.unfinished)} unfinished run(s) ({_FINISH}): "
             f"{', '.join(found.unfinished)}")
    if found.diverged and draws:  # a report lists them under its table
        _say(f"bpo-jax: note: left out {len(found.diverged)} run(s) that diverged (their DIVERGED files say where): "
             f"{', '.join(found.diverged)}")
    try:
        with _parents_made(os.path.realpath(out)):
            write(loaded, found.diverged, title, out)
    except (ValueError, RuntimeError) as e:  # matplotlib refusing what it was given; nothing was written
        if os.environ.get("BPO_JAX_DEBUG"):
            raise
        return _fail(f"could not write {out}: {type(e).__name__}: {first_line(e)}", EXIT_FAILURE)
    diverged = f" and {len(found.diverged)} that diverged" if found.diverged and not draws else ""
    _say(f"wrote {out} ({len(loaded)} finished run(s){diverged})", sys.stdout)
    return 0


def cmd_llm(args) -> int:
    from bpo_jax.llm import cli as llm_cli

    return llm_cli.run(args)


def _load_plugins(argv: list[str]) -> None:
    """Import the installed plug-ins and each --plugin before the command line is parsed: the
    algorithms and suites they register are names that parsing and presets check, and that a
    command's --help lists (a plug-in that fails there is told in one line, and the help shown
    without it).  Not for a command that takes no --plugin."""
    scan = _Parser(add_help=False, allow_abbrev=False)
    # --plugin's abbreviations, as the commands' parse takes them (no other option starts with --pl)
    scan.add_argument(*(f"--{'plugin'[:n]}" for n in range(6, 1, -1)), dest="plugin", action="append", default=[])
    scan.add_argument("-h", "--help", action="store_true")
    found = scan.parse_known_args(argv)[0]
    command = argv[0] if argv else None
    if found.help:
        if command in PLUGIN_COMMANDS:
            try:
                _load(found.plugin, installed=True)
            except SystemExit as e:
                if e.code == EXIT_INTERRUPTED:
                    raise
                _say("bpo-jax: the help below is without the plug-ins (see the error above)")
        return
    if found.plugin and command in ("plot", "report", "llm"):
        need = "trains its own algorithms (gbpo, grpo)" if command == "llm" else "reads the runs' saved files"
        raise SystemExit(_fail(f"{command} takes no --plugin: it {need} and needs no plug-in; drop it "
                               f"(--plugin is for {', '.join(PLUGIN_COMMANDS)})"))
    if command in PLUGIN_COMMANDS:  # else the parse says what is wrong
        _load(found.plugin, installed=True)


def _load(specs: Sequence[str], installed: bool = False) -> None:
    """Import the plug-ins ``specs`` (a no-op for those loaded already), after the installed ones
    where ``installed``; a failure or a Ctrl-C ends the command in one line.  A Ctrl-C stops a
    plug-in's import at once."""
    from bpo_jax import plugins

    what, failure = "the installed plug-ins", None
    with interrupts_never_lost(every_press=True) as pressed:  # a plug-in's import may hang (a network call)
        try:
            if installed:
                plugins.load_installed()
            for spec in specs:
                what = f"the plug-in {spec}"
                plugins.load(spec)
        except KeyboardInterrupt:  # pressed, or raised by the plug-in itself
            pressed.append(signal.SIGINT)
        except plugins.PluginError as e:
            failure = e
    if pressed:  # also where the import turned the interrupt into an error, or dropped it
        raise SystemExit(_fail(f"interrupted while loading {what}; nothing was run or written", EXIT_INTERRUPTED))
    if failure is not None:
        if os.environ.get("BPO_JAX_DEBUG"):
            raise failure
        raise SystemExit(_fail(str(failure)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        with interrupt_deferred() as pressed:  # building the parser imports the suites' modules: seconds
            argv = list(sys.argv[1:] if argv is None else argv)
            _load_plugins(argv)
            args = parse_args(argv)
            args.argv = argv  # the command as typed, for the hint that starts a run again
    except SystemExit as e:  # --help, or a usage error already told in one line
        return e.code if isinstance(e.code, int) else 0
    if pressed:
        return _fail("interrupted while starting; nothing was run or written", EXIT_INTERRUPTED)
    if getattr(args, "out", None) == "":
        return _fail("--out is empty; name where to write")
    if getattr(args, "resume", None) == "":  # read as no --resume: a fresh run started
        return _fail("--resume is empty; name the run directory (or checkpoint) to resume")
    commands = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "envs": cmd_envs, "presets": cmd_presets, "sweep": cmd_sweep,
                "plot": cmd_plot, "report": cmd_report, "llm": cmd_llm}
    with interrupts_never_lost():  # the messages below too: a second Ctrl-C must not cut them short
        try:
            return commands[args.command](args)
        except KeyboardInterrupt:  # commands with something to resume say more themselves
            return _fail("interrupted", EXIT_INTERRUPTED)
        except urllib.error.URLError as e:  # an OSError: a library fetching data on first use, offline
            return _fail(f"network error: {first_line(e)} (this environment downloads data on first use; "
                         "connect once, or choose another --env)", EXIT_FAILURE)
        except OSError as e:  # the file system refused what every check before allowed (disk full, a mount gone)
            if os.environ.get("BPO_JAX_DEBUG"):
                raise
            where = f"{e.filename}: " if e.filename else ""
            return _fail(f"file system error: {where}{e.strerror or first_line(e)}", EXIT_FAILURE)


def entry() -> None:
    """The ``bpo-jax`` command.  After an interrupt the process leaves at once: its files are
    closed by then, and a normal interpreter exit while XLA still runs the interrupted program
    on its own threads can abort ("terminate called ...") after the one-line message.  A Ctrl-C
    once the command has ended (a second one, just after the first's message) has nothing left to
    stop: it is ignored, where Python's handler, back by then, printed a traceback."""
    code = EXIT_INTERRUPTED
    try:
        code = main()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # came as main returned, after the command's own last line
        pass
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
