"""`bpo-jax llm`'s input handling: bad input is one line naming the flag, exit 2, before any work
and with nothing written; --out is checked as `bpo-jax train` checks it (a file, a non-empty
directory without --overwrite, ''); a NaN stops the run with one line (step, seed, remedy),
exit 1, and leaves the run directory marked unfinished."""
import argparse
import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from bpo_jax import cli
from bpo_jax.llm import cli as llm_cli
from bpo_jax.llm import trainer

# The smallest run that exercises every phase: no warm-start steps (--warm-acc 0), one tiny
# RL step; about 10 s on a 2-core CPU, most of it compiling.
TINY = ["llm", "--warm-acc", "0", "--num-eval", "16", "--prompts", "4", "--group-size", "4", "--minibatches", "2",
        "--epochs", "1", "--d-model", "16", "--layers", "1", "--steps", "1"]
SNAKE_CASE = re.compile(r"\b[a-z]+_[a-z0-9_]+\b")  # a field name (rl_steps) where a flag (--steps) belongs

# LLMConfig fields no flag sets: the command line runs them at fixed values (num_train=2048) or
# the defaults, which pass validation.
NOT_ON_THE_COMMAND_LINE = {"data_seed", "num_train", "rl_on_eval", "warm_max_steps", "warm_lr", "warm_batch",
                           "warm_check_every", "num_heads"}


