"""Checkpoints, resume and evaluation: a run killed with SIGKILL and resumed from the command
line ends bit-identical to an uninterrupted one; NaN stops keep the last good checkpoint;
damaged or mismatched checkpoints are refused in one line; eval reads a checkpoint."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bpo_jax import Config, checkpoint, cli, runner, session
from tests import probes

# 32 updates of 64 steps, 4 updates per chunk: 8 chunks, a checkpoint after each (not the
# default 10-minute cadence).  Both normalisers on, so their running statistics must survive the kill too.
TINY = ["--algo", "ppo", "--seeds", "2", "--total-steps", "2048", "--num-envs", "4", "--num-steps", "16",
        "--num-minibatches", "2", "--hidden-sizes", "16", "--chunk-updates", "4", "--checkpoint-every", "1",
        "--normalize-obs", "--normalize-rewards", "--quiet", "--fast-compile"]


def cli_proc(*args, env, wait=True):
    cmd = [sys.executable, "-m", "bpo_jax", *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """One persistent compile cache for this module's subprocesses: the first run compiles."""
    return {**os.environ, "BPO_JAX_CACHE_DIR": str(tmp_path_factory.mktemp("xla-cache"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_env):
    out = tmp_path_factory.mktemp("runs") / "full"
    proc = cli_proc("train", *TINY, "--out", str(out), env=cache_env)
    assert proc.returncode == 0, proc.stderr
    return out


def final_state(run_dir):
    run_dir, ckpt = checkpoint.locate(str(run_dir))
    config = checkpoint.read_config(ckpt)
    meta = checkpoint.read_metadata(ckpt)
    return checkpoint.restore(ckpt, runner.state_template(config, meta["num_seeds"]))


def key_free(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if checkpoint._is_key(x) else x, tree)


def csv_rows(path):
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        r.pop("steps_per_second")  # wall-clock throughput differs between runs
    return rows


def one_line_error(capsys_or_text, *fragments):
    err = capsys_or_text if isinstance(capsys_or_text, str) else capsys_or_text.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("bpo-jax: error:") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[-1], err
    return lines[-1]


def test_killed_run_resumes_to_the_same_result(finished_run, cache_env, tmp_path):
    out = tmp_path / "killed"
    proc = cli_proc("train", *TINY, "--out", str(out), env=cache_env, wait=False)
    deadline = time.monotonic() + 300
    while not checkpoint.list_checkpoints(str(out / "checkpoints")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    saved = checkpoint.list_checkpoints(str(out / "checkpoints"))
    assert (out / "INCOMPLETE").is_file() and not (out / "summary.json").exists()
    assert saved and checkpoint._step_of(saved[-1]) < 32  # killed mid-run
    assert "--resume" in (out / "INCOMPLETE").read_text()

    resumed = cli_proc("train", "--resume", str(out), "--quiet", "--fast-compile", "--checkpoint-every", "1",
                       env=cache_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at update" in resumed.stderr
    assert not (out / "INCOMPLETE").exists() and (out / "summary.json").is_file()

    a, b = final_state(finished_run), final_state(out)
    assert a[3]["update"] == b[3]["update"] == 32
    for x, y in zip(jax.tree.leaves(key_free(a[0])), jax.tree.leaves(key_free(b[0]))):
        np.testing.assert_array_equal(x, y)  # params, Adam state, env states, keys: bit-identical
    assert csv_rows(finished_run / "metrics.csv") == csv_rows(out / "metrics.csv")
    assert len(checkpoint.list_checkpoints(str(out / "checkpoints"))) == 2  # keep the newest 2


def test_nan_stop_keeps_the_last_good_checkpoint_and_nothing_recompiles(tmp_path, capsys, monkeypatch):
    """NaN rewards from update 31 on: the run stops naming update 31 and seed 0; the newest
    checkpoint is the one after update 30.  Between the first and the last good chunk no
    program compiles (the chunk program is compiled once, up front)."""
    probes.register()
    compiles, marks = [], []

    def on_event(name, *args, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    real_save = checkpoint.Saver.save

    def counting_save(self, chunk):
        path = real_save(self, chunk)
        marks.append(len(compiles))
        return path

    monkeypatch.setattr(checkpoint.Saver, "save", counting_save)
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        out = tmp_path / "nan"
        code = cli.main(["train", "--env", "probe/NaNReward", "--algo", "bpo", "--seeds", "1", "--num-envs", "2",
                         "--num-steps", "10", "--num-epochs", "1", "--num-minibatches", "1", "--hidden-sizes", "8",
                         "--total-steps", "800", "--chunk-updates", "5", "--checkpoint-every", "5", "--quiet",
                         "--no-compile-cache", "--fast-compile", "--out", str(out)])
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert code == 1
    line = one_line_error(capsys, "update 31 (seed index 0)", "last good checkpoint", "step_00000030")
    assert "non-finite" in line
    steps = [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(str(out / "checkpoints"))]
    assert steps == [25, 30]
    assert "stopped" in (out / "INCOMPLETE").read_text() and not (out / "summary.json").exists()
    assert len(marks) == 6 and marks[0] == marks[-1], marks  # 6 good chunks, no compile in between


@pytest.mark.parametrize("damage,fragments", [
    ("truncate", ["is damaged", "bytes"]),
    ("metadata", ["unreadable metadata.json"]),
    ("hidden", ["does not match", "Dense_0/kernel"]),
    ("algo", ["does not match", "critic/Dense_1"]),
    ("old-format", ["written by an older bpo-jax (format 1", "with the bpo-jax that wrote it"]),
    ("edited", ["has a config.json edited since it was saved", "restore it"]),
    ("metadata-types", ["has a malformed metadata.json (num_seeds, files: edited?)"]),
])
def test_damaged_or_mismatched_checkpoint_is_refused(finished_run, tmp_path, capsys, damage, fragments):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "INCOMPLETE").write_text("pretend it was killed\n")
    ckpt = checkpoint.locate(str(run))[1]
    if damage == "truncate":
        biggest = max((os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ckpt, "arrays")) for f in fs),
                      key=os.path.getsize)
        with open(biggest, "r+b") as f:
            f.truncate(10)
    elif damage == "metadata":
        with open(os.path.join(ckpt, "metadata.json"), "w") as f:
            f.write('{"format": 2, "upd')
    elif damage == "old-format":
        path = os.path.join(ckpt, "metadata.json")
        json.dump({**json.load(open(path)), "format": 1}, open(path, "w"))
    elif damage == "metadata-types":  # a traceback from deep in the restore ("data type '' not understood")
        path = os.path.join(ckpt, "metadata.json")
        meta = json.load(open(path))
        json.dump({**meta, "num_seeds": "1", "files": {k: [v[0]] for k, v in meta["files"].items()}}, open(path, "w"))
    elif damage == "edited":  # a field deleted read back as its default: another policy, without a word
        path = os.path.join(ckpt, "config.json")
        config = json.load(open(path))
        del config["activation"]
        json.dump(config, open(path, "w"))
    else:  # another program's arrays: written before checkpoints recorded their config.json's digest
        path = os.path.join(ckpt, "config.json")
        config = json.load(open(path))
        config.update({"hidden": {"hidden_sizes": [32]}, "algo": {"algo": "bpo"}}[damage])
        json.dump(config, open(path, "w"))
        meta = json.load(open(os.path.join(ckpt, "metadata.json")))
        del meta["config_sha256"]
        json.dump(meta, open(os.path.join(ckpt, "metadata.json"), "w"))
    before = sorted(os.listdir(run))
    # A damaged newest checkpoint, picked for the user: the message names the one before it
    # (not for one of another program: the run's older checkpoints are of that program too).
    older = "the older checkpoint " + os.path.join(str(run), "checkpoints", "step_00000028")
    for args in (["train", "--resume", str(run), "--no-compile-cache"], ["eval", "--checkpoint", str(run)]):
        assert cli.main(args) == 2
        line = one_line_error(capsys, *fragments)
        assert (older in line) == (damage in ("truncate", "metadata", "edited", "metadata-types")), line
    assert cli.main(["eval", "--checkpoint", ckpt]) == 2  # named by the user: no other is offered
    assert "the older checkpoint" not in one_line_error(capsys, *fragments)
    assert sorted(os.listdir(run)) == before  # refused before anything was touched


def test_a_file_given_as_a_checkpoint_is_named_as_a_file(finished_run, capsys):
    for args in (["eval", "--checkpoint"], ["export", "--checkpoint"], ["train", "--resume"]):
        assert cli.main([*args, str(finished_run / "config.json")]) == 2
        one_line_error(capsys, "config.json is a file, not a run directory")


def test_an_llm_run_is_named_as_one_where_a_checkpoint_is_read(tmp_path, capsys):
    """`train --resume` of an llm run's folder gave train's advice ("no checkpoint in ...: start
    it again from the beginning"), as if it were a train run."""
    from bpo_jax.reporting import LLM_KIND

    for name, marker in (("finished", None), ("stopped", "INCOMPLETE")):
        run = tmp_path / name
        (run / "seed0").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"kind": LLM_KIND}))
        if marker:
            (run / marker).write_text("stopped\n")
        for args in (["train", "--resume"], ["eval", "--checkpoint"], ["export", "--checkpoint"]):
            assert cli.main([*args, str(run)]) == 2
            one_line_error(capsys, f"{run} is a run of bpo-jax llm, which keeps no checkpoints: an llm run does not "
                           "resume (start it again: its bpo-jax llm command with --overwrite), and eval and export read")


