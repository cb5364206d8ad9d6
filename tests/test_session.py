"""Runs from Python (bpo_jax.session): start, interrupt, resume and finish a checkpointed run;
the checkpoint cadence and its cost; one throughput figure; input errors that name the
parameter to change, in the library's words (no command-line flags), before anything is written."""
import csv
import dataclasses
import json
import os
import shlex
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from bpo_jax import Config, checkpoint, reporting, runner
from bpo_jax.session import (ProgramMismatch, RunDirectoryGone, RunFinished, RunOptions, RunSession, SessionError,
                             run_together)
from tests.compiling import FULL

# 16 updates of 64 steps in chunks of 4.
TINY = Config(algo="ppo", num_envs=4, num_steps=16, num_minibatches=2, hidden_sizes=(8,), total_steps=1024)
QUIET = RunOptions(tensorboard=False, progress=False, fast_compile=True)
EVERY_CHUNK = RunOptions(checkpoint_every_updates=1, tensorboard=False, progress=False, fast_compile=True)
LAST_ONLY = RunOptions(checkpoint_every_updates=1000, tensorboard=False, progress=False, fast_compile=True)
CONSTANT_LR = TINY.replace(anneal_lr=False, total_steps=512)  # 8 updates; nothing depends on the budget


def stop_at(update):
    """A progress callback that presses Ctrl-C after ``update``."""
    def show(p):
        if p.update == update:
            raise KeyboardInterrupt
    return show


def test_interrupted_run_resumes_from_python_to_the_uninterrupted_result(tmp_path):
    out = tmp_path / "run"
    session = RunSession.start(TINY, num_seeds=2, out=str(out), chunk_updates=4, options=EVERY_CHUNK)
    assert sorted(os.listdir(out)) == ["INCOMPLETE", "config.json"]  # made by start, before any compile
    with pytest.raises(KeyboardInterrupt):
        session.run(on_progress=stop_at(8))
    note = (out / "INCOMPLETE").read_text()
    assert session.note in note and "interrupted (Ctrl-C)" in note and "step_00000008" in note
    assert "RunSession.resume" in note and "--" not in note

    # What the run computes is fixed: a value that differs is named, one that repeats is fine.
    with pytest.raises(ProgramMismatch) as e:
        RunSession.resume(str(out), QUIET, expect={"algo": "ppo", "lr": 0.5})
    assert e.value.field == "lr" and e.value.saved == 2.5e-4 and "--" not in str(e.value)
    with pytest.raises(ProgramMismatch) as e:
        RunSession.resume(str(out), QUIET, expect={"reports": 1})
    assert (e.value.field, e.value.saved_field, e.value.saved) == ("reports", "chunk_updates", 4)
    # Without checkpoints the run would end past its newest one, which eval and resume read.
    with pytest.raises(SessionError, match="goes on writing checkpoints"):
        RunSession.resume(str(out), dataclasses.replace(QUIET, checkpoints=False))
    # XLA's cheap settings round otherwise: a resume compiles as its run did.
    with pytest.raises(ProgramMismatch) as e:
        RunSession.resume(str(out), dataclasses.replace(QUIET, fast_compile=False))
    assert (e.value.field, e.value.saved) == ("fast_compile", True)
    assert str(e.value).endswith("resume with `fast_compile` = True")
    assert "RunSession.resume(" in note and "RunOptions(fast_compile=True))" in note  # the hint says so too
    # So does the split over devices (each device's program), recorded for the resume.
    layout = checkpoint.read_metadata(checkpoint.locate(str(out))[1])["layout"]
    assert layout == {"split": runner.resolve_split("auto", 2), "devices": len(jax.devices()), "members": 2}
    resumed = RunSession.resume(str(out), QUIET, expect={"algo": "ppo", "lr": None, "num_seeds": 2, "chunk_updates": 4})
    assert (resumed.start_update, resumed.num_seeds, resumed.chunk_updates, resumed.out) == (8, 2, 4, str(out))
    done = resumed.run()
    assert not reporting.is_incomplete(str(out)) and set(done.files) <= set(os.listdir(out))
    assert done.summary["env_steps"] == 1024 and done.summary["num_seeds"] == 2 and done.summary["fast_compile"]
    assert done.summary["layout"] == layout  # in summary.json too: another split is another run's numbers

    shown = []
    whole = RunSession.start(TINY, num_seeds=2, out=str(tmp_path / "whole"), chunk_updates=4, options=QUIET)
    uninterrupted = whole.run(on_progress=shown.append)
    for a, b in zip(jax.tree.leaves(done.result.state.params), jax.tree.leaves(uninterrupted.result.state.params)):
        np.testing.assert_array_equal(a, b)
    for name, rows in uninterrupted.result.metrics.items():
        np.testing.assert_array_equal(done.result.metrics[name], rows, err_msg=name)

    # The default cadence (10 minutes) leaves one checkpoint in a short run, the last; the
    # summary says what checkpoints and logs cost.
    info = uninterrupted.summary
    assert [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(str(tmp_path / "whole" / "checkpoints"))] == [16]
    assert info["checkpoints_written"] == 1 and 0 < info["checkpoint_seconds"] <= info["io_seconds"]
    # One throughput figure: the last progress report's is the summary's.
    assert shown[-1].update == 16 and shown[-1].steps_per_second == uninterrupted.result.throughput
    assert info["env_steps_per_second_all_seeds"] == round(uninterrupted.result.throughput, 1)
    assert uninterrupted.result.throughput == pytest.approx(1024 * 2 / uninterrupted.result.train_seconds)