def _error(capsys, progress: bool = False) -> str:
    """The one error line on stderr (after the run's progress lines, with ``progress``)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    if progress:
        assert all(not line.startswith("bpo-jax:") for line in lines[:-1]), err
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("bpo-jax: error: "), err
    return lines[0]


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if the run starts: the input checks must refuse before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run started despite bad input")
    monkeypatch.setattr(trainer, "run", refuse)
    monkeypatch.setattr(trainer, "warm_start", refuse)


@pytest.mark.parametrize("argv,flag", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--group-size", "1"], "--group-size must be >= 2 (the advantages compare a prompt's responses), got 1"),
    (["--warm-acc", "1.5"], "--warm-acc must be in [0, 1], got 1.5"),
    (["--ttrl", "--ttrl-train", "8", "--ttrl-votes", "4"], "--ttrl-train (8) must be <= --ttrl-votes (4)"),
    (["--ttrl-votes", "8"], "--ttrl-votes applies only with --ttrl"),  # would be silently ignored
    (["--algo", "grpo", "--gbpo-temperature", "0.1"], "--gbpo-temperature applies only with --algo gbpo"),
    (["--kl-type", "k1", "--kl-coef", "0"], "--kl-type k1 has no effect with --kl-coef 0"),
    (["--ttrl-train", "4"], "--ttrl-train applies only with --ttrl"),
    (["--ttrl", "--group-size", "4"], "--group-size applies only without --ttrl"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--prompts", "0"], "--prompts must be >= 1"),
    (["--group-size", "0"], "--group-size must be >= 1"),
    (["--layers", "0"], "--layers must be >= 1"),
    (["--num-eval", "0"], "--num-eval must be >= 1"),
    (["--eval-every", "0"], "--eval-every must be >= 1"),
    (["--d-model", "10"], "--d-model must be a multiple of 4"),
    (["--num-eval", "9000"], "--num-eval must be <= 7952"),
    (["--prompts", "40", "--num-eval", "32"], "--prompts (40) must be <= --num-eval (32)"),
    (["--minibatches", "3"], "--prompts x --group-size = 128 responses must divide into --minibatches (3)"),
    (["--ttrl", "--minibatches", "3"], "--prompts x --ttrl-train = 128 responses must divide into --minibatches"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr", "inf"], "--lr must be finite"),
    (["--temperature", "nan"], "--temperature must be finite"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--gbpo-temperature", "0"], "--gbpo-temperature must be > 0"),
    (["--max-grad-norm", "0"], "--max-grad-norm must be > 0"),
    (["--clip", "1.5"], "--clip must be in [0, 1)"),
    (["--clip-high", "-1"], "--clip-high must be >= 0"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--kl-coef", "-1"], "--kl-coef must be >= 0"),
    (["--ent-coef", "-1"], "--ent-coef must be >= 0"),
    (["--seed", "-1"], "--seed must be in [0, 2**32)"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--seed", "4294967295", "--seeds", "2"], "--seed + --seeds must be <= 2**32"),
    # Past int32 a run failed half-way (--epochs 3e9: an OverflowError after the warm start).
    (["--epochs", "3000000000"], "--epochs must be below 2**31, got 3,000,000,000"),
    (["--steps", str(2**31)], "--steps must be below 2**31"),
    (["--eval-every", str(2**31)], "--eval-every must be below 2**31"),
    (["--d-model", str(2**32)], "--d-model must be below 2**31"),
    (["--group-size", str(2**31 - 1)], "--prompts x --group-size = 34,359,738,352 sampled responses per step must "
                                       "be below 2**31"),
    (["--epochs", str(2**31 - 1)], "--epochs x the batch of 128 responses"),  # out of memory after the warm start
    # Past float32 a setting became inf or 0 in the programs: a NaN later, blamed on --lr.
    (["--clip-high", "1e300"], "--clip-high = 1e+300 is past float32's range (±3.4e38)"),
    (["--kl-coef=-1e39"], "--kl-coef = -1e+39 is past float32's range"),
    (["--max-grad-norm", "1e39"], "--max-grad-norm = 1e+39 is past float32's range"),  # inf is allowed: no clipping
    (["--lr", "1e-40"], "--lr = 1e-40 is below float32's smallest normal number (1.2e-38), which XLA flushes to 0"),
    (["--ent-coef", "1e-40"], "--ent-coef = 1e-40 is below float32's smallest normal number"),
    (["--clip", "0.999999999"], "--clip must be in [0, 1), got 0.999999999, which float32"),
    (["--temperature", "1e-30"], "--temperature must be >= 1e-05"),
])
def test_bad_input_names_the_flag_in_one_line(argv, flag, capsys, no_run):
    assert cli.main(["llm", *argv]) == 2
    err = _error(capsys)
    assert err.startswith("bpo-jax: error: ") and flag in err, err
    assert "`" not in err and not SNAKE_CASE.search(err), err


def test_out_of_range_seeds_write_nothing(tmp_path, capsys, no_run):
    """Refused up front as bad input (exit 2), not reported as a stopped run of a directory that
    the library refuses before creating (it checks the same, in its own words)."""
    out = tmp_path / "run"
    assert cli.main([*TINY, "--seed", str(2**32 - 1), "--seeds", "2", "--out", str(out)]) == 2
    err = _error(capsys)
    assert err == "bpo-jax: error: --seed + --seeds must be <= 2**32 (seeds 4294967295..4294967296), got 4294967297"
    assert not out.exists()
    with pytest.raises(ValueError, match=r"^`seed` \+ `seeds` must be <= 2\*\*32"):
        trainer.check_seeds(trainer.LLMConfig(seed=2**32 - 1), 2)


def test_library_sizes_past_int32_are_refused():
    """The settings no flag sets take the same bounds as those that one does."""
    with pytest.raises(ValueError, match=r"^`warm_max_steps` must be below 2\*\*31, got 2,147,483,648$"):
        trainer.LLMConfig(warm_max_steps=2**31).validate()
    with pytest.raises(ValueError, match=r"^`warm_batch` must be below 2\*\*31"):
        trainer.LLMConfig(warm_batch=2**31).validate()
    # Drawn without replacement from the training pool: more prompts than it holds failed at RL step 1.
    with pytest.raises(ValueError, match=r"^`prompts_per_step` \(64\) must be <= `num_train` \(32\)"):
        trainer.LLMConfig(rl_on_eval=False, num_train=32, prompts_per_step=64).validate()


def test_every_setting_the_command_line_sets_has_its_flag():
    """The rewording reads the parser itself: each LLMConfig field is set by a flag that
    exists (or is one the command line never sets), and `name` -> that flag."""
    parser = llm_cli.add_parser(argparse.ArgumentParser().add_subparsers())
    options = {o for a in parser._actions for o in a.option_strings}
    for f in dataclasses.fields(trainer.LLMConfig):
        if f.name in NOT_ON_THE_COMMAND_LINE:
            continue
        flag = llm_cli.worded(f"`{f.name}`")
        assert flag in options, (f.name, flag)
    assert llm_cli.worded("`rl_steps` and `warm_target`, `seeds`, `out`, `overwrite`") == \
        "--steps and --warm-acc, --seeds, --out, --overwrite"
    assert llm_cli.worded("`num_train`") == "num_train"  # no flag: the name, without backticks


@pytest.mark.parametrize("changes,message", [
    (dict(epochs=2.0), "`epochs` must be an integer, got 2.0"),  # failed in JAX, after `out` existed
    (dict(seed=1.5), "`seed` must be an integer, got 1.5"),
    (dict(fast_compile="no"), "`fast_compile` must be true or false, got 'no'"),  # was truthy: on
    (dict(algo=None), "`algo` must be a string, got None"),  # an AttributeError
])
def test_library_settings_of_the_wrong_type_are_named(changes, message):
    with pytest.raises(TypeError) as e:
        trainer.LLMConfig(**changes).validate()
    assert str(e.value) == message


def test_numpy_scalars_are_taken_as_the_numbers_they_hold():
    c = trainer.LLMConfig(lr=np.float32(0.5), epochs=np.int64(3), ttrl=np.bool_(True))
    assert (type(c.lr), type(c.epochs), type(c.ttrl)) == (float, int, bool)
    assert c == trainer.LLMConfig(lr=float(np.float32(0.5)), epochs=3, ttrl=True)
    with pytest.raises(ValueError, match="^`lr` must be finite, got inf$"):  # passed the finiteness check once
        trainer.LLMConfig(lr=np.float32("inf")).validate()
    with pytest.raises(TypeError, match=r"^`epochs` must be an integer, got 2\.0$"):
        trainer.LLMConfig(epochs=np.float64(2.0)).validate()


@pytest.mark.parametrize("seeds", [1.5, True, "1", None])
def test_library_seed_counts_of_the_wrong_type_are_named(seeds):
    with pytest.raises(TypeError, match=f"^`seeds` must be an integer, got {re.escape(repr(seeds))}$"):
        trainer.check_seeds(trainer.LLMConfig(), seeds)


def test_library_messages_name_fields_in_backticks():
    with pytest.raises(ValueError, match="^`rl_steps` must be >= 1, got 0$"):
        trainer.LLMConfig(rl_steps=0).validate()
    with pytest.raises(ValueError, match=r"^`ttrl_train` \(8\) must be <= `ttrl_votes` \(4\)"):
        trainer.LLMConfig(ttrl=True, ttrl_train=8, ttrl_votes=4).validate()
    with pytest.raises(ValueError, match="^`warm_lr` must be finite"):
        trainer.LLMConfig(warm_lr=float("nan")).validate()


def test_out_that_is_a_file_is_refused(tmp_path, capsys, no_run):
    path = tmp_path / "afile"
    path.write_text("mine")
    assert cli.main([*TINY, "--out", str(path)]) == 2
    err = _error(capsys)
    assert "is a file; choose a directory" in err, err
    assert path.read_text() == "mine"
    assert cli.main([*TINY, "--out", str(path / "sub")]) == 2
    assert "is a file; choose another directory" in _error(capsys)


@pytest.mark.parametrize("direct", [False, True])
def test_empty_out_is_refused(direct, tmp_path, capsys, monkeypatch, no_run):
    monkeypatch.chdir(tmp_path)
    if direct:  # the subcommand's own check, whatever the top-level command line does first
        assert llm_cli.run(cli.build_parser().parse_args([*TINY, "--out", ""])) == 2
    else:
        assert cli.main([*TINY, "--out", ""]) == 2
    err = _error(capsys)
    assert "--out" in err and "`" not in err, err
    assert os.listdir(tmp_path) == []


def test_settings_too_large_for_the_memory_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """A group size of 30 million made the folder, then stopped with a MemoryError and the advice
    to start it again as it was."""
    from bpo_jax import runner

    monkeypatch.setattr(runner, "memory_bytes", lambda: 2**30)
    out = tmp_path / "big"
    assert cli.main([*TINY, "--prompts", "4", "--group-size", "8192", "--out", str(out)]) == 2
    assert _error(capsys) == ("bpo-jax: error: these settings need more than 4.0 GiB (the training state of --d-model "
                              "16 x --layers 1, the key-value cache of 32,768 responses sampled a step and the group "
                              "statistics of 32,768 trained), more than the 1.0 GiB of memory here; lower --prompts, "
                              "--group-size, --d-model or --layers")
    assert not out.exists()
    with pytest.raises(ValueError, match="lower `prompts_per_step`, `group_size`, `d_model` or `num_layers`$"):
        trainer.run(trainer.LLMConfig(prompts_per_step=4, group_size=8192), 1, str(out))
    assert not out.exists()
    # 50 million votes a prompt (their key-value cache: 238 GiB; 8 responses trained) and a model
    # too wide for its training state passed the check, then met a MemoryError after the folder
    # was made (or the kernel's OOM killer, without a word).
    for fields, argv, what in (
            (dict(ttrl=True, ttrl_votes=50_000_000, ttrl_train=2), ["--ttrl", "--ttrl-votes", "50000000", "--ttrl-train",
                                                                   "2"], "the key-value cache of 200,000,000 responses"),
            (dict(d_model=2048, num_layers=2), ["--d-model", "2048", "--layers", "2"],  # parameters 0.4 GiB, state 1.5
             "the training state of --d-model 2048 x --layers 2")):
        with pytest.raises(ValueError, match="more than the 1.0 GiB of memory here"):  # first: the run would start
            trainer.check_memory(trainer.LLMConfig(prompts_per_step=4, **fields))
        at = TINY.index("--group-size")
        plain = TINY[:at] + TINY[at + 2:] if "--ttrl" in argv else TINY  # TTRL's groups are its votes
        assert cli.main([*plain, *argv, "--out", str(out)]) == 2
        assert what in _error(capsys)
        assert not out.exists()
    # Out of memory all the same (the bound is a lower one): the note says to lower them too.
    assert "lower `prompts_per_step`, `group_size`, `d_model` or `num_layers` and start it again with `overwrite`" \
        in trainer.stop_note(MemoryError("Unable to allocate 42.9 GiB"), str(out))
    assert ": start it again with `overwrite`" in trainer.stop_note(RuntimeError("disk full"), str(out))
    ttrl = trainer.LLMConfig(ttrl=True)  # whose group sizes are the vote's
    assert "lower `prompts_per_step`, `ttrl_votes`, `ttrl_train`, `d_model` or `num_layers` and start it again" in \
        trainer.stop_note(MemoryError("Unable to allocate"), str(out), ttrl)


def test_non_empty_out_is_refused_without_overwrite(tmp_path, capsys, no_run):
    (tmp_path / "summary.json").write_text("{}")
    assert cli.main([*TINY, "--out", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "exists and is not empty; set --overwrite or choose another --out" in err, err
    assert os.listdir(tmp_path) == ["summary.json"] and (tmp_path / "summary.json").read_text() == "{}"
    # An unfinished llm run: no `train --resume` hint (an llm run cannot resume).
    (tmp_path / "INCOMPLETE").write_text("stopped")
    assert cli.main([*TINY, "--out", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "unfinished" in err and "--overwrite" in err and "resume" not in err, err


def test_nan_stops_the_run_then_overwrite_replaces_it(tmp_path, capsys):
    """lr 1e6: the first update's gradients are NaN.  The run stops there (exit 1, one line
    naming step, seed and remedy), writes no curve, summary or figure, and leaves INCOMPLETE
    saying the same; --overwrite then replaces the directory with a finished run, and a run
    into it without --overwrite is refused.  TTRL, so that the untrained model's first update
    has non-zero advantages whatever it samples (with verifiable rewards it may score nothing, no
    gradient, no NaN: so it did on 2 CPU devices, as after a `bpo-jax train` test in the same
    process had made the cores devices)."""
    out = tmp_path / "run"
    nan = ["llm", "--ttrl", "--ttrl-votes", "4", "--ttrl-train", "4", "--warm-acc", "0", "--num-eval", "16",
           "--prompts", "4", "--minibatches", "2", "--epochs", "1", "--d-model", "16", "--layers", "1"]
    assert cli.main([*nan, "--steps", "2", "--eval-every", "1", "--lr", "1e6", "--out", str(out)]) == 1
    err = _error(capsys, progress=True)
    assert "non-finite" in err and "RL step 1 (seed 0)" in err and "--lr" in err and "--max-grad-norm" in err, err
    assert "`" not in err and not SNAKE_CASE.search(err.replace(str(out), "OUT")), err
    assert sorted(os.listdir(out)) == ["INCOMPLETE", "config.json"]
    note = (out / "INCOMPLETE").read_text()
    assert err.removeprefix("bpo-jax: error: ") in note

    assert cli.main([*TINY, "--out", str(out)]) == 2  # the stopped run is not silently replaced
    assert "--overwrite" in _error(capsys)

    assert cli.main([*TINY, "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(out)) == ["config.json", "curves.png", "seed0", "summary.json"]
    rows = list(csv.DictReader(open(out / "seed0" / "curve.csv")))
    assert len(rows) == 2
    values = [float(v) for row in rows for k, v in row.items() if v != "" and k != "step"]
    assert np.isfinite(values).all()

    before = (out / "summary.json").read_text()
    assert cli.main([*TINY, "--out", str(out)]) == 2  # a finished run is not silently replaced either
    assert "exists and is not empty; set --overwrite" in _error(capsys)
    assert (out / "summary.json").read_text() == before
    assert json.loads((out / "config.json").read_text())["seeds"] == 1  # what made it
    assert json.loads((out / "config.json").read_text())["kind"] == "llm"
    # plot and report leave llm runs out (their curves are no RL run's), finished or not.
    (out / "INCOMPLETE").write_text("stopped")
    assert cli.main(["plot", str(tmp_path), "--out", str(tmp_path / "f.png")]) == 2
    assert "holds no finished run" in _error(capsys) and not (tmp_path / "f.png").exists()
    (out / "INCOMPLETE").unlink()
    # A folder holding llm runs, or one of a run's seed folders, is not deleted by an --overwrite
    # (an llm run wrote no config.json: `--out runs --overwrite` deleted every one).
    for target, why in ((tmp_path, "a folder holding runs (such as run)"),
                        (out / "seed0", f"a folder of the run in {str(out)!r}")):
        assert cli.main([*TINY, "--out", str(target), "--overwrite"]) == 2
        assert why in _error(capsys)
        assert (out / "summary.json").read_text() == before


def test_nan_from_the_last_update_stops_the_run(tmp_path, capsys):
    """lr 1e30: one Adam step leaves finite parameters of about 1e30 whose log-probs are NaN.  The
    update's metrics are of the parameters before its step, so when that step is the run's last
    the NaN went unseen: exit 0, accuracy 0, a written summary.  TTRL's vote gives the untrained
    model non-zero advantages (verifiable rewards give it none: no gradient, no step)."""
    out = tmp_path / "run"
    argv = ["llm", "--ttrl", "--ttrl-votes", "4", "--ttrl-train", "4", "--prompts", "4", "--minibatches", "1",
            "--epochs", "1", "--num-eval", "8", "--warm-acc", "0", "--eval-every", "1", "--d-model", "16",
            "--steps", "1", "--lr", "1e30", "--out", str(out)]
    assert cli.main(argv) == 1
    err = _error(capsys, progress=True)
    assert "non-finite" in err and "RL step 1 (seed 0)" in err and "--lr" in err, err
    assert sorted(os.listdir(out)) == ["INCOMPLETE", "config.json"]
    assert err.removeprefix("bpo-jax: error: ") in (out / "INCOMPLETE").read_text()


def test_check_finite_names_step_and_seed():
    good = {"loss": np.zeros((1, 2)), "grad_norm": np.ones((1, 2))}
    trainer.check_finite(good, 3, 7)
    with pytest.raises(trainer.NonFiniteError, match=r"at RL step 3 \(seed 7\); lower `lr` or `max_grad_norm`"):
        trainer.check_finite({**good, "grad_norm": np.array([[1.0, np.nan]])}, 3, 7)
    with pytest.raises(trainer.NonFiniteError):
        trainer.check_finite({**good, "loss": np.array([[np.inf, 0.0]])}, 3, 7)


def test_a_warm_start_short_of_its_target_says_so():
    cfg = trainer.LLMConfig(warm_check_every=2, warm_max_steps=2, warm_target=1.0, num_eval=16, num_train=256,
                            warm_batch=16, d_model=16, num_layers=1, fast_compile=True)
    lines = []
    _, info = trainer.warm_start(cfg, trainer.make_problem_sets(cfg), log=lines.append)
    assert info["steps"] == 2 and info["dev_accuracy"] < 1
    assert lines[-1] == (f"note: the warm start reached dev accuracy {info['dev_accuracy']:.3f}, not `warm_target` 1, "
                         "in its `warm_max_steps` 2 steps; RL goes on from there")


def test_a_run_stopped_while_its_figure_is_drawn_writes_no_summary(tmp_path, capsys, monkeypatch):
    """summary.json was written before curves.png: a Ctrl-C in between left a finished run's
    summary in an INCOMPLETE folder."""
    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "plot", pressed)
    out = tmp_path / "run"
    assert cli.main([*TINY, "--out", str(out)]) == 130
    assert "interrupted (Ctrl-C)" in _error(capsys, progress=True)
    assert sorted(os.listdir(out)) == ["INCOMPLETE", "config.json", "seed0"]


def test_warm_start_stops_on_a_nan_loss():
    cfg = trainer.LLMConfig(warm_lr=1e6, warm_check_every=2, warm_max_steps=6, warm_target=1.0, num_eval=16,
                            num_train=256, warm_batch=16, d_model=16, num_layers=1, fast_compile=True)
    with pytest.raises(trainer.NonFiniteError, match=r"non-finite loss in the warm start by step \d+ \(seed 0\)"):
        trainer.warm_start(cfg, trainer.make_problem_sets(cfg))


@pytest.mark.parametrize("error,code,said", [(KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
                                             (RuntimeError("boom"), 1, "stopped: RuntimeError: boom")])
def test_a_stopped_run_is_one_line_and_marked_unfinished(error, code, said, tmp_path, capsys, monkeypatch):
    def stop(*args, **kwargs):
        raise error
    monkeypatch.setattr(trainer, "warm_start", stop)
    monkeypatch.delenv("BPO_JAX_DEBUG", raising=False)
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    assert cli.main([*TINY, "--out", str(out)]) == code
    err = _error(capsys, progress=True)
    assert said in err and "--overwrite" in err, err
    assert sorted(os.listdir(out)) == ["INCOMPLETE", "config.json"] and said in (out / "INCOMPLETE").read_text()
    # Further Ctrl-Cs are ignored while it stops (see the test below); its caller gets its handler back.
    assert signal.getsignal(signal.SIGINT) is handler


# The llm command in a child that presses Ctrl-C three times: once while the run works (argv[1]
# "finaliser": in a finaliser, as a press lands in a garbage-collector callback while JAX's objects
# are freed, where Python drops the KeyboardInterrupt), then twice while it stops, in finalisers:
# as the run writes its note, and as the command words its message.
CTRL_C_THRICE = """
import os, signal, sys, time
from bpo_jax import cli
from bpo_jax.llm import trainer