def test_resume_refuses_flags_that_change_the_run(finished_run, tmp_path, capsys):
    assert cli.main(["train", "--resume", str(finished_run)]) == 2
    # Its lr anneals linearly: the hint does not send the user to a larger budget it would refuse.
    one_line_error(capsys, "has finished", "a larger budget needs a new run", "bpo-jax eval")
    assert "takes it further" not in capsys.readouterr().err
    # Its lr anneals over its 32 updates: a budget with more updates would change those it has done.
    assert cli.main(["train", "--resume", str(finished_run), "--total-steps", "4096"]) == 2
    one_line_error(capsys, "--total-steps cannot change the number of updates", "anneals linearly")
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "INCOMPLETE").write_text("pretend it was killed\n")
    for flags, fragment in [(["--lr", "0.1"], "drop --lr"), (["--seeds", "3"], "drop --seeds"), (["--chunk-updates", "8"], "drop --chunk-updates"),
                            (["--overwrite"], "--overwrite"), (["--out", str(tmp_path / "elsewhere")], "drop --out")]:
        assert cli.main(["train", "--resume", str(run), "--fast-compile", *flags]) == 2, flags  # as it was made
        one_line_error(capsys, fragment)
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    one_line_error(capsys, "no checkpoint in")
    assert cli.main(["train", "--out", str(run)]) == 2  # a new run cannot land on an unfinished one
    one_line_error(capsys, "not empty", f"--resume {run} continues it")


