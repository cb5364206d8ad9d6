"""``bpo-jax llm``: warm start and RL-fine-tune the small transformer on two-digit addition.

    bpo-jax llm --algo gbpo|grpo [--ttrl] [--epochs N] [--clip C] [--seeds S] [--out DIR [--overwrite]] ...

Writes ``DIR/seed{S}/curve.csv``, ``DIR/summary.json`` and ``DIR/curves.png``.  As ``bpo-jax
train``: bad input (settings, a --out that is a file or a non-empty directory without
--overwrite) is one line naming the flag, exit 2, before anything is written; a run stopped by a
NaN is one line naming the step and seed, exit 1, and its directory keeps an INCOMPLETE file
saying so.  The trainer is imported only when the subcommand runs, so ``bpo-jax train`` never
pays for it.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

from bpo_jax.console import say
from bpo_jax.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, first_line, in_words

# flag -> LLMConfig field, for the flags that set a field directly.
_FIELDS = {"algo": "algo", "ttrl": "ttrl", "seed": "seed", "epochs": "epochs", "clip": "clip",
           "clip_high": "clip_high", "minibatches": "minibatches", "lr": "lr", "steps": "rl_steps",
           "prompts": "prompts_per_step", "group_size": "group_size", "ttrl_votes": "ttrl_votes",
           "ttrl_train": "ttrl_train", "temperature": "temperature", "top_p": "top_p",
           "gbpo_temperature": "gbpo_temperature", "kl_coef": "kl_coef", "kl_type": "kl_type",
           "ent_coef": "ent_coef", "agg_mode": "agg_mode", "max_grad_norm": "max_grad_norm",
           "eval_every": "eval_every", "num_eval": "num_eval",
           "warm_acc": "warm_target", "warm_lr": "warm_lr", "layers": "num_layers", "d_model": "d_model", "fast_compile": "fast_compile",
           "matmul_precision": "matmul_precision"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``llm`` subcommand to an argparse subparsers object; returns its parser."""
    from bpo_jax.config import MATMUL_PRECISIONS
    from bpo_jax.llm import losses

    p = subparsers.add_parser(
        "llm", help="GBPO / GRPO fine-tuning of a small transformer (verifiable rewards or TTRL)",
        description="Supervised warm start of a small decoder-only transformer on two-digit addition to partial "
                    "accuracy, then RL with GBPO or GRPO: groups of sampled answers per prompt, rewards from the "
                    "checker (or, with --ttrl, agreement with the majority vote), several epochs per batch.")
    add = lambda flag, **kw: p.add_argument(flag, **kw)
    add("--algo", choices=losses.ALGOS, default="gbpo", help="gbpo (the paper's) or grpo (default: gbpo)")
    add("--ttrl", action="store_true", help="test-time RL: majority-vote pseudo-labels, no true labels")
    add("--epochs", type=int, default=5, metavar="N", help="epochs over each sampled batch (default: 5)")
    add("--clip", type=float, default=0.2, metavar="C", help="ratio box [1-C, 1+C] (default: 0.2)")
    add("--clip-high", type=float, default=None, metavar="C", help="upper offset if asymmetric (default: --clip)")
    add("--seeds", type=int, default=1, metavar="S", help="seeds run one after another from --seed (default: 1)")
    add("--seed", type=int, metavar="N", default=0, help="first seed (default: 0)")
    add("--out", default=None, metavar="DIR",
        help="output directory (default: llm_runs/<algo>[-ttrl]-e<N>-c<C>, with a -1, -2, ... suffix if that exists)")
    add("--overwrite", action="store_true", help="replace a non-empty --out directory (deleted when the run starts)")
    add("--steps", type=int, default=30, metavar="N", help="RL steps (default: 30)")
    add("--lr", type=float, metavar="X", default=1e-4, help="RL Adam learning rate (default: 1e-4)")
    add("--max-grad-norm", type=float, default=1.0, metavar="X",
        help="global gradient-norm clip of the warm start and RL steps (default: 1.0)")
    add("--minibatches", type=int, metavar="N", default=4, help="minibatches per epoch (default: 4)")
    add("--prompts", type=int, default=16, metavar="P", help="prompts per RL step (default: 16)")
    add("--group-size", type=int, default=8, metavar="G", help="responses per prompt (default: 8)")
    add("--ttrl-votes", type=int, default=16, metavar="N", help="TTRL: responses sampled for the vote (default: 16)")
    add("--ttrl-train", type=int, default=8, metavar="M", help="TTRL: the first M are trained on (default: 8)")
    add("--temperature", type=float, metavar="X", default=1.0, help="rollout temperature (default: 1.0)")
    add("--top-p", type=float, metavar="P", default=1.0, help="rollout nucleus threshold (default: 1.0, off)")
    add("--gbpo-temperature", type=float, default=1e-4, metavar="TAU", help="GBPO target temperature (default: 1e-4)")
    add("--kl-coef", type=float, metavar="X", default=0.001, help="KL penalty to the warm-start policy (default: 0.001)")
    add("--kl-type", choices=losses.KL_TYPES, default="low_var_kl", help="KL estimator (default: low_var_kl)")
    add("--ent-coef", type=float, metavar="X", default=0.0, help="entropy bonus (default: 0)")
    add("--agg-mode", choices=losses.AGG_MODES, default="token-mean", help="loss aggregation (default: token-mean)")
    add("--eval-every", type=int, default=5, metavar="N", help="greedy evaluation every N RL steps (default: 5)")
    add("--num-eval", type=int, default=64, metavar="N", help="evaluation (and RL) problems (default: 64)")
    add("--warm-acc", type=float, default=0.2, metavar="A", help="warm start stops at this accuracy on its training pool (default: 0.2)")
    add("--warm-lr", type=float, metavar="X", default=1e-3, help="warm-start Adam learning rate (default: 1e-3)")
    add("--layers", type=int, metavar="N", default=1, help="transformer blocks (default: 1)")
    add("--d-model", type=int, metavar="N", default=64, help="transformer width (default: 64)")
    add("--fast-compile", action=argparse.BooleanOptionalAction, default=True,
        help="cheap XLA compilation, good for a CPU (default: on)")
    add("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
        help="float32 matmuls on GPUs/TPUs; default allows TF32 (default: highest; no effect on CPUs)")
    add("--resume", metavar="DIR", help=argparse.SUPPRESS)  # to say why there is none (train's flag)
    return p


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    say(f"bpo-jax: error: {message}")
    return code