def test_ctrl_c_during_a_save_stops_the_run_after_it_with_that_checkpoint_whole(tmp_path, monkeypatch):
    """Raised inside orbax's write, the interrupt threw away the checkpoint being written (and
    printed orbax's thread errors): it is raised once the save ends instead."""
    real = checkpoint._checkpointer

    class PressedDuringTheSecondSave:
        def save(self, path, arrays):
            if "step_00000008" in path:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # Python runs the handler in the main thread at the next bytecodes
            return real().save(path, arrays)

    monkeypatch.setattr(checkpoint, "_checkpointer", PressedDuringTheSecondSave)
    out = tmp_path / "run"
    session = RunSession.start(TINY, num_seeds=2, out=str(out), chunk_updates=4, options=EVERY_CHUNK)
    with pytest.raises(KeyboardInterrupt):
        session.run()
    assert [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(str(out / "checkpoints"))] == [4, 8]
    assert "interrupted (Ctrl-C)" in session.note and "step_00000008" in session.note
    monkeypatch.undo()
    assert RunSession.resume(str(out), QUIET).run().summary["env_steps"] == 1024


def test_a_run_stopped_before_its_first_checkpoint_points_to_overwrite_not_resume(tmp_path):
    out = str(tmp_path / "run")
    session = RunSession.start(TINY, out=out, chunk_updates=4, options=LAST_ONLY)
    with pytest.raises(KeyboardInterrupt):
        session.run(on_progress=stop_at(4))
    assert "nothing to resume: start the run again with `overwrite`" in session.note
    with pytest.raises(reporting.OutputDirError) as e:
        RunSession.start(TINY, out=out, options=QUIET)
    assert "stopped before its first checkpoint: set `overwrite`" in str(e.value) and "`resume`" not in str(e.value)
    with pytest.raises(KeyboardInterrupt):
        RunSession.start(TINY, out=out, chunk_updates=4, overwrite=True, options=EVERY_CHUNK).run(on_progress=stop_at(4))
    with pytest.raises(reporting.OutputDirError, match="unfinished run: `resume`"):  # now there is one to resume
        RunSession.start(TINY, out=out, options=QUIET)
    # A sweep restarts such runs itself: its note names its own command instead.
    swept = RunSession.start(TINY, out=str(tmp_path / "swept"), chunk_updates=4,
                             options=dataclasses.replace(LAST_ONLY, restart_hint="bpo-jax sweep --out S"))
    with pytest.raises(KeyboardInterrupt):
        swept.run(on_progress=stop_at(4))
    assert swept.note.endswith("nothing to resume: start the run again with: bpo-jax sweep --out S")


def test_notes_take_the_front_ends_words(tmp_path):
    """A front end's `wording` reaches the note and the INCOMPLETE file: the command line's
    words (--overwrite), not the library's (`overwrite`)."""
    loud = dataclasses.replace(LAST_ONLY, wording=lambda note: note.replace("`overwrite`", "--overwrite"))
    session = RunSession.start(TINY, out=str(tmp_path / "run"), chunk_updates=4, options=loud)
    with pytest.raises(KeyboardInterrupt):
        session.run(on_progress=stop_at(4))
    assert session.note.endswith("start the run again with --overwrite")
    assert (tmp_path / "run" / reporting.INCOMPLETE).read_text().rstrip().endswith("with --overwrite")
    with pytest.raises(SessionError, match="`wording` must be a function from str to str"):
        dataclasses.replace(QUIET, wording="--overwrite").validate()


