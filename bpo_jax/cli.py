"""``bpo-jax``: command line.  Parses arguments, reports errors in one line, calls the runner.

    bpo-jax train [--preset paper/Hopper-v4] [--env gymnax/CartPole-v1] [--algo bpo|ppo] [--seeds N]
                  [--out DIR] [--<hyperparameter> V ...]
    bpo-jax envs [--suite gymnax]
    bpo-jax presets
"""
from __future__ import annotations

import argparse
import dataclasses
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


def _add_config_arguments(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
        default = defaults.get(f.name, f.default)
        help_text = f"{f.metadata['help']} (default: {_show(default)})"
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


def build_parser(defaults: Optional[dict[str, Any]] = None) -> argparse.ArgumentParser:
    """The argument parser; ``defaults`` (a preset's values) replace Config's defaults."""
    parser = argparse.ArgumentParser(prog="bpo-jax", description="Bounded Policy Optimization and PPO in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="{train,envs,presets}")
    sub.required = True

    train = sub.add_parser(
        "train", help="train BPO or PPO (default: BPO on gymnax/CartPole-v1, 3 seeds)",
        description="Train N seeds as one compiled, vmapped program and write config.json, "
                    "metrics.csv, summary.json and curve.png.",
    )
    run = train.add_argument_group("run")
    run.add_argument("--preset", default=None, metavar="NAME",
                     help="start from a named configuration, e.g. paper/Hopper-v4 (see `bpo-jax presets`); "
                          "explicit flags override it")
    run.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds trained together as one vmapped program (default: 3)")
    run.add_argument("--out", default=None, metavar="DIR", help="output directory (default: a fresh runs/<env>__<algo>__<time>)")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    run.add_argument("--reports", type=int, default=20, metavar="N", help="progress reports per run (default: 20)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="do not use the persistent XLA compilation cache (~/.cache/bpo-jax/xla or $BPO_JAX_CACHE_DIR)")
    _add_config_arguments(train.add_argument_group("configuration and hyperparameters"), defaults or {})

    envs = sub.add_parser("envs", help="list environment ids")
    envs.add_argument("--suite", default=None, help="only this suite")
    sub.add_parser("presets", help="list named configurations")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse twice when a preset is named: the preset (for the chosen --algo) only replaces
    defaults, so every explicit flag still wins over it."""
    from bpo_jax import presets

    args = build_parser().parse_args(argv)
    if args.command != "train" or args.preset is None:
        return args
    try:
        values = presets.resolve(args.preset, args.algo)
    except presets.PresetError as e:
        print(f"bpo-jax: error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return build_parser(values).parse_args(argv)


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


def cmd_train(args) -> int:
    from bpo_jax import envs, reporting, runner

    config = _config_from_args(args)
    try:
        config.validate()
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
        if args.reports < 1:
            raise ConfigError(f"--reports must be >= 1, got {args.reports}")
        # Unknown ids, bad env options and missing suite packages fail here, before any compile.
        envs.make(config.env, num_envs=1, **config.env_kwargs())
        out = args.out or reporting.default_run_dir(config)
        reporting.check_output_dir(out, args.overwrite)
    except (ConfigError, ValueError, ImportError, reporting.OutputDirError) as e:
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)

    if not args.no_compile_cache:
        runner.enable_compilation_cache()
    label = f"{config.algo} {config.env}"
    print(f"[{label}] {args.seeds} seed(s) x {config.num_updates} updates x {config.batch_size} steps; compiling...",
          file=sys.stderr, flush=True)
    progress = None if args.quiet else reporting.ProgressPrinter(label)
    try:
        result = runner.run(config, num_seeds=args.seeds, progress=progress, reports=args.reports)
        info = reporting.write_run(result, out, overwrite=args.overwrite)
    except runner.NonFiniteError as e:
        return _fail(f"{e}; nothing was written", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was written", 130)
    print(
        f"[{label}] final return {info['final_episode_return']:.2f} (mean over seeds, last 10% of episodes) | "
        f"compile {info['compile_seconds']:.1f}s | train {info['train_seconds']:.1f}s | "
        f"{info['steps_per_second']:,.0f} steps/s",
        file=sys.stderr,
    )
    print(f"wrote {out}/{{config.json,metrics.csv,summary.json,curve.png}}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return {"train": cmd_train, "envs": cmd_envs, "presets": cmd_presets}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
