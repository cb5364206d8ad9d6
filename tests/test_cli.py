"""The command line: bad input gets one line and a non-zero exit, nothing half-written;
a small real run writes every output."""
import argparse
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

from bpo_jax import cli, reporting

SPLIT_ACROSS_WORKERS = True  # independent subprocess runs (see conftest.py)


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "bpo_jax", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("bpo-jax: error:") or "error:" in last, err
    for fragment in fragments:
        assert fragment in err, err


def assert_one_line_in_process(capsys, *fragments):
    """What cli.main wrote to stderr is one error line holding every fragment."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bpo-jax: error:"), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("args,fragments", [
    (["--env", "nosuch/CartPole-v1"], ["unknown environment suite", "gymnax"]),
    (["--env", "gymnax/CartPole-v7"], ["unknown gymnax environment", "CartPole-v1"]),
    (["--env", "gymnax/cartpole"], ["unknown gymnax environment 'cartpole'; did you mean 'CartPole-v1'?"]),
    (["--algo", "sac"], ["unknown --algo 'sac'", "bpo, ppo"]),
    (["--num-envs", "-4"], ["--num-envs must be a positive integer"]),
    (["--num-minibatches", "3"], ["(--num-envs 4 x --num-steps 128 = 512) does not divide into --num-minibatches 3"]),
    (["--total-steps", "100"], ["--total-steps 100 is less than one update's batch (--num-envs 4 x"]),
    (["--seeds", "0"], ["--seeds must be >= 1"]),
    (["--eps", "1.5"], ["--eps-low (or --eps) must be in (0, 1]"]),
    (["--loss-type", "KL"], ["unknown --loss-type", "adv_TV"]),
    (["--gamma", "2"], ["--gamma must be in [0, 1]"]),
    (["--preset", "paper/Walker-v9"], ["unknown preset", "paper/Hopper-v4"]),
    (["--env-options", "max_steps_in_episode"], ["--env-options item 'max_steps_in_episode' is not key=value"]),
    (["--env-options", "no_such_param=3"], ["has no parameter", "max_steps_in_episode"]),
    (["--env", "mjx/Hopper-v4", "--env-options", "reset_noise_scale=abc"],
     ["option reset_noise_scale takes a number", "'abc'"]),
    (["--action-squash", "sigmoid"], ["unknown --action-squash", "clip, tanh"]),
    (["--reset-pool", "-1"], ["--reset-pool must be in [0, 2**31)"]),
    # Accepted, then XLA aborted the process (a C++ check on int32 shapes) or jit overflowed.
    (["--reset-pool", "1000000000000"], ["--reset-pool must be in [0, 2**31)"]),
    (["--hidden-sizes", "1000000000000"], ["--hidden-sizes must be positive widths below 2**31"]),
    (["--lr", "inf"], ["--lr must be finite"]),  # passes "> 0"; would only fail as NaNs after compiling
    (["--total-steps", "99999999999999999999999"], ["--total-steps 99,999,999,999,999,999,999,999 gives", "int32 update counter", "give at most"]),
    (["--num-epochs", "3000000000"], ["--num-epochs must be below 2**31, got 3,000,000,000"]),  # an OverflowError mid-run
    # jax.distributed.initialize failed with "IndexError: list index out of range" and "--process-id must be in [0, 0)":
    (["--coordinator", "nocolon", "--num-processes", "2", "--process-id", "0"], ["--coordinator must be HOST:PORT"]),
    (["--coordinator", "localhost:1234", "--num-processes", "0", "--process-id", "0"],
     ["--num-processes must be >= 1, got 0"]),
    # before joining the cluster, which waits for every process (a silent hang till its time-out)
    (["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "0", "--lr", "-1"],
     ["--lr must be > 0, got -1.0"]),
])
def test_bad_input_is_one_line_and_nonzero(args, fragments, tmp_path, capsys, monkeypatch):
    """In-process (no interpreter start-up per case); that the process itself exits non-zero with
    the same one line is checked through subprocesses below (an existing --out, an unknown suite)."""
    import jax

    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("joined a cluster"))
    out = tmp_path / "out"
    assert cli.main(["train", *args, "--out", str(out)]) != 0
    assert_one_line_in_process(capsys, *fragments)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p != "out"]


@pytest.mark.parametrize("args,fragments", [
    (["--chunk-updates", "0"], ["--chunk-updates must be in [1, 976]"]),
    (["--chunk-updates", "977"], ["--chunk-updates must be in [1, 976]"]),
    (["--chunk-updates", "8", "--reports", "4"], ["both set the chunk size"]),
    (["--checkpoint-every", "soon"], ["--checkpoint-every", "takes a positive number"]),
    (["--checkpoint-every", "0"], ["--checkpoint-every", "takes a positive number"]),
    (["--lr", "abc"], ["--lr", "invalid float value"]),
    (["--hidden-sizes", "64,abc"], ["--hidden-sizes", "comma-separated integers"]),
    (["--hidden-sizes", "64,"], ["--hidden-sizes", "comma-separated integers", "'64,'"]),  # was (64,)
    (["--hidden-sizes", " , ,"], ["--hidden-sizes", "comma-separated integers"]),  # was a linear policy
    (["--keep-checkpoints", "0"], ["--keep-checkpoints must be >= 1"]),
    (["--no-checkpoints", "--checkpoint-every", "1"], ["--no-checkpoints writes none; drop --checkpoint-every"]),
    (["--no-checkpoints", "--keep-checkpoints", "3"], ["--no-checkpoints writes none; drop --keep-checkpoints"]),
    (["--no-checkpoints", "--resume", "somewhere"], ["--resume goes on writing checkpoints", "drop --no-checkpoints"]),
    (["--wandb-project", "p"], ["--wandb-project says where W&B logs, and nothing logs there without --wandb"]),
])
def test_bad_run_flags_are_one_line_and_create_nothing(args, fragments, tmp_path, capsys):
    """Run flags and unparsable values are refused in one line (no usage block), exit code 2,
    before the run directory exists (in-process: no start-up cost)."""
    out = tmp_path / "out"
    assert cli.main(["train", *args, "--out", str(out)]) == 2
    assert_one_line_in_process(capsys, *fragments)
    assert not out.exists()


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_a_bad_cache_threshold_is_one_line_and_creates_nothing(value, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BPO_JAX_CACHE_MIN_COMPILE_SECONDS", value)
    out = tmp_path / "out"
    assert cli.main(["train", "--total-steps", "1024", "--out", str(out)]) == 2
    assert_one_line_in_process(capsys, "BPO_JAX_CACHE_MIN_COMPILE_SECONDS must be a number of seconds >= 0", repr(value))
    assert not out.exists()


@pytest.mark.parametrize("command", [
    ["train", "--out", "{blocker}/run"],
    ["train", "--out", "{blocker}"],
    ["sweep", "--suite", "smoke", "--out", "{blocker}/sweep/deeper"],
    ["sweep", "--suite", "smoke", "--out", "{blocker}"],
    ["plot", "{tmp}", "--out", "{blocker}/figure.png"],
    ["report", "{tmp}", "--out", "{blocker}/report.md"],
])
def test_an_out_path_through_a_file_is_one_line(command, tmp_path, capsys):
    """An --out that cannot be created (a file where a folder must be) is refused before any
    work, in one line naming the file, never as an OSError traceback from os.makedirs."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = [a.format(blocker=blocker, tmp=tmp_path) for a in command]
    assert cli.main(args) == 2
    assert_one_line_in_process(capsys, str(blocker), "is a file")
    assert blocker.read_text() == "not a folder" and os.listdir(tmp_path) == ["a_file"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no file can be created")
@pytest.mark.parametrize("command", [
    ["train", "--out", "/proc/bpo-jax-test/run"],
    ["sweep", "--suite", "smoke", "--out", "/proc/bpo-jax-test"],
    ["plot", "{tmp}", "--out", "/proc/figure.png"],
    ["report", "{tmp}", "--out", "/proc/report.md"],
])
def test_an_out_path_where_nothing_can_be_written_is_one_line(command, tmp_path, capsys):
    """Where the permission bits say yes but the file system says no (/proc, a read-only mount:
    root passes os.access there), --out is refused before any work, not by a traceback at the end."""
    assert cli.main([a.format(tmp=tmp_path) for a in command]) == 2
    assert_one_line_in_process(capsys, "cannot write in '/proc'", "choose another directory")


@pytest.mark.parametrize("command", [["train"], ["sweep", "--suite", "smoke"], ["plot", "{tmp}"], ["report", "{tmp}"],
                                     ["eval", "--checkpoint", "{tmp}"], ["export", "--checkpoint", "{tmp}"]])
def test_an_empty_out_is_refused(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main([a.format(tmp=tmp_path) for a in command] + ["--out", ""]) == 2
    assert_one_line_in_process(capsys, "--out is empty")
    assert os.listdir(tmp_path) == []


def test_a_file_system_error_after_the_checks_is_one_line(monkeypatch, capsys):
    """A write the checks allowed but the disk refused (full, a mount gone) ends in one line, exit 1."""
    def full(args):
        raise OSError(28, "No space left on device", "/data/run/metrics.csv")
    monkeypatch.setattr(cli, "cmd_envs", full)
    assert cli.main(["envs"]) == 1
    assert_one_line_in_process(capsys, "file system error: /data/run/metrics.csv: No space left on device")


def test_an_interrupt_or_an_offline_download_is_one_line(monkeypatch, capsys):
    import urllib.error

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_envs", interrupted)
    assert cli.main(["envs"]) == cli.EXIT_INTERRUPTED
    assert_one_line_in_process(capsys, "interrupted")

    def offline(args):  # URLError is an OSError: it must not read as a file-system error
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(cli, "cmd_envs", offline)
    assert cli.main(["envs"]) == 1
    assert_one_line_in_process(capsys, "network error", "downloads data on first use")


def test_resume_with_a_preset_names_the_preset(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path), "--preset", "paper/Hopper-v4"]) == 2
    assert_one_line_in_process(capsys, "drop --preset")