@pytest.mark.parametrize("call,message", [
    (lambda out: RunSession.start(TINY, 2.5, out), "`num_seeds` must be an integer, got 2.5"),
    (lambda out: RunSession.start(TINY, "2", out), "`num_seeds` must be an integer, got '2'"),
    (lambda out: RunSession.start(TINY, out=out, chunk_updates=4.5), "`chunk_updates` must be an integer or None"),
    (lambda out: RunSession.start({"algo": "bpo"}, out=out), "`config` must be a Config"),
    (lambda out: RunSession.start(TINY, out=out, options=None), "`options` must be a RunOptions"),
    (lambda out: RunSession.start(TINY, out=out, options=RunOptions(keep_checkpoints="2")),
     "`keep_checkpoints` must be an integer"),
    (lambda out: RunSession.start(TINY, out=out, options=RunOptions(resume_hint="{nope}")),
     "`resume_hint` may name only {out}"),
    (lambda out: RunSession.resume(None), "`path` must be a string, got None"),
    (lambda out: RunSession.resume(out, 4096), "`options` must be a RunOptions, got 4096"),
    (lambda out: RunSession.resume(out, total_steps=4096.5), "`total_steps` must be an integer or None"),
])
def test_arguments_of_the_wrong_type_are_named_and_nothing_is_written(tmp_path, call, message):
    """A float seed count trained 3 seeds and then failed writing outputs; a float budget on
    resume rewrote a finished run's config.json and marked it unfinished."""
    out = str(tmp_path / "run")
    with pytest.raises(SessionError) as e:
        call(out)
    assert message in str(e.value) and not os.path.exists(out)


def test_numpy_counts_are_taken_as_the_numbers_they_hold(tmp_path):
    """A seed count or chunk size read from an array starts the run; config.json stays JSON."""
    session = RunSession.start(TINY.replace(lr=np.float32(0.5)), np.int64(2), str(tmp_path / "run"),
                               chunk_updates=np.int32(4), options=RunOptions(keep_checkpoints=np.int8(1)))
    assert (session.num_seeds, session.chunk_updates, session.options.keep_checkpoints) == (2, 4, 1)
    assert type(session.num_seeds) is int and type(session.options.keep_checkpoints) is int
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == float(np.float32(0.5))


def test_out_may_be_a_path(tmp_path):
    """resume took a pathlib.Path, start refused one."""
    import pathlib

    session = RunSession.start(TINY, out=pathlib.Path(tmp_path / "run"), options=QUIET)
    assert session.out == str(tmp_path / "run") and (tmp_path / "run" / "config.json").is_file()


def test_chunks_run_ahead_of_the_host_work_only_where_no_state_is_wanted():
    """runner.run starts the next chunk before on_chunk where wants_state says no (on_chunk then
    gets no state), hands the state over where it says yes and after the last chunk, and
    computes the same numbers as a run that waits for the host after every chunk."""
    from bpo_jax import runner

    seen = []
    record = lambda chunk: seen.append((chunk.update, chunk.state is not None))
    ahead = runner.run(TINY, num_seeds=2, chunk_updates=4, on_chunk=record, wants_state=lambda update: update == 8,
                       compiler_options=runner.FAST_COMPILE)
    assert seen == [(4, False), (8, True), (12, False), (16, True)]
    seen.clear()
    waiting = runner.run(TINY, num_seeds=2, chunk_updates=4, on_chunk=record, compiler_options=runner.FAST_COMPILE)
    assert seen == [(4, True), (8, True), (12, True), (16, True)]
    plain = lambda x: jax.random.key_data(x) if runner.is_key(x) else x
    for a, b in zip(jax.tree.leaves(ahead.state), jax.tree.leaves(waiting.state)):
        np.testing.assert_array_equal(plain(a), plain(b))
    for name, rows in waiting.metrics.items():
        np.testing.assert_array_equal(ahead.metrics[name], rows, err_msg=name)


@pytest.mark.parametrize("start,options,field", [
    (dict(num_seeds=0), QUIET, "num_seeds"),
    (dict(chunk_updates=17), QUIET, "chunk_updates"),
    (dict(chunk_updates=2, reports=4), QUIET, "reports"),
    (dict(), RunOptions(keep_checkpoints=0), "keep_checkpoints"),
    (dict(), RunOptions(checkpoint_every_seconds=0.0), "checkpoint_every_seconds"),
])
def test_bad_input_names_its_parameter_and_writes_nothing(tmp_path, start, options, field):
    out = tmp_path / "run"
    with pytest.raises(SessionError) as e:
        RunSession.start(TINY, out=str(out), options=options, **start)
    assert e.value.field == field and f"`{field}`" in str(e.value) and "--" not in str(e.value)
    assert not out.exists()