def test_checkpoint_round_trip_keeps_every_leaf(tmp_path):
    """Every leaf (typed PRNG keys via key_data, normaliser statistics, bools) survives a save
    and restore exactly; only the newest `keep` checkpoints stay; unfinished saves are ignored."""
    config = Config(num_envs=2, num_steps=8, num_minibatches=1, hidden_sizes=(4,), total_steps=64,
                    normalize_obs=True, normalize_rewards=True)
    template = runner.state_template(config, 2)
    rng = np.random.default_rng(0)

    def fake(x):  # random values of the template's shapes; no program to compile
        if checkpoint._is_key(x):
            data = jax.eval_shape(jax.random.key_data, x)
            return jax.random.wrap_key_data(rng.integers(0, 2**32, data.shape, dtype=np.uint32))
        return rng.normal(size=x.shape).astype(x.dtype)

    state = jax.tree.map(fake, template)
    metrics = {"episodes": np.ones((2, 3), np.int32), "nonfinite": np.zeros((2, 3), bool)}
    folder = str(tmp_path / "checkpoints")
    for update in (1, 2, 3):
        checkpoint.save(folder, state, update=update, config=config, num_seeds=2, chunk_updates=1,
                        metrics={k: v[:, :update] for k, v in metrics.items()}, steps_per_second=np.ones(update),
                        train_seconds=1.5, keep=2)
    os.makedirs(os.path.join(folder, ".tmp-step_00000009-1"))  # a save killed half-way
    assert [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(folder)] == [2, 3]
    run_dir, ckpt = checkpoint.locate(str(tmp_path))
    assert run_dir == str(tmp_path) and ckpt.endswith("step_00000003")
    assert checkpoint.read_config(ckpt) == config.resolved()
    restored, rows, sps, meta = checkpoint.restore(ckpt, template)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert restored.key.dtype == state.key.dtype and restored.obs_stats is not None
    for x, y in zip(jax.tree.leaves(key_free(restored)), jax.tree.leaves(key_free(state))):
        np.testing.assert_array_equal(x, y)
    assert rows["nonfinite"].dtype == bool and rows["episodes"].shape == (2, 3) and sps.shape == (3,)
    assert meta["num_seeds"] == 2 and meta["update"] == 3 and meta["bpo_jax_version"]