@pytest.mark.parametrize("args,fragment", [
    (["eval", "--checkpoint", "{tmp}", "--seed", "99999999999999999999"], "--seed must be an integer in [0, 2**32)"),
    (["eval", "--checkpoint", "{tmp}", "--max-steps", "2147483648"], "--max-steps must be <= 2,147,483,647"),
    (["eval", "--checkpoint", "{tmp}", "--episodes", "3000000000"], "--episodes must be <= 1,048,576"),  # was SIGABRT
    (["export", "--checkpoint", "{tmp}", "--format", "jax", "--out", "{tmp}/p.onnx"], "names the other format"),
    (["export", "--checkpoint", "{tmp}", "--out", "{tmp}/p.jaxexport"], "names the other format"),
])
def test_eval_and_export_refuse_before_reading_the_checkpoint(args, fragment, tmp_path, capsys):
    assert cli.main([a.format(tmp=tmp_path) for a in args]) == 2
    assert_one_line_in_process(capsys, fragment)
    assert os.listdir(tmp_path) == []


def test_env_options_keep_commas_inside_brackets():
    assert cli._parse_strings("healthy_z_range=(0.8,2.0),x=1") == ("healthy_z_range=(0.8,2.0)", "x=1")
    assert cli._parse_strings("a=[1,2],b=(3,(4,5)),c") == ("a=[1,2]", "b=(3,(4,5))", "c")
    assert cli._parse_strings("bpo, ppo,") == ("bpo", "ppo")
    for text, rest in (("gravity=9.8,x=(1", "x=(1"), ("x=(1,2", "x=(1,2")):  # the item vanished from config.json
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"a bracket opened in {rest!r} is not closed")):
            cli._parse_strings(text)