def test_a_non_empty_directory_needs_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(reporting.OutputDirError, match="set `overwrite` or choose another `out`") as e:
        RunSession.start(TINY, out=str(tmp_path), options=QUIET)
    assert "--" not in str(e.value) and (tmp_path / "keep.txt").read_text() == "precious"


def _assert_same_run(a, b):
    for x, y in zip(jax.tree.leaves(a.result.state.params), jax.tree.leaves(b.result.state.params)):
        np.testing.assert_array_equal(x, y)
    for name, rows in b.result.metrics.items():
        np.testing.assert_array_equal(a.result.metrics[name], rows, err_msg=name)


def test_a_finished_run_goes_on_to_a_larger_budget_as_if_started_with_it(tmp_path):
    out = str(tmp_path / "run")
    RunSession.start(CONSTANT_LR, num_seeds=2, out=out, chunk_updates=4, options=QUIET).run()
    with pytest.raises(RunFinished, match="a larger `total_steps` takes it further"):
        RunSession.resume(out, QUIET)

    # On to 16 updates, killed at 12 before any new checkpoint: the run directory keeps the new
    # budget, so a plain resume goes on to it from the old final checkpoint.
    longer = RunSession.resume(out, LAST_ONLY, total_steps=1024)
    assert (longer.start_update, longer.config.num_updates, longer.chunk_updates) == (8, 16, 4)
    with pytest.raises(KeyboardInterrupt):
        longer.run(on_progress=stop_at(12))
    assert json.load(open(os.path.join(out, "config.json")))["total_steps"] == 1024
    assert [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(os.path.join(out, "checkpoints"))] == [8]
    done = RunSession.resume(out, QUIET).run()
    assert done.summary["env_steps"] == 1024 and not reporting.is_incomplete(out)

    whole = RunSession.start(CONSTANT_LR.replace(total_steps=1024), num_seeds=2, out=str(tmp_path / "whole"),
                             chunk_updates=4, options=QUIET).run()
    _assert_same_run(done, whole)

    with pytest.raises(SessionError) as e:  # fewer updates than it has done
        RunSession.resume(out, QUIET, total_steps=256)
    assert e.value.field == "total_steps" and "has done 16; give at least 1,024" in str(e.value)


def test_a_budget_the_finished_updates_depend_on_is_refused_and_nothing_changes(tmp_path):
    out = tmp_path / "run"
    RunSession.start(TINY, out=str(out), chunk_updates=8, options=QUIET).run()  # lr annealed over 16 updates
    before = {f: (out / f).read_bytes() for f in ("config.json", "metrics.csv", "summary.json")}
    with pytest.raises(SessionError) as e:
        RunSession.resume(str(out), QUIET, total_steps=2048)
    assert e.value.field == "total_steps" and "anneals linearly to 0 over its 16 updates" in str(e.value)
    assert before == {f: (out / f).read_bytes() for f in before} and not reporting.is_incomplete(str(out))
    # A budget with the same number of updates is the same run: finished.
    with pytest.raises(RunFinished):
        RunSession.resume(str(out), QUIET, total_steps=1024 + 63)