def test_a_failed_save_is_one_error_and_leaves_no_folder(tmp_path, monkeypatch, caplog):
    """orbax's writer threads logged each failure with its traceback (absl ERROR lines) before
    the save raised it; and a save whose run folder had gone made the folder again."""
    import logging

    class Failing:
        def save(self, path, tree):
            logging.getLogger("absl").error("_SignalingThread.run() raised an exception", exc_info=True)
            raise ValueError("NOT_FOUND: Error writing state.00001/0.0.0")

    config = Config(num_envs=2, num_steps=8, num_minibatches=1, hidden_sizes=(4,), total_steps=64)
    state = {"w": np.ones(3, np.float32)}
    args = dict(update=1, config=config, num_seeds=1, chunk_updates=1, metrics={}, steps_per_second=np.ones(1),
                train_seconds=1.0)
    with pytest.raises(FileNotFoundError, match="no folder .*run to hold"):
        checkpoint.save(str(tmp_path / "run" / "checkpoints"), state, **args)
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(checkpoint, "_checkpointer", Failing)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match="NOT_FOUND"):
        checkpoint.save(str(tmp_path / "run" / "checkpoints"), state, **args)
    assert caplog.records == []
    logging.getLogger("absl").warning("after the save")  # absl's records pass again
    assert [r.getMessage() for r in caplog.records] == ["after the save"]
    assert os.listdir(tmp_path / "run" / "checkpoints") == []  # its temporary folder removed


def test_the_closed_event_loop_errors_of_a_failed_saves_abandoned_writes_are_not_printed(tmp_path, monkeypatch):
    """tensorstore's threads finish a failed save's writes after orbax closed its event loop;
    each callback raised "Event loop is closed" as an unraisable exception, during the save and
    after it, and Python printed ~190 tracebacks around the run's one line (`rm -rf RUN` during
    a save).  Only that error, only during a save or after a failed one: everything else still
    reaches the hook."""
    import types

    closed, other = (types.SimpleNamespace(exc_value=RuntimeError(m)) for m in ("Event loop is closed", "other"))

    class Failing:
        def save(self, path, tree):
            sys.unraisablehook(closed)
            sys.unraisablehook(other)
            raise ValueError("NOT_FOUND: Error writing state.00001/0.0.0")

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    monkeypatch.setattr(checkpoint, "_QUIET_ABSL", checkpoint._QuietWhileSaving())
    monkeypatch.setattr(checkpoint, "_checkpointer", Failing)
    (tmp_path / "run").mkdir()
    config = Config(num_envs=2, num_steps=8, num_minibatches=1, hidden_sizes=(4,), total_steps=64)
    with pytest.raises(ValueError, match="NOT_FOUND"):
        checkpoint.save(str(tmp_path / "run" / "checkpoints"), {"w": np.ones(3, np.float32)}, update=1,
                        config=config, num_seeds=1, chunk_updates=1, metrics={}, steps_per_second=np.ones(1),
                        train_seconds=1.0)
    assert seen == ["other"]
    sys.unraisablehook(closed)  # the abandoned writes finishing later
    sys.unraisablehook(other)
    assert seen == ["other", "other"]
    with checkpoint._QUIET_ABSL.during():  # another save, which ends well: the failed one's writes are over
        pass
    sys.unraisablehook(closed)
    assert seen == ["other", "other", "Event loop is closed"]