def test_json_outputs_are_strict_json(tmp_path):
    """No bare NaN (a run in which no episode ended has no final return): strict readers such as
    JavaScript's JSON.parse reject it."""
    import json

    from bpo_jax import reporting

    path = tmp_path / "summary.json"
    reporting.write_json(str(path), {"final_episode_return": float("nan"), "x": [1.0, float("inf")], "t": (1, 2)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"final_episode_return": None,
                                                                         "x": [1.0, None], "t": [1, 2]}


# Runs the bpo-jax command in a child that sends itself Ctrl-C as module argv[1] starts to import.
INTERRUPTED_AT_IMPORT = """
import os, signal, sys
module = sys.argv.pop(1)
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
from bpo_jax.__main__ import entry
entry()
"""


@pytest.mark.parametrize("module,message", [
    ("bpo_jax.cli", "bpo-jax: error: interrupted while starting; nothing was run or written"),  # JAX loading
    ("bpo_jax.presets", "bpo-jax: error: interrupted while starting; nothing was run or written"),  # the parser
])
def test_ctrl_c_while_the_command_starts_is_one_line_and_stops_it(tmp_path, module, message):
    """Raised inside an import, a KeyboardInterrupt printed a traceback, or was turned into an
    ImportError or dropped in a gc callback so that the run went on: the start holds it instead."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_AT_IMPORT, module, "train", "--total-steps", "2048",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert (proc.returncode, proc.stderr.strip()) == (130, message)
    assert not out.exists()


def test_the_command_leaves_at_once_after_an_interrupt(monkeypatch):
    """After Ctrl-C the process exits without the interpreter's shutdown, during which XLA threads
    still running the interrupted program can abort the process after the one-line message."""
    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    handler = signal.getsignal(signal.SIGINT)
    try:
        monkeypatch.setattr(cli, "main", lambda: cli.EXIT_INTERRUPTED)
        with pytest.raises(SystemExit):  # os._exit is replaced, so entry goes on to sys.exit
            cli.entry()
        assert exits == [130]
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the process leaves next: nothing to stop
        monkeypatch.setattr(cli, "main", lambda: 0)
        with pytest.raises(SystemExit) as e:
            cli.entry()
        assert e.value.code == 0 and exits == [130]

        def pressed_as_it_returns():  # a second Ctrl-C, just after the first's message: no traceback
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "main", pressed_as_it_returns)
        with pytest.raises(SystemExit):
            cli.entry()
        assert exits == [130, 130]
    finally:
        signal.signal(signal.SIGINT, handler)  # this process goes on (its children would inherit SIG_IGN)


def test_existing_nonempty_out_dir_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert cli.main(["train", "--out", str(out)]) == cli.EXIT_USAGE
    assert_one_line_in_process(capsys, "exists and is not empty", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("out,why", [(".", "the current directory"), ("./", "the current directory"),
                                     ("..", "which holds the current directory"), ("home", "the home directory")])
def test_overwrite_refuses_the_current_directory_what_holds_it_and_home(tmp_path, monkeypatch, capsys, out, why):
    """`--out . --overwrite` emptied the directory it ran from, then failed to remove it."""
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    (here / "keep.txt").write_text("precious")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(here)
    out = str(tmp_path / "home") if out == "home" else out
    assert cli.main(["train", "--total-steps", "2048", "--out", out, "--overwrite"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"bpo-jax: error: --overwrite would delete {out!r}, {why}; "
                                               "choose a new directory for --out")
    assert (here / "keep.txt").read_text() == "precious" and (tmp_path / "home" / "notes.txt").read_text() == "mine"


def test_a_diverged_runs_notes_use_the_command_lines_words(tmp_path, capsys):
    """The INCOMPLETE and DIVERGED files say --lr, as the message does, not the library's `lr`;
    a run stopped before its first checkpoint is started again by its own command."""
    from tests import probes

    probes.register()  # probe/NaNReward: NaN rewards from each env's 301st step (update 31 here)
    out = tmp_path / "nan run"
    flags = ["--env", "probe/NaNReward", "--num-envs", "2", "--num-steps", "10", "--num-epochs", "1",
             "--num-minibatches", "1", "--hidden-sizes", "8", "--total-steps", "800", "--seeds", "1",
             "--out", str(out), "--quiet", "--no-tensorboard", "--fast-compile", "--checkpoint-every", "1000"]
    assert cli.main(["train", *flags]) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after the "compiling..." line
    # The env's NaN is named as the env's (its first advice was to lower the learning rate).
    assert message.startswith("bpo-jax: error: stopped: probe/NaNReward returned a non-finite reward or observation "
                              "in the rollout of update 31 (seed index 0): check its step")
    for name in ("INCOMPLETE", "DIVERGED"):
        assert message.removeprefix("bpo-jax: error: ") in (out / name).read_text()
    # The curve up to the failure is kept, and the message says where.
    assert message.endswith("metrics.csv holds the 30 updates before it")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["update"]) for r in rows] == list(range(1, 31)) and {r["seed"] for r in rows} == {"0"}
    assert [int(r["env_steps"]) for r in rows[:2]] == [20, 40] and float(rows[-1]["episode_return_mean"]) == 5.0
    assert cli.main(["plot", str(out)]) == 2  # and it is no finished run's
    assert "diverged" in capsys.readouterr().err
    # The learner's NaN (returns past float32's range): its advice in the command line's words.
    learner = tmp_path / "learner"
    assert cli.main(["train", *flags[:flags.index("--env")], "--env", "gymnax/CartPole-v1",
                     *flags[flags.index("--env") + 2:flags.index("--total-steps")], "--total-steps", "40",
                     "--reward-scale", "1e38", "--out", str(learner), "--quiet", "--no-tensorboard",
                     "--fast-compile"]) == 1
    message = capsys.readouterr().err.strip()
    assert "non-finite loss" in message and "lower --lr or --max-grad-norm" in message, message
    for name in ("INCOMPLETE", "DIVERGED"):
        note = (learner / name).read_text()
        assert "--lr" in note and "--reward-scale" in note and "`" not in note, note


def test_a_run_interrupted_before_its_first_checkpoint_names_its_own_command(tmp_path, monkeypatch, capsys):
    from bpo_jax import runner

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", pressed)
    out = tmp_path / "a run"
    flags = ["--algo", "ppo", "--total-steps", "4096", "--out", str(out), "--quiet", "--lr", "1e-3"]
    assert cli.main(["train", *flags]) == cli.EXIT_INTERRUPTED
    hint = capsys.readouterr().err.strip().rsplit("with: ", 1)[1]
    assert hint == f"bpo-jax train --algo ppo --total-steps 4096 --out {shlex.quote(str(out))} --quiet --lr 1e-3 --overwrite"
    assert (out / "INCOMPLETE").read_text().rstrip().endswith(hint)
    assert cli.main(["train", "--resume", str(out)]) == 2  # nothing to resume: the note says what to do
    assert capsys.readouterr().err.strip().endswith("its run stopped (or never ran) before its first checkpoint, so "
                                                    "there is nothing to resume: start it again from the beginning, "
                                                    "over this folder (--overwrite)")
    # Without --out the hint names the directory the run took.
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--quiet"]) == cli.EXIT_INTERRUPTED
    (run_dir,) = os.listdir(tmp_path / "runs")
    assert capsys.readouterr().err.strip().endswith(f"with: bpo-jax train --quiet --overwrite --out runs/{run_dir}")


def test_ctrl_c_while_a_run_is_set_up_stops_it_with_its_note(tmp_path, monkeypatch, capsys):
    """Pressed while the env and network are built (imports, tracing): held until the setup
    ends, then the run stops before training, its INCOMPLETE note saying how to start again."""
    import signal

    real = cli._use_cpu_cores
    monkeypatch.setattr(cli, "_use_cpu_cores", lambda args: (signal.raise_signal(signal.SIGINT), real(args)))
    out = tmp_path / "run"
    assert cli.main(["train", "--total-steps", "4096", "--out", str(out), "--quiet"]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip()
    assert err.startswith("bpo-jax: error: interrupted (Ctrl-C) before the first checkpoint was saved")
    assert err.endswith("--overwrite") and len(err.splitlines()) == 1
    assert (out / "INCOMPLETE").read_text().rstrip().endswith(err.split("with: ", 1)[1])


def test_ctrl_c_while_a_resume_is_set_up_leaves_the_run_as_it_was(tmp_path, monkeypatch, capsys):
    """It marked a finished run INCOMPLETE, with a hint that dropped the new --total-steps."""
    import signal

    out = tmp_path / "run"
    flags = ["--num-envs", "4", "--num-steps", "16", "--hidden-sizes", "8", "--no-anneal-lr", "--quiet",
             "--no-tensorboard", "--fast-compile"]
    assert cli.main(["train", "--total-steps", "512", "--out", str(out), *flags]) == 0
    before = sorted(os.listdir(out))
    real = cli._use_cpu_cores
    monkeypatch.setattr(cli, "_use_cpu_cores", lambda args: (signal.raise_signal(signal.SIGINT), real(args)))
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--total-steps", "1024", "--quiet", "--fast-compile"]) == 130
    assert capsys.readouterr().err.strip() == "bpo-jax: error: interrupted while starting; nothing was run or written"
    assert sorted(os.listdir(out)) == before and not (out / "INCOMPLETE").exists()


def test_a_resume_that_compiles_otherwise_than_its_run_says_which_flag(tmp_path, capsys):
    from bpo_jax.session import RunOptions, RunSession

    options = RunOptions(checkpoint_every_updates=1, tensorboard=False, progress=False, fast_compile=True)
    config = cli.Config(algo="ppo", num_envs=4, num_steps=16, num_minibatches=2, hidden_sizes=(8,), total_steps=1024)
    session = RunSession.start(config, out=str(tmp_path / "run"), chunk_updates=4, options=options)

    def pressed(progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.run(on_progress=pressed)
    assert cli.main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith("which compiled with --fast-compile (its float rounding): "
                                                    "give --fast-compile")
    # Other settings that change the program: named as flags (it said "whose num_seeds is 1")
    for flags, told in ((["--seeds", "2"], "whose --seeds is 1; drop --seeds"),
                        (["--reports", "2"], "whose --chunk-updates is 4; drop --reports")):
        assert cli.main(["train", "--resume", str(tmp_path / "run"), "--quiet", "--fast-compile", *flags]) == 2
        assert capsys.readouterr().err.strip() == (f"bpo-jax: error: --resume continues the checkpoint's run, {told} "
                                                   "(start a new run to change it)")


def test_an_unusable_compilation_cache_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """It was a traceback (os.makedirs in the run), and an INCOMPLETE note pointing to --resume."""
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("BPO_JAX_CACHE_DIR", str(tmp_path / "a_file" / "xla"))
    out = tmp_path / "run"
    assert cli.main(["train", "--total-steps", "2048", "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bpo-jax: error: the compilation cache folder '{tmp_path}/a_file/xla' ($BPO_JAX_CACHE_DIR")
    assert err.endswith("(or go without the cache: --no-compile-cache)") and len(err.splitlines()) == 1
    assert not out.exists()


def test_envs_lists_gymnax_and_rejects_unknown_suite(capsys):
    assert cli.main(["envs", "--suite", "gymnax"]) == 0
    assert "gymnax/CartPole-v1" in capsys.readouterr().out.splitlines()
    assert cli.main(["envs", "--suite", "nope"]) == cli.EXIT_USAGE
    assert_one_line_in_process(capsys, "unknown suite")


def test_help_lists_every_hyperparameter_with_one_default(capsys):
    import dataclasses

    from bpo_jax.config import Config

    assert cli.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Config):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "1e-3 for BPO, 2.5e-4 for PPO" in text
    for flag_help in text.split(" --")[1:]:
        assert flag_help.count("(default") <= 1, flag_help
    assert "other numbers" in text  # --fast-compile says that it changes the numerics


@pytest.mark.parametrize("text,expected", [("50", (50, None)), ("30s", (None, 30.0)), ("10m", (None, 600.0)),
                                           ("2h", (None, 7200.0))])
def test_checkpoint_every_parses_updates_or_durations(text, expected):
    assert cli.parse_every(text) == expected


@pytest.mark.parametrize("text", ["0", "-3", "abc", "5x", "", "infs", "1e309s", "nans"])
def test_checkpoint_every_rejects_nonsense(text):
    with pytest.raises(argparse.ArgumentTypeError, match="takes a positive number"):
        cli.parse_every(text)


def test_presets_lists_every_preset_with_its_env_and_budget(capsys):
    from bpo_jax import presets

    assert cli.main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "env", "steps", "what"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:-1]}
    assert list(rows) == presets.names()
    assert rows["paper/Hopper-v4"] == ["mjx/Hopper-v4", "20,000,000"]
    assert rows["paper/Asterix"] == ["atari/Asterix-v5", "30,000,000"]
    assert lines[-1].startswith("bpo-jax presets NAME:")


def test_presets_name_shows_every_value_for_both_algorithms(capsys):
    from bpo_jax import presets

    assert cli.main(["presets", "paper/Hopper-v4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split()[1:] for line in lines if not line.startswith(" ")}
    assert table["field"] == ["bpo", "ppo"]
    assert table["lr"] == ["9.808e-05", "9.808e-05"] and table["num_epochs"] == ["10", "5"]
    assert table["hidden_sizes"] == ["256,256", "256,256"] and table["env"] == ["mjx/Hopper-v4"] * 2
    # A field only the other algorithm reads is shown as not read, not as a setting.
    assert table["bpo_lambda"][1] == "-" and table["use_median"][1] == "-" and table["normalize_advantages"][0] == "-"
    assert lines[-1] == "(-: a field that algorithm does not read)"
    assert cli.main(["presets", "Hopper"]) == 2
    assert "did you mean 'paper/Hopper-v4' or 'fast/Hopper-v4'?" in capsys.readouterr().err
    if hasattr(presets, "source"):
        assert any(line.startswith("  bpo: ") for line in lines) and any(line.startswith("  ppo: ") for line in lines)
    assert cli.main(["presets", "paper/Walker-v9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown preset" in err and "fast/Ant-v4" in err


def test_parser_round_trips_config_fields():
    args = cli.build_parser().parse_args(
        ["train", "--algo", "ppo", "--hidden-sizes", "32,16", "--eps-low", "0.1", "--no-use-median",
         "--value-clip", "none", "--bpo-lambda", "0.01"])
    config = cli._config_from_args(args)
    assert config.algo == "ppo" and config.hidden_sizes == (32, 16) and config.eps_low == 0.1
    assert config.use_median is False and config.value_clip is None and config.bpo_lambda == 0.01


@pytest.mark.slow
def test_small_run_writes_all_outputs(tmp_path):
    # Every program is cached (threshold 0 s): this tiny run's programs compile near the default
    # 0.5 s threshold, on either side of it from machine to machine.
    env = {**os.environ, "BPO_JAX_CACHE_DIR": str(tmp_path / "cache"), "BPO_JAX_CACHE_MIN_COMPILE_SECONDS": "0"}
    proc = run_cli("train", "--algo", "ppo", "--seeds", "2", "--total-steps", "4096", "--num-envs", "4",
                   "--num-steps", "64", "--hidden-sizes", "16", "--reports", "4", "--fast-compile", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = os.listdir(tmp_path / "runs")
    assert run_dir.startswith("gymnax_CartPole-v1__ppo__")
    path = tmp_path / "runs" / run_dir
    # Final outputs, checkpoints and TensorBoard runs; no INCOMPLETE marker: the run finished.
    assert sorted(os.listdir(path)) == ["checkpoints", "config.json", "curve.png", "metrics.csv", "summary.json", "tb"]
    assert sorted(os.listdir(path / "tb")) == ["seed_0", "seed_1"]
    # A short run writes one checkpoint, the last (the default cadence is 10 minutes).
    assert sorted(os.listdir(path / "checkpoints")) == ["step_00000016"]
    assert str(path.relative_to(tmp_path)) in proc.stdout
    assert "ETA" in proc.stderr
    summary = json.loads((path / "summary.json").read_text())
    for key in ("final_episode_return", "env_steps", "compile_seconds", "cached_programs", "train_seconds",
                "io_seconds", "checkpoints_written", "checkpoint_seconds", "env_steps_per_second_all_seeds"):
        assert key in summary
    assert summary["checkpoints_written"] == 1
    # One throughput figure, labelled, in the last progress line and the final line alike.
    progress, final = [line for line in proc.stderr.splitlines() if "env steps/s" in line][-2:]
    label = re.search(r"[\d,]+ env steps/s \(all 2 seeds, training time\)", final).group()
    assert label in progress and "100.0%" in progress and "final return" in final
    assert abs(float(label.split()[0].replace(",", "")) - summary["env_steps_per_second_all_seeds"]) <= 1
    assert summary["env_steps"] == 4096 and summary["num_seeds"] == 2
    assert 9 < summary["final_episode_return"] < 500
    rows = list(csv.DictReader(open(path / "metrics.csv")))
    assert len(rows) == 2 * 16 and {r["seed"] for r in rows} == {"0", "1"}
    assert {"env_steps", "episode_return_mean", "policy_loss", "approx_kl", "clip_fraction",
            "steps_per_second"} <= set(rows[0])
    config = json.loads((path / "config.json").read_text())
    assert config["algo"] == "ppo" and config["num_seeds"] == 2 and config["hidden_sizes"] == [16]
    assert config["lr"] == 2.5e-4 and config["ent_coef"] == 0.01  # resolved algorithm defaults
    # A second identical run gets its own folder and reuses the compilation cache.
    proc2 = run_cli("train", "--algo", "ppo", "--seeds", "2", "--total-steps", "4096", "--num-envs", "4",
                    "--num-steps", "64", "--hidden-sizes", "16", "--reports", "4", "--quiet", "--fast-compile",
                    cwd=tmp_path, env=env)
    assert proc2.returncode == 0, proc2.stderr
    assert len(os.listdir(tmp_path / "runs")) == 2
    (run2,) = set(os.listdir(tmp_path / "runs")) - {run_dir}
    summary2 = json.loads((tmp_path / "runs" / run2 / "summary.json").read_text())
    assert summary2["final_episode_return"] == summary["final_episode_return"]
    # Both programs (init and the update chunk) come from the cache.
    assert summary["cached_programs"] == 0 and summary2["cached_programs"] >= 2


def test_preset_sets_paper_values_and_flags_override_it():
    """paper/Hopper-v4 carries the paper's per-algorithm Hopper settings (bpo_jax/presets.py); explicit flags win."""
    bpo = cli._config_from_args(cli.parse_args(["train", "--preset", "paper/Hopper-v4"]))
    assert (bpo.env, bpo.algo, bpo.num_envs, bpo.num_steps, bpo.minibatch_size) == ("mjx/Hopper-v4", "bpo", 4, 512, 32)
    assert (bpo.lr, bpo.eps, bpo.bpo_lambda, bpo.gamma, bpo.num_epochs) == (9.808e-5, 0.25, 10.0, 0.999, 10)
    assert (bpo.hidden_sizes, bpo.activation, bpo.anneal_lr, bpo.normalize_obs) == ((256, 256), "relu", False, False)
    ppo = cli._config_from_args(cli.parse_args(["train", "--preset", "paper/Hopper-v4", "--algo", "ppo", "--seed", "7"]))
    assert (ppo.algo, ppo.num_envs, ppo.minibatch_size, ppo.num_epochs, ppo.gae_lambda) == ("ppo", 1, 32, 5, 0.99)
    assert (ppo.vf_coef, ppo.ent_coef, ppo.max_grad_norm, ppo.seed) == (0.835671, 0.00229519, 0.7, 7)
    override = cli._config_from_args(cli.parse_args(["train", "--preset", "fast/Ant-v4", "--num-envs", "64"]))
    assert (override.num_envs, override.bpo_lambda, override.normalize_obs) == (64, 0.001, True)


def test_a_preset_on_another_env_is_noted_not_refused(capsys):
    walker = cli._config_from_args(cli.parse_args(["train", "--preset", "paper/Hopper-v4", "--env", "mjx/Walker2d-v4"]))
    assert (walker.env, walker.bpo_lambda) == ("mjx/Walker2d-v4", 10.0)
    assert capsys.readouterr().err.strip() == \
        "bpo-jax: note: preset paper/Hopper-v4 was set for mjx/Hopper-v4; training mjx/Walker2d-v4 with it"
    cli.parse_args(["train", "--preset", "paper/Hopper-v4", "--env", "mjx/Hopper-v4"])
    assert capsys.readouterr().err == ""


def test_env_options_reach_the_environment():
    config = cli._config_from_args(cli.parse_args(
        ["train", "--env", "gymnax/Pendulum-v1", "--env-options", "max_steps_in_episode=7, max_speed=4.5"]))
    assert config.env_kwargs() == {"max_steps_in_episode": 7, "max_speed": 4.5}
    from bpo_jax.train import make_trainer

    params = make_trainer(config.replace(num_envs=1, num_minibatches=1, total_steps=128)).env._params
    assert (params.max_steps_in_episode, params.max_speed) == (7, 4.5)


def test_a_closed_output_pipe_never_stops_training(tmp_path):
    """`bpo-jax train 2>&1 | head -2`: once the reader has gone, progress falls silent and the
    run still finishes and writes every file."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpo_jax", "train", "--algo", "ppo", "--seeds", "1", "--total-steps", "2048",
         "--num-envs", "4", "--num-steps", "16", "--num-minibatches", "2", "--hidden-sizes", "8",
         "--chunk-updates", "2", "--fast-compile", "--no-tensorboard", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # as `head -2` exits
    assert proc.wait(timeout=600) == 0
    assert "compiling" in head[0] and "ETA" in head[1]
    assert not (out / "INCOMPLETE").exists()
    assert {"config.json", "metrics.csv", "summary.json", "curve.png"} <= set(os.listdir(out))


@pytest.mark.parametrize("command", ["train", "llm"])
def test_overwrite_refuses_a_folder_of_another_run_and_a_sweep(tmp_path, capsys, command):
    """`llm --out RUN/checkpoints --overwrite` emptied a run's checkpoints and wrote an llm run
    there; an --out of a sweep's directory would have deleted every run of the sweep."""
    sweep_dir, run = _run_and_sweep(tmp_path)
    for out, why in ((run / "checkpoints", f"a folder of the run in {str(run)!r}, which it would damage"),
                     (sweep_dir, "a sweep's directory (its runs, curves and report)")):
        argv = [command, "--out", str(out), "--overwrite"] + (["--total-steps", "2048"] if command == "train" else [])
        assert cli.main(argv) == cli.EXIT_USAGE
        assert capsys.readouterr().err.strip() == (f"bpo-jax: error: --overwrite would delete {str(out)!r}, {why}; "
                                                   "choose a new directory for --out")
    assert (run / "checkpoints" / "step_00000004" / "config.json").is_file()
    assert sorted(os.listdir(sweep_dir)) == ["curves.csv", "runs", "sweep.json"]
    # A project folder with a config.json and a metrics.csv of its own owns no runs/ beside them.
    project = tmp_path / "project"
    (project / "runs" / "exp1").mkdir(parents=True)
    for name in ("config.json", "metrics.csv", "runs/exp1/metrics.csv"):
        (project / name).write_text("{}")
    reporting.check_output_dir(str(project / "runs" / "exp1"), overwrite=True)
    # A folder of the user's own was deleted with everything in it.
    (project / "runs" / "exp1" / "notes.txt").write_text("mine")
    with pytest.raises(reporting.OutputDirError, match="which holds 'notes.txt', a name no run writes \\(a folder "
                                                       "of your own\\?\\); choose a new directory for `out`$"):
        reporting.check_output_dir(str(project / "runs" / "exp1"), overwrite=True)
    # What eval, export and the loggers write beside a run's files belongs to it.
    # (`eval --video` writes video.mp4 beside eval.json; file browsers add .DS_Store.)
    for name in ("eval.json", "video.mp4", "policy_seed0.onnx", "policy.jaxexport", "wandb", "tb", "seed3",
                 "summary.json.tmp-123", ".DS_Store"):
        if not (run / name).exists():
            (run / name).write_text("")
    reporting.check_output_dir(str(run), overwrite=True)  # the run's own folder: its files are the ones replaced
    (run / "seed42_notes").mkdir()
    with pytest.raises(reporting.OutputDirError, match="which holds 'seed42_notes', a name no run writes"):
        reporting.check_output_dir(str(run), overwrite=True)
    (run / "seed42_notes").rmdir()
    # An RL run (or a project folder) owns no seed<S>/ folder: only an llm run's are its seeds'.
    (run / "seed0").mkdir()
    (run / "seed0" / "metrics.csv").write_text("")
    reporting.check_output_dir(str(run / "seed0"), overwrite=True)
    # A folder of runs (the default --out's runs/) is no run to replace: it deleted every one.
    (project / "runs" / "exp2").mkdir()
    for name in ("config.json", "INCOMPLETE"):
        (project / "runs" / "exp2" / name).write_text("{}")
    for folder in (project / "runs", tmp_path):
        with pytest.raises(reporting.OutputDirError, match="a folder holding runs \\(such as "):
            reporting.check_output_dir(str(folder), overwrite=True)


def test_plot_and_report_refuse_an_out_of_the_other_kind_and_say_how_to_finish_unfinished_runs(tmp_path, capsys):
    """`plot --out f.pgf` ended in a traceback (no TeX system) and `f.eps` drew the bands opaque;
    `report --out x.png` wrote Markdown into x.png; a run stopped before its first checkpoint was
    to be "resumed first", which train refuses."""
    from tests.test_curves import _run

    run = _run(tmp_path / "run")
    for argv, fragment in ((["plot", str(run), "--out", str(tmp_path / "f.pgf")], "the file name's extension picks"),
                           (["plot", str(run), "--out", str(tmp_path / "f.eps")], "the file name's extension picks"),
                           (["report", str(run), "--out", str(tmp_path / "x.png")], "the report is Markdown text")):
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"bpo-jax: error: --out {argv[3]}: {fragment}") and "\n" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["run"]
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "config.json").write_text("{}")
    (stopped / "INCOMPLETE").write_text("interrupted (Ctrl-C) before the first checkpoint was saved; start it again")
    assert cli.main(["plot", str(stopped)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"bpo-jax: error: {stopped}: no finished run to draw; 1 unfinished "
                                               "(marked INCOMPLETE: each one's INCOMPLETE file says how to finish it)")


def test_a_figure_matplotlib_cannot_write_is_one_line_and_no_file(tmp_path, capsys, monkeypatch):
    from bpo_jax import curves
    from tests.test_curves import _run

    def refuse(*args, **kwargs):
        raise RuntimeError("Failed to process string with tex because latex could not be found")

    monkeypatch.setattr(curves, "plot", refuse)
    run = _run(tmp_path / "run")
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "f.png")]) == cli.EXIT_FAILURE
    assert capsys.readouterr().err.strip() == (f"bpo-jax: error: could not write {tmp_path / 'f.png'}: RuntimeError: "
                                               "Failed to process string with tex because latex could not be found")
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_missing_matplotlib_is_one_line_saying_what_to_install(tmp_path, capsys, monkeypatch, command):
    from tests.test_curves import _run

    run = _run(tmp_path / "run")
    files = sorted(os.listdir(run))
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert cli.main([command, str(run)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("bpo-jax: error: drawing figures needs matplotlib") and "\n" not in err, err
    assert err.endswith("install it with: pip install matplotlib") and sorted(os.listdir(run)) == files


def _run_and_sweep(tmp_path):
    """A sweep folder holding one run directory with a checkpoint folder, as files only."""
    sweep_dir = tmp_path / "sweep"
    run = sweep_dir / "runs" / "r"
    (run / "checkpoints" / "step_00000004").mkdir(parents=True)
    (run / "tb").mkdir()
    for f in ("config.json", "metrics.csv", "summary.json", "checkpoints/step_00000004/config.json",
              "checkpoints/step_00000004/metadata.json"):
        (run / f).write_text("{}")
    (sweep_dir / "sweep.json").write_text("{}")
    (sweep_dir / "curves.csv").write_text("")
    return sweep_dir, run


@pytest.mark.parametrize("inside", ["config.json", "metrics.csv", "summary.json", "INCOMPLETE", "curve.png",
                                    "checkpoints/step_00000004/metadata.json", "checkpoints/new.onnx", "tb/x.json"])
def test_an_out_that_is_a_runs_own_file_is_refused(tmp_path, inside):
    """`report RUN --out RUN/metrics.csv` replaced the curve by the report and exited 0; an
    export over a checkpoint's metadata.json destroyed the run's only checkpoint."""
    _, run = _run_and_sweep(tmp_path)
    with pytest.raises(cli.ConfigError) as e:
        cli._check_file_out(str(run / inside), "report.md")
    assert str(e.value) == (f"--out {run / inside} is a file of the run or sweep in {run}, which"
                            f" writing it would destroy; give another name such as {run / 'report.md'}")


def test_a_sweeps_own_files_are_refused_and_new_files_beside_runs_are_not(tmp_path):
    sweep_dir, run = _run_and_sweep(tmp_path)
    for name in ("sweep.json", "curves.csv", "summary.json"):
        with pytest.raises(cli.ConfigError, match=f"is a file of the run or sweep in {re.escape(str(sweep_dir))},"):
            cli._check_file_out(str(sweep_dir / name), "report.md")
    for fine in (run / "eval.json", run / "figure.png", sweep_dir / "report.md", sweep_dir / "figure.png",
                 tmp_path / "metrics.csv"):  # what the commands write by default; a metrics.csv of no run
        cli._check_file_out(str(fine), "report.md")
    link = tmp_path / "link.csv"
    link.symlink_to(run / "metrics.csv")  # a link writes where it points
    with pytest.raises(cli.ConfigError, match="is a file of the run"):
        cli._check_file_out(str(link), "report.md")


def test_report_and_plot_refuse_to_write_over_the_run_they_read(tmp_path, capsys):
    _, run = _run_and_sweep(tmp_path)
    before = (run / "metrics.csv").read_text()
    assert cli.main(["report", str(run), "--out", str(run / "metrics.csv")]) == 2
    assert cli.main(["plot", str(run), "--out", str(run / "config.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("bpo-jax: error: --out ") for line in err)
    assert (run / "metrics.csv").read_text() == before == "{}"


def test_an_out_ending_in_a_separator_is_a_folder(tmp_path, capsys):
    """`--out newdir/` wrote a file called newdir."""
    _, run = _run_and_sweep(tmp_path)
    assert cli.main(["report", str(run), "--out", str(tmp_path / "newdir") + "/"]) == 2
    assert capsys.readouterr().err.strip() == (f"bpo-jax: error: --out {tmp_path / 'newdir'}/ is a directory; give a "
                                               f"file name such as {tmp_path / 'newdir' / 'report.md'}")
    assert not (tmp_path / "newdir").exists()


def test_folders_named_checkpoints_or_tb_outside_a_run_are_free(tmp_path):
    """A project with its own config.json and a checkpoints/ folder of runs: only a run's own
    checkpoints/ and tb/ are its files."""
    (tmp_path / "proj" / "checkpoints" / "myrun").mkdir(parents=True)
    (tmp_path / "proj" / "config.json").write_text("{}")
    cli._check_file_out(str(tmp_path / "proj" / "checkpoints" / "myrun" / "eval.json"), "eval.json")


def test_a_resumed_run_keeps_its_own_tensorboard_setting_unless_given(tmp_path):
    """A run trained with --no-tensorboard grew a tb/ folder of its later updates only when
    resumed without the flag."""
    import argparse

    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000004").mkdir(parents=True)
    (run / "checkpoints" / "step_00000004" / "metadata.json").write_text("{}")
    args = lambda given=(), on=True: argparse.Namespace(resume=str(run), given=set(given), tensorboard=on)  # noqa: E731
    assert cli._tensorboard(args()) is False
    assert cli._tensorboard(args(given=["tensorboard"])) is True  # --tensorboard, asked for
    (run / "tb").mkdir()
    assert cli._tensorboard(args()) is True
    assert cli._tensorboard(args(given=["tensorboard"], on=False)) is False
    assert cli._tensorboard(argparse.Namespace(resume=None, given=set(), tensorboard=True)) is True


def test_a_negative_value_in_exponent_form_is_a_value_not_a_flag(capsys):
    """`--lr -1e-3` said "argument --lr: expected one argument" (argparse before Python 3.13 takes
    it for an unknown flag); `--lr -0.001` said what is wrong with the value."""
    for argv, message in ((["train", "--lr", "-1e-3"], "--lr must be > 0, got -0.001"),
                          (["llm", "--kl-coef", "-1e-3"], "--kl-coef must be >= 0, got -0.001")):
        assert cli.main(argv) == cli.EXIT_USAGE
        assert capsys.readouterr().err.strip() == f"bpo-jax: error: {message}"
    assert cli.parse_args(["train", "--lr", "-1E+2"]).lr == -100.0
    # So are -inf and -nan: "expected one argument" named no fault of the value.
    for value in ("-inf", "-nan", "-Infinity"):
        assert cli.main(["train", "--lr", value]) == cli.EXIT_USAGE
        assert "expected one argument" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    # "16 16" read as 1616: one layer, silently.
    (["--hidden-sizes", "16 16"], "argument --hidden-sizes: expected comma-separated integers like 64,64"),
    # `--lr "$LR"` with LR unset trained with the default learning rate.
    (["--lr", ""], "argument --lr: empty value; give a number or none"),
    (["--value-clip", " "], "argument --value-clip: empty value; give a number or none"),
    # An empty --resume started a fresh run.
    (["--resume", ""], "--resume is empty; name the run directory (or checkpoint) to resume"),
    # Accepted and ignored (whatever its value) without the multi-process flags.
    (["--join-timeout", "-1"], "--join-timeout is how long the processes of a multi-process run wait for each other"),
])
def test_a_slip_in_a_value_is_refused_not_read_otherwise(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--total-steps", "512", "--num-envs", "4", "--num-steps", "32", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bpo-jax: error: {message}") and "\n" not in err, err
    assert os.listdir(tmp_path) == []


def test_a_preset_s_values_are_no_flags_to_drop(tmp_path):
    """The paper presets set eps 0.25: asymmetric bounds given on top leave it unread, and that
    was refused as "--eps 0.25 changes nothing here ... leave it at its default (0.2)"."""
    argv = ["train", "--preset", "paper/Hopper-v4", "--env", "gymnax/Pendulum-v1", "--eps-low", "0.2",
            "--eps-high", "0.2", "--no-tensorboard"]
    def parsed(extra):
        args = cli.parse_args(argv + extra)
        args.argv = argv + extra  # as main() keeps it, for the resume hint
        return args

    args = parsed(["--out", str(tmp_path / "run")])
    assert cli._given_fields(args) == ["env", "eps_low", "eps_high"]
    cli._open_session(args)  # starts: config.json written, nothing trained
    assert (tmp_path / "run" / "config.json").is_file()
    with pytest.raises(cli.ConfigError, match=r"^`eps` 0.3 changes nothing here: it is read only with `eps_low` or "):
        cli._open_session(parsed(["--eps", "0.3", "--out", str(tmp_path / "typed")]))
    assert not (tmp_path / "typed").exists()