def press():
    os.kill(os.getpid(), signal.SIGINT)

class PressedInAFinaliser:
    def __del__(self):
        press()

first_in_a_finaliser = sys.argv.pop(1) == "finaliser"

def warm_start(*args, **kwargs):
    PressedInAFinaliser() if first_in_a_finaliser else press()
    time.sleep(30)
    raise SystemExit("the Ctrl-C was lost: the run went on")

note = trainer.stop_note
def stop_note(e, out, cfg=None):
    PressedInAFinaliser()
    return note(e, out, cfg)

trainer.warm_start, trainer.stop_note = warm_start, stop_note
sys.argv[0] = "bpo-jax"
cli.entry()
"""


@pytest.mark.parametrize("first", ["direct", "finaliser"])
def test_ctrl_c_pressed_again_while_the_run_stops_is_ignored(first, tmp_path):
    """Further Ctrl-Cs raised a KeyboardInterrupt into the way out: in a finaliser it printed
    "Exception ignored in ... KeyboardInterrupt" and a traceback after the one-line message.  And
    the first Ctrl-C, dropped in a finaliser, still stops the run (it is sent again)."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", CTRL_C_THRICE, first, *TINY, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    err = proc.stderr.strip()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err and "KeyboardInterrupt" not in err, err
    assert err.splitlines()[-1].startswith("bpo-jax: error: interrupted (Ctrl-C)"), err
    assert sorted(os.listdir(out)) == ["INCOMPLETE", "config.json"] and "interrupted (Ctrl-C)" in (out / "INCOMPLETE").read_text()