def test_without_a_failed_save_closed_event_loop_errors_are_printed(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    quiet = checkpoint._QuietWhileSaving()
    with quiet.during():
        pass
    sys.unraisablehook(type("U", (), {"exc_value": RuntimeError("Event loop is closed")})())
    assert seen == ["Event loop is closed"]


def test_saves_overlapping_in_threads_keep_absl_quiet_until_the_last_ends(caplog):
    """Saved and restored as a logger level, the quiet outlived two overlapping saves for good."""
    import logging

    caplog.set_level(logging.DEBUG)
    absl = logging.getLogger("absl")
    first, second = checkpoint._QUIET_ABSL.during(), checkpoint._QUIET_ABSL.during()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    absl.error("while the second save runs")
    second.__exit__(None, None, None)
    absl.error("after both")
    assert [r.getMessage() for r in caplog.records] == ["after both"]


def test_saver_cadence_by_updates_by_wall_clock_and_always_the_last_chunk(monkeypatch):
    """Every N updates, or every S seconds of wall clock (the default: 10 minutes), and the last
    chunk whatever the cadence."""
    clock = [0.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: clock[0])
    by_updates = checkpoint.Saver("unused", Config(), 1, every_updates=4, every_seconds=None)
    due = []
    for update in (2, 4, 6, 8, 9):
        if by_updates.due(update, 10):
            due.append(update)
            by_updates.last_update = update
    assert due == [4, 8] and by_updates.due(10, 10)
    by_clock = checkpoint.Saver("unused", Config(), 1, every_seconds=session.RunOptions().checkpoint_every_seconds)
    clock[0] = 599.0
    assert not by_clock.due(5, 10) and by_clock.due(10, 10)
    clock[0] = 600.0
    assert by_clock.due(5, 10)


def test_eval_reports_each_seed_and_writes_json(finished_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert cli.main(["eval", "--checkpoint", str(finished_run), "--episodes", "3", "--seed", "1",
                     "--out", str(out), "--video"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("seed 0: return") and lines[1].startswith("seed 1: return")
    assert lines[2].startswith("all seeds: return")
    assert "video skipped" in captured.err and "Traceback" not in captured.err  # gymnax cannot render
    result = json.loads(out.read_text())
    assert result["update"] == 32 and result["episodes"] == 3 and len(result["per_seed"]) == 2
    for seed in result["per_seed"]:
        assert len(seed["returns"]) == 3 and seed["episodes_finished"] == 3
        assert 8 <= seed["mean_return"] <= 500 and seed["mean_return"] == pytest.approx(np.mean(seed["returns"]))
    # Deterministic policy, same evaluation seed: the same numbers again.
    assert cli.main(["eval", "--checkpoint", str(finished_run), "--episodes", "3", "--seed", "1",
                     "--out", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["per_seed"] == result["per_seed"]


@pytest.mark.parametrize("changes,message", [
    (dict(algo="my-algo"), "was trained with algorithm 'my-algo', which is not registered in this process: register "
                           "it (bpo_jax.algorithms.register) before loading the run"),
    (dict(env="toy/Walk"), "was trained on 'toy/Walk', whose suite 'toy' is not registered in this process: register "
                           "it (bpo_jax.envs.register_suite) before loading the run"),
])
def test_a_run_of_a_plugin_not_registered_says_to_register_it(tmp_path, changes, message):
    """It said the checkpoint's config.json was invalid and suggested resuming it as ppo."""
    values = {**Config().to_dict(), **changes}
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.read_config(str(tmp_path))
    assert str(e.value) == f"checkpoint {tmp_path} {message}"


def test_a_config_json_that_is_not_an_object_is_one_line(tmp_path):
    """It was an AttributeError ('list' object has no attribute 'get'), a traceback in eval."""
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.read_config(str(tmp_path))
    assert str(e.value) == f"checkpoint {tmp_path} has an invalid config.json: a JSON list, not an object"


def test_a_checkpoint_removed_while_it_is_read_is_looked_for_again(finished_run, tmp_path, monkeypatch):
    """eval and export of a run still training failed every time with "checkpoint ... is
    incomplete: no metadata.json; the older checkpoint <a newer one> can be given instead": the
    run had pruned the checkpoint while it was read (seconds: building the env between the reads)."""
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    newest, older = checkpoint.list_checkpoints(str(run / "checkpoints"))[::-1][:2]
    real, calls, doomed = checkpoint.state_template, [], [newest]

    def pruned_meanwhile(config, seeds):
        calls.append(seeds)
        if doomed:
            shutil.rmtree(doomed.pop())  # as the run's Saver.prune does after a newer save
        return real(config, seeds)

    monkeypatch.setattr(checkpoint, "state_template", pruned_meanwhile)
    loaded = checkpoint.load(str(run))
    assert loaded.path == older and len(calls) == 2
    doomed.append(older)
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {re.escape(older)} was removed while it was "
                                                         "read .*give the run directory, for its newest"):
        checkpoint.load(older)  # named by the user: not another one
    assert not os.path.exists(older)
    with pytest.raises(checkpoint.CheckpointError, match="the checkpoint path is empty"):
        checkpoint.load("")  # it read the current folder
    # Caught half-removed (shutil.rmtree deletes a folder's files first), a newer one saved: that one is read.
    run = tmp_path / "again"
    shutil.copytree(finished_run, run)
    newest = checkpoint.list_checkpoints(str(run / "checkpoints"))[-1]
    newer = str(run / "checkpoints" / "step_99999999")
    calls.clear()

    def saved_and_pruning(config, seeds):
        calls.append(seeds)
        if len(calls) == 1:
            shutil.copytree(newest, newer)
            os.remove(os.path.join(newest, "metadata.json"))
        return real(config, seeds)

    monkeypatch.setattr(checkpoint, "state_template", saved_and_pruning)
    assert checkpoint.load(str(run)).path == newer and len(calls) == 2