def test_a_run_whose_old_end_was_a_tail_chunk_goes_on_through_the_next_boundary(tmp_path):
    out = str(tmp_path / "run")
    short = RunSession.start(CONSTANT_LR, num_seeds=1, out=out, chunk_updates=3, options=QUIET).run()  # 3, 6, 8
    shown = []
    done = RunSession.resume(out, QUIET, total_steps=1024).run(on_progress=shown.append)
    assert [p.update for p in shown] == [9, 12, 15, 16]  # back on the 3-update boundaries, then the tail
    for name, rows in short.result.metrics.items():
        np.testing.assert_array_equal(done.result.metrics[name][:, :8], rows, err_msg=name)
    # Other chunk programs than an uninterrupted run's, so equal only up to float rounding.
    whole = RunSession.start(CONSTANT_LR.replace(total_steps=1024), num_seeds=1, out=str(tmp_path / "whole"),
                             chunk_updates=3, options=QUIET).run()
    for x, y in zip(jax.tree.leaves(done.result.state.params), jax.tree.leaves(whole.result.state.params)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ runs trained as one program
def _without_throughput(path):
    """metrics.csv without its steps_per_second column (a run's share of a shared program)."""
    lines = path.read_text().splitlines()
    assert lines[0].endswith(",steps_per_second")
    return [line.rsplit(",", 1)[0] for line in lines]


@pytest.mark.extended  # 35 s, four full-optimisation compiles; the default suite resumes a grid in test_sweep
def test_runs_trained_as_one_program_equal_runs_alone_and_resume_together(tmp_path, monkeypatch):
    """A grid of two configurations (lr and eps differ), 2 seeds each, interrupted and resumed as
    one program: each run directory holds what the run alone writes, bit for bit on CPU at
    XLA's default options.  (With FAST_COMPILE, which this session's XLA_FLAGS set, a batch of 4
    members vectorises some reductions otherwise than a batch of 2: last-bit differences.)"""
    monkeypatch.setattr(runner, "FAST_COMPILE", FULL)  # what `fast_compile` options compile with
    grid = [TINY, TINY.replace(lr=1e-3, eps=0.1)]
    outs = [tmp_path / f"v{i}" for i in range(2)]
    sessions = [RunSession.start(c, num_seeds=2, out=str(o), chunk_updates=4, options=EVERY_CHUNK)
                for c, o in zip(grid, outs)]
    with pytest.raises(KeyboardInterrupt):
        run_together(sessions, on_progress=stop_at(8))
    for s, o in zip(sessions, outs):
        note = (o / "INCOMPLETE").read_text()
        assert s.note in note and "interrupted (Ctrl-C)" in note and "step_00000008" in note
    shown = []
    resumed = [RunSession.resume(str(o), QUIET) for o in outs]
    done = run_together(resumed, on_progress=shown.append)
    assert shown[-1].num_seeds == 4 and shown[-1].update == 16  # one display for both runs' seeds
    for config, o, together in zip(grid, outs, done):
        alone = RunSession.start(config, num_seeds=2, out=str(o) + "-alone", chunk_updates=4, options=QUIET).run()
        _assert_same_run(together, alone)
        assert _without_throughput(o / "metrics.csv") == _without_throughput(tmp_path / (o.name + "-alone") / "metrics.csv")
        assert together.summary["runs_in_program"] == 2 and "runs_in_program" not in alone.summary
        assert together.summary["num_seeds"] == 2 and together.summary["env_steps"] == 1024
        assert json.loads((o / "config.json").read_text())["lr"] == config.resolved().lr
        assert not reporting.is_incomplete(str(o))
    # Each run's share of the program's throughput; together they make the program's.
    assert sum(d.result.throughput for d in done) == pytest.approx(shown[-1].steps_per_second)


def test_a_bad_update_in_one_program_names_its_run_and_seed(tmp_path):
    grid = [TINY.replace(total_steps=256), TINY.replace(total_steps=256, lr=1e30, max_grad_norm=float("inf"))]
    sessions = [RunSession.start(c, num_seeds=2, out=str(tmp_path / f"v{i}"), chunk_updates=1, options=QUIET)
                for i, c in enumerate(grid)]
    with pytest.raises(runner.NonFiniteError) as e:
        run_together(sessions)
    assert f"(seed index {e.value.seed} of {tmp_path / 'v1'})" in str(e.value) and e.value.seed in (0, 1)
    for s in sessions:
        assert reporting.is_incomplete(s.out) and str(tmp_path / "v1") in s.note
    assert not (tmp_path / "v0" / "metrics.csv").exists()  # nothing good to write: it failed at once
    assert e.value.update == 1 and not (tmp_path / "v1" / "metrics.csv").exists()


def test_a_diverged_run_keeps_its_curve_up_to_the_bad_update(tmp_path):
    """probe/NaNReward: NaN rewards from each env's 301st step, in update 19 of 16 steps.  The run
    that diverged (the first run's seed 0: the earliest update, then the lowest member) gets a
    metrics.csv of its own seeds' 18 good updates; the run beside it none.  TensorBoard holds
    those updates too, the two before the bad one in its chunk included (they were never logged)."""
    from tests import probes
    from tests.test_logging import read_scalars

    probes.register()
    grid = [TINY.replace(env="probe/NaNReward", total_steps=20 * 64, lr=lr) for lr in (1e-3, 2e-3)]
    options = dataclasses.replace(QUIET, tensorboard=True)
    sessions = [RunSession.start(c, num_seeds=2, out=str(tmp_path / f"v{i}"), chunk_updates=4, options=options)
                for i, c in enumerate(grid)]
    with pytest.raises(runner.NonFiniteError) as e:
        run_together(sessions)
    assert (e.value.update, e.value.seed, e.value.run_dir) == (19, 0, str(tmp_path / "v0"))
    assert sessions[0].note.endswith("metrics.csv holds the 18 updates before it")
    assert not (tmp_path / "v1" / "metrics.csv").exists() and "metrics.csv" not in sessions[1].note
    with open(tmp_path / "v0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["update"], r["seed"]) for r in rows] == [(str(u), str(s)) for s in range(2) for u in range(1, 19)]
    assert [int(r["env_steps"]) for r in rows[:3]] == [64, 128, 192]
    assert all(float(r["episode_return_mean"]) == 5.0 for r in rows if r["episode_return_mean"])
    for v in ("v0", "v1"):
        for seed in ("seed_0", "seed_1"):
            steps = [step for step, _ in read_scalars(tmp_path / v / "tb" / seed)["losses/value_loss"]]
            assert steps == [64 * u for u in range(1, 19)], (v, seed)


def test_a_front_ends_hints_name_the_directory_quoted_for_the_shell(tmp_path):
    """`bpo-jax train --resume /tmp/a b` was the printed hint for the run in '/tmp/a b'."""
    out = tmp_path / "a run"
    options = dataclasses.replace(EVERY_CHUNK, resume_hint="tool --resume {out}")
    with pytest.raises(KeyboardInterrupt):
        RunSession.start(CONSTANT_LR, out=str(out), chunk_updates=4, options=options).run(on_progress=stop_at(4))
    assert (out / "INCOMPLETE").read_text().rstrip().endswith(f"with: tool --resume {shlex.quote(str(out))}")


def test_a_run_whose_directory_is_removed_stops_and_is_not_recreated(tmp_path):
    """Removed mid-run, the folder came back at the next checkpoint and at the end, holding a
    run's files without its INCOMPLETE marker, as if finished.  The run beside it in the same
    program keeps its note with the way to resume it."""
    grid = [CONSTANT_LR, CONSTANT_LR.replace(lr=1e-3)]
    sessions = [RunSession.start(c, num_seeds=2, out=str(tmp_path / f"v{i}"), chunk_updates=2, options=EVERY_CHUNK)
                for i, c in enumerate(grid)]

    def remove_first(p):
        if p.update == 4:
            shutil.rmtree(tmp_path / "v0")

    with pytest.raises(RunDirectoryGone) as e:
        run_together(sessions, on_progress=remove_first)
    assert e.value.run_dir == str(tmp_path / "v0") and not (tmp_path / "v0").exists()
    assert sessions[0].note == f"stopped: the run directory {tmp_path / 'v0'} was removed while the run trained; " \
                               "nothing more is written there"
    note = (tmp_path / "v1" / "INCOMPLETE").read_text()
    assert "step_00000004" in note and "RunSession.resume" in note


@pytest.mark.parametrize("removal", ["whole", "half-way"])
def test_a_run_directory_removed_while_a_checkpoint_is_written_stops_the_run_in_one_line(tmp_path, monkeypatch,
                                                                                         removal):
    """`rm -rf RUN` landing in a save: the run stopped with orbax's error ("NOT_FOUND: Error
    writing ...") and the note "before the first checkpoint was saved", below two dozen logged
    tracebacks; or the save made the folder again and the run went on in it, a folder of
    checkpoints alone.  (An rm racing the save's writes leaves the folder half removed.)"""
    real = checkpoint.save
    out = tmp_path / "run"

    def removed_during(directory, *args, **kwargs):
        if kwargs["update"] != 4:
            return real(directory, *args, **kwargs)
        if removal == "whole":
            shutil.rmtree(out)
            return real(directory, *args, **kwargs)
        for name in os.listdir(out):
            if name != checkpoint.CHECKPOINTS:
                os.remove(out / name)
        raise ValueError("NOT_FOUND: Error writing state.00001/0.0.0 in OCDBT database")  # as orbax's

    monkeypatch.setattr(checkpoint, "save", removed_during)
    session = RunSession.start(CONSTANT_LR, num_seeds=2, out=str(out), chunk_updates=2, options=EVERY_CHUNK)
    with pytest.raises(RunDirectoryGone):
        session.run()
    assert session.note == f"stopped: the run directory {out} was removed while the run trained; nothing more is " \
                           "written there"
    assert not out.exists() if removal == "whole" else os.listdir(out) == [checkpoint.CHECKPOINTS]


@pytest.mark.parametrize("second,message", [
    (dict(config=TINY.replace(num_envs=8)), "may differ in sweepable fields only, but num_envs is 4 in one and 8"),
    (dict(config=TINY.replace(algo="bpo")), "but algo is 'ppo' in one and 'bpo'"),
    (dict(num_seeds=3), "their num_seeds differ (2 and 3)"),
    (dict(chunk_updates=2), "their chunk_updates differ (4 and 2)"),
    (dict(options=dataclasses.replace(QUIET, fast_compile=False)), "their options' fast_compile differ"),
])
def test_runs_that_cannot_share_a_program_are_refused_before_training(tmp_path, second, message):
    first = RunSession.start(TINY, num_seeds=2, out=str(tmp_path / "a"), chunk_updates=4, options=QUIET)
    other = {**dict(config=TINY, num_seeds=2, chunk_updates=4, options=QUIET), **second}
    b = RunSession.start(other.pop("config"), out=str(tmp_path / "b"), **other)
    with pytest.raises(SessionError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        run_together([first, b])
    assert e.value.field == "sessions" and "--" not in str(e.value)
    assert sorted(os.listdir(tmp_path / "a")) == ["INCOMPLETE", "config.json"]  # nothing trained
    # Its note said "continue it from its newest checkpoint", which it has not; resume said only
    # that its INCOMPLETE file tells how to go on.
    for folder in ("a", "b"):
        note = (tmp_path / folder / "INCOMPLETE").read_text()
        assert "cannot train as one program" in note and note.rstrip().endswith(
            "before the first checkpoint was saved; nothing to resume: start the run again with `overwrite`"), note
    with pytest.raises(checkpoint.CheckpointError, match="nothing to resume: start it again from the beginning, over "
                                                         "this folder \\(`overwrite`\\)$"):
        RunSession.resume(str(tmp_path / "a"))
    first.run()  # and the session can still run


def test_run_together_refuses_an_empty_list_a_shared_directory_and_a_session_run_twice(tmp_path):
    with pytest.raises(SessionError, match="`sessions` is empty"):
        run_together([])
    a = RunSession.start(TINY, out=str(tmp_path / "a"), options=QUIET)
    with pytest.raises(SessionError, match="two sessions write the same directory"):
        run_together([a, a])
    with pytest.raises(SessionError, match="`sessions` must be"):
        run_together([a, "b"])


def test_a_run_killed_after_its_last_checkpoint_writes_its_files_on_resume(tmp_path):
    """Killed between the last chunk's checkpoint and the final files (likelier with runs trained
    as one program, which write theirs one after another): resuming compiles nothing, trains
    nothing and finishes the run."""
    out = tmp_path / "run"
    whole = RunSession.start(TINY, num_seeds=2, out=str(out), chunk_updates=4, options=LAST_ONLY).run()
    (out / "summary.json").unlink()
    reporting.mark_incomplete(str(out), "killed")
    done = RunSession.resume(str(out), QUIET).run()
    assert not reporting.is_incomplete(str(out)) and (out / "summary.json").exists()
    assert done.result.compile_seconds < 1.0 and done.summary["num_updates"] == 16
    _assert_same_run(done, whole)


@pytest.mark.parametrize("layout, devices", [
    ({"split": "seeds", "devices": 3, "members": 3}, 3),
    ({"split": "envs", "devices": 1, "members": 3}, 1),
    ({"split": "seeds", "devices": 2, "members": 6}, 1),  # a grid member of 3 seeds, 3 seeds a device: alone, one
    ({"split": "seeds", "devices": 1, "members": 6}, 1),  # a grid member of 3 seeds trained on one device
    ({"split": "envs", "devices": 1, "members": 6}, 1),
    ({"split": "seeds", "devices": 2, "members": 4}, None),  # 2 seeds a device: no count gives 3 seeds that
    ({"split": "envs", "devices": 2, "members": 3}, 2),  # the env batch split over 2: 2 again (it was 1)
    (None, None),  # a checkpoint from before it was recorded
])
def test_the_command_line_resumes_on_the_run_s_own_devices(tmp_path, monkeypatch, layout, devices):
    """A run whose seeds were split over 2 cores, resumed on a machine with another count (or
    with --split envs), computed other per-device programs: its numbers drifted from the update
    after the checkpoint.  The device count that gives each device the seeds it had is restored,
    whatever the cores, and a --split that would change the programs is refused."""
    import argparse

    from bpo_jax import cli

    out = tmp_path / "run"
    RunSession.start(TINY, num_seeds=3, out=str(out), chunk_updates=8, options=LAST_ONLY).run()
    meta_file = os.path.join(checkpoint.locate(str(out))[1], "metadata.json")
    with open(meta_file) as f:
        meta = json.load(f)
    meta.pop("layout")
    if layout is not None:  # as another machine wrote it
        meta["layout"] = layout
    reporting.write_json(meta_file, meta)
    assert checkpoint.read_metadata(os.path.dirname(meta_file)).get("layout") == layout
    asked = []
    monkeypatch.setattr(runner, "use_cpu_cores", lambda seeds, devices=None: asked.append((seeds, devices)))
    cli._use_cpu_cores(argparse.Namespace(split="auto", resume=str(out), seeds=1, env=TINY.env, coordinator=None,
                                          num_processes=None, process_id=None))
    assert asked == [(3, devices)]
    reporting.mark_incomplete(str(out), "stopped")
    if devices not in (None, 1):
        other = "envs" if layout["split"] == "seeds" else "seeds"
        with pytest.raises(ProgramMismatch) as e:
            RunSession.resume(str(out), dataclasses.replace(QUIET, split=other))
        assert (e.value.field, e.value.saved) == ("split", layout["split"])
        # This process has one device: other programs, and the resume says so.
        assert RunSession.resume(str(out), QUIET).resume_note.startswith("note: this run trained with its ")
    else:  # one device's program either way (or nothing to keep): any split resumes
        resumed = RunSession.resume(str(out), dataclasses.replace(QUIET, split="envs"))
        # With a note only where one device's programs are not the run's (a grid member alone
        # on one device that had as many seeds a device runs its own: no note).
        assert (resumed.resume_note is None) == (devices == 1 or layout is None), resumed.resume_note


def test_a_rollout_larger_than_the_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """An Atari stack of 100,000 frames compiled until the machine ran out of memory."""
    monkeypatch.setattr(runner, "memory_bytes", lambda: 2**30)
    big = TINY.replace(num_envs=2**14, num_steps=2**10, total_steps=2**24)  # 2^24 x 2 obs of 16 bytes: 0.5 GiB a seed
    RunSession.start(big, num_seeds=1, out=str(tmp_path / "fits"), options=QUIET)
    with pytest.raises(SessionError) as e:
        RunSession.start(big, num_seeds=3, out=str(tmp_path / "run"), options=QUIET)
    assert str(e.value) == ("one update's rollout keeps 16,777,216 observations of shape (4,) per seed and their final "
                            "observations (1.5 GiB): at least 1.5 GiB for 3 seed(s), more than the 1.0 GiB of memory "
                            "here; lower `num_envs`, `num_steps`, `hidden_sizes`, `reset_pool` or `num_seeds`")
    assert e.value.field == "num_envs" and not (tmp_path / "run").exists()
    # Networks and cached resets count too: a 10^12-wide layer was trained, and XLA aborted the
    # process after the run folder was made; 10^12 cached resets failed after compiling.
    wide = TINY.replace(hidden_sizes=(100_000, 100_000))
    with pytest.raises(SessionError) as e:
        RunSession.start(wide, num_seeds=1, out=str(tmp_path / "run"), options=QUIET)
    # Actor and critic trunks (kernels and biases of 4 -> 10^5 -> 10^5), two logits, one value.
    parameters = 2 * (4 * 10**5 + 10**5 + 10**10 + 10**5) + (2 * 10**5 + 2) + (10**5 + 1)
    assert str(e.value).startswith(f"the networks' {parameters:,} parameters per seed with their gradients and "
                                   f"Adam's moments ({16 * parameters / 2**30:,.1f} GiB): at least")
    pool = TINY.replace(reset_pool=2**26)
    with pytest.raises(SessionError) as e:
        RunSession.start(pool, num_seeds=1, out=str(tmp_path / "run"), options=QUIET)
    assert str(e.value).startswith("67,108,864 cached resets per seed (1.0 GiB): at least 1.0 GiB")
    assert not (tmp_path / "run").exists()
    for field in ("hidden_sizes", "median_hidden_sizes"):
        with pytest.raises(ValueError, match=f"`{field}` must be positive widths below 2\\*\\*31"):
            TINY.replace(**{field: (16, 2**31)}).validate()
    with pytest.raises(ValueError, match=r"`reset_pool` must be in \[0, 2\*\*31\)"):
        TINY.replace(reset_pool=2**31).validate()


def test_a_chunk_is_logged_before_its_checkpoint_is_saved(tmp_path, monkeypatch):
    """A SIGKILL between a checkpoint and the chunk's TensorBoard events left a gap the resumed
    run never filled (it logs from the checkpoint on).  Logged first, a kill between the two
    leaves TensorBoard ahead of the checkpoint, which the resumed run purges."""
    from bpo_jax import tracking

    calls = []
    save, log = checkpoint.Saver.save, tracking.TensorBoard.__call__
    monkeypatch.setattr(checkpoint.Saver, "save", lambda self, chunk: calls.append(("save", chunk.update)) or
                        save(self, chunk))
    monkeypatch.setattr(tracking.TensorBoard, "__call__", lambda self, chunk: calls.append(("log", chunk.update)) or
                        log(self, chunk))
    RunSession.start(TINY, out=str(tmp_path / "run"), chunk_updates=4,
                     options=dataclasses.replace(EVERY_CHUNK, tensorboard=True)).run()
    assert calls[:4] == [("log", 4), ("save", 4), ("log", 8), ("save", 8)], calls