@functools.lru_cache(maxsize=1)
def _flags() -> dict[str, str]:
    """Library name -> this subcommand's flag: each argparse destination (``seeds``) and each
    LLMConfig field a flag sets (``rl_steps`` -> ``--steps``), read from the parser itself."""
    parser = add_parser(argparse.ArgumentParser(add_help=False).add_subparsers())
    by_dest = {a.dest: next(o for o in a.option_strings if o.startswith("--"))
               for a in parser._actions if a.option_strings and a.dest != "help"}
    return {**by_dest, **{field: by_dest[dest] for dest, field in _FIELDS.items()}}


def worded(message: str) -> str:
    """A library message in this command's words: the names it writes in backticks (`rl_steps`)
    become flags (--steps); a name no flag sets loses its backticks."""
    return in_words(message, _flags().get)


def config_from_args(args):
    from bpo_jax.llm.trainer import LLMConfig

    return LLMConfig(**{field: getattr(args, flag) for flag, field in _FIELDS.items()}, num_train=2048)


def default_out(cfg) -> str:
    """llm_runs/<algo>[-ttrl]-e<N>-c<C>, with a suffix if that exists already (never an earlier run)."""
    base = f"llm_runs/{cfg.algo}{'-ttrl' if cfg.ttrl else ''}-e{cfg.epochs}-c{cfg.clip}"
    path, i = base, 1
    while os.path.lexists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def check_out(out: str, overwrite: bool) -> None:
    """Before any work, as ``bpo-jax train`` checks its --out: a directory that can be created,
    empty unless ``overwrite``.  Raises OutputDirError (names in backticks)."""
    from bpo_jax import reporting

    try:
        reporting.check_output_dir(out, overwrite)
    except reporting.OutputDirError:
        if out and reporting.is_incomplete(out):  # train's hint names `bpo-jax train --resume`; an llm run cannot resume
            raise reporting.OutputDirError(f"output directory {out!r} exists and is not empty (it holds an unfinished "
                                           f"run); set `overwrite` to replace it or choose another `out`") from None
        raise


def run(args) -> int:
    """Run ``bpo-jax llm``; returns the exit code.  Bad input is one line on stderr, code 2,
    before anything is written; a run that stops (a NaN, Ctrl-C) is one line, code 1 (130),
    and its directory's INCOMPLETE file says the same.  The command runs inside
    :func:`bpo_jax.errors.interrupts_never_lost`: a Ctrl-C stops it once, however it lands."""
    from bpo_jax.llm import trainer

    if args.resume is not None:
        return _fail("llm runs do not resume (a run's seeds are minutes each): start it again with --overwrite")
    try:
        cfg = config_from_args(args)
        cfg.validate(len(trainer.make_mesh().devices.flat))
        trainer.check_seeds(cfg, args.seeds)
        trainer.check_memory(cfg)
        out = default_out(cfg) if args.out is None else args.out
        check_out(out, args.overwrite)
    except (ValueError, TypeError) as e:
        return _fail(worded(first_line(e)))
    try:
        summary = trainer.run(cfg, args.seeds, out, log=lambda line: say(worded(line)),
                              overwrite=args.overwrite, words=worded)
    except KeyboardInterrupt as e:
        return _fail(worded(trainer.stop_note(e, out, cfg)), EXIT_INTERRUPTED)
    except Exception as e:
        if os.environ.get("BPO_JAX_DEBUG") and not isinstance(e, trainer.NonFiniteError):
            raise  # the full traceback, for a bug report
        return _fail(worded(trainer.stop_note(e, out, cfg)), EXIT_FAILURE)
    say(f"accuracy {summary['accuracy_before_mean']:.3f} -> {summary['accuracy_after_mean']:.3f} "
        f"(mean over {args.seeds} seed(s)); wrote {os.path.join(out, '')}{{summary.json,curves.png,seed*/curve.csv}}",
        sys.stdout)
    return 0