def test_the_last_seeds_below_2_to_the_32_are_valid():
    """Seeds run cfg.seed .. cfg.seed + seeds - 1, each < 2**32: seeds 2**32 - 2 and 2**32 - 1 are
    a valid pair, a third is not."""
    trainer.check_seeds(trainer.LLMConfig(seed=2**32 - 2), 2)
    trainer.check_seeds(trainer.LLMConfig(seed=2**32 - 1), 1)
    with pytest.raises(ValueError, match=r"`seed` \+ `seeds` must be <= 2\*\*32"):
        trainer.check_seeds(trainer.LLMConfig(seed=2**32 - 2), 3)


def test_evaluation_and_training_problems_may_use_all_ten_thousand_additions():
    """num_eval + num_train <= 10000 (the distinct two-digit additions): exactly 10000 is valid and
    the two sets then split every problem between them; one more is refused."""
    cfg = trainer.LLMConfig(num_eval=16, num_train=9984, prompts_per_step=16)
    cfg.validate()
    problems = trainer.make_problem_sets(cfg)
    every = {tuple(p) for p in problems.eval_prompts} | {tuple(p) for p in problems.train_prompts}
    assert len(every) == 10000
    with pytest.raises(ValueError, match=r"^`num_eval` must be <= 16, got 17"):
        trainer.LLMConfig(num_eval=17, num_train=9984, prompts_per_step=16).validate()
