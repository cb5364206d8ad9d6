"""bpo_jax.sweep, curves and report: the smoke suite end to end through the command line, an
interrupted sweep resumed, and the verdicts against the paper's values on hand-made curves."""
import csv
import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

from bpo_jax import Config, cli, curves, report, sweep
from bpo_jax.session import RunOptions, RunSession

pytestmark = pytest.mark.slow  # ~1 minute: 6 small compiled runs

STEPS = 4096  # 8 CartPole/Pendulum updates of 4 envs x 128 steps


def _sweep_args(out, seeds=2, steps=STEPS):
    return ["sweep", "--suite", "smoke", "--seeds", str(seeds), "--total-steps", str(steps), "--out", str(out),
            "--quiet", "--no-tensorboard", "--fast-compile"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "smoke"
    assert cli.main(_sweep_args(out)) == 0
    return out


def test_smoke_sweep_writes_runs_curves_figure_report_and_summary(smoke):
    names = [f"smoke_{t}__{a}" for t in ("CartPole-v1", "Pendulum-v1") for a in ("bpo", "ppo")]
    assert sorted(os.listdir(smoke / "runs")) == sorted(names)
    for f in ("sweep.json", "curves.csv", "figure.png", "report.md", "summary.json"):
        assert (smoke / f).stat().st_size > 0, f
    summary = json.loads((smoke / "summary.json").read_text())
    assert [r["run"] for r in summary["runs"]] == names  # the plan's order
    for r in summary["runs"]:
        assert r["seeds"] == 2 and r["env_steps"] == STEPS and len(r["final_return_per_seed"]) == 2
        # summary.json of the run and the sweep's own per-seed values agree
        assert np.nanmean(r["final_return_per_seed"]) == pytest.approx(r["final_return_mean"], rel=1e-4)
    rows = list(csv.DictReader(open(smoke / "curves.csv")))
    assert len(rows) == 4 * 2 * (STEPS // 512)  # runs x seeds x updates
    assert {r["env"] for r in rows} == {"gymnax/CartPole-v1", "gymnax/Pendulum-v1"}
    text = (smoke / "report.md").read_text()
    assert text.count("no paper value for this task") == 4


def test_rerun_keeps_finished_runs_and_another_plan_is_refused(smoke, capsys):
    before = {p: os.path.getmtime(smoke / "runs" / p / "metrics.csv") for p in os.listdir(smoke / "runs")}
    assert cli.main(_sweep_args(smoke)) == 0
    assert capsys.readouterr().err.count("finished earlier, kept") == 4
    assert before == {p: os.path.getmtime(smoke / "runs" / p / "metrics.csv") for p in before}
    assert cli.main(_sweep_args(smoke, seeds=3)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "another --seeds (2, asked 3)" in err
    # The resume hint repeats every flag that shapes the programs, --fast-compile included.
    # So do the watching flags, so a resumed sweep watches as the first call did; paths are quoted.
    assert cli._sweep_command(cli.parse_args(_sweep_args(smoke))).endswith(
        f"--out {smoke} --fast-compile --quiet --no-tensorboard")
    command = cli._sweep_command(cli.parse_args(["sweep", "--suite", "smoke", "--out", "my runs/{x}",
                                                 "--checkpoint-every", "90s"]))
    assert command.endswith("--out 'my runs/{x}' --checkpoint-every 90s")


def test_a_larger_budget_takes_every_run_further_and_a_smaller_one_is_refused(smoke, tmp_path, capsys):
    out = tmp_path / "longer"
    shutil.copytree(smoke, out)
    first = {p: (out / "runs" / p / "metrics.csv").read_text().splitlines() for p in os.listdir(out / "runs")}
    assert cli.main(_sweep_args(out, steps=2 * STEPS)) == 0
    assert capsys.readouterr().err.count(f"on to {2 * STEPS:,} steps per seed") == 4
    assert json.loads((out / "sweep.json").read_text())["total_steps"] == 2 * STEPS
    summary = json.loads((out / "summary.json").read_text())
    assert [r["env_steps"] for r in summary["runs"]] == [2 * STEPS] * 4
    for p, rows in first.items():  # the first budget's updates are kept as they were, not redone
        longer = (out / "runs" / p / "metrics.csv").read_text().splitlines()  # rows by seed, then update
        kept = [row for row in longer[1:] if int(row.split(",")[0]) <= STEPS // 512]
        assert len(longer) == 1 + 2 * (len(rows) - 1) and longer[0] == rows[0] and kept == rows[1:], p
    assert len(list(csv.DictReader(open(out / "curves.csv")))) == 4 * 2 * (2 * STEPS // 512)

    assert cli.main(_sweep_args(out, steps=STEPS)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"trains to {2 * STEPS:,} steps per seed; a sweep goes on to more steps, not fewer" in err
    assert json.loads((out / "sweep.json").read_text())["total_steps"] == 2 * STEPS


def test_a_run_taken_past_the_sweeps_budget_by_hand_is_named_before_anything_runs(smoke, tmp_path, capsys):
    """The sweep said it was "going on ... from 8,192 on to 4,096 steps" and then failed on a
    --total-steps the user never gave."""
    out = tmp_path / "extended"
    shutil.copytree(smoke, out)
    run = out / "runs" / "smoke_Pendulum-v1__ppo"  # a constant learning rate: it can go further
    RunSession.resume(str(run), RunOptions(tensorboard=False, progress=False, fast_compile=True),
                      total_steps=2 * STEPS).run()
    assert cli.main(_sweep_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"bpo-jax: error: smoke_Pendulum-v1__ppo in {out} trains to {2 * STEPS:,} steps per seed; a sweep "
                   "goes on to more steps, not fewer: raise --total-steps or choose another --out")


def test_plot_and_report_redraw_from_saved_csvs(smoke, tmp_path, capsys):
    fig = tmp_path / "f.png"
    assert cli.main(["plot", str(smoke), "--out", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = smoke / "runs" / "smoke_CartPole-v1__bpo"
    assert cli.main(["report", str(one)]) == 0
    assert "| gymnax/CartPole-v1 | BPO | 4,096 | 2 |" in (one / "report.md").read_text()
    capsys.readouterr()
    assert cli.main(["plot", str(smoke), str(one)]) == 2  # two inputs need --out
    assert cli.main(["report", str(tmp_path)]) == 2  # nothing finished in it
    err = capsys.readouterr().err.splitlines()
    assert "--out is needed" in err[0] and "holds no finished run" in err[1]


def test_plot_and_report_leave_out_unfinished_runs_and_count_each_run_once(smoke, tmp_path, capsys):
    """A run taken further and interrupted still holds its earlier metrics.csv: it was reported
    as finished at its old budget.  A run reached twice was drawn and tabled twice."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out, ignore=shutil.ignore_patterns("figure.png", "report.md"))
    (out / "runs" / "smoke_Pendulum-v1__ppo" / "INCOMPLETE").write_text("taken further, interrupted\n")
    assert cli.main(["report", str(out), str(out / "runs"), "--out", str(tmp_path / "r.md")]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == ("bpo-jax: note: left out 1 unfinished run(s) (marked INCOMPLETE: each one's "
                                    f"INCOMPLETE file says how to finish it): {out / 'runs' / 'smoke_Pendulum-v1__ppo'}")
    assert "wrote" in captured.out and "(3 finished run(s))" in captured.out
    text = (tmp_path / "r.md").read_text()
    assert text.count("| gymnax/Pendulum-v1 | PPO |") == 0 and text.count("| gymnax/CartPole-v1 | BPO |") == 1
    with pytest.raises(curves.CurveError, match="has not finished .its INCOMPLETE file says why."):
        curves.load(str(out / "runs" / "smoke_Pendulum-v1__ppo"))
    # A report of a sweep directory is the sweep's own: its title.
    assert cli.main(["report", str(smoke), "--out", str(tmp_path / "s.md")]) == 0
    assert (tmp_path / "s.md").read_text().startswith("# smoke: BPO, PPO, 2 seeds\n")


def test_runs_with_the_same_settings_are_told_apart_by_their_budget_or_folder():
    steps, r = np.arange(1, 3) * 100.0, np.ones((1, 2))
    base = {"env": "e", "algo": "bpo", "lr": 3e-4, "total_steps": 200}
    made = [dataclasses.replace(_curve("e", "bpo", steps, r), settings=s, run_dir=d)
            for s, d in ((base, "a/one/run"), ({**base, "total_steps": 400}, "a/two/run"))]
    assert [c.variant for c in curves.name_variants(made)] == ["total_steps=200", "total_steps=400"]
    same = [dataclasses.replace(c, settings=base) for c in made]
    assert [c.variant for c in curves.name_variants(same)] == [os.path.join("one", "run"), os.path.join("two", "run")]


def test_a_seed_without_a_value_is_counted_as_missing_in_the_report():
    steps = np.arange(1, 21) * 100_000
    returns = np.array([[100.0] * 20, [np.nan] * 20])
    c = dataclasses.replace(_curve("gymnax/CartPole-v1", "bpo", steps, returns),
                            episodes=np.array([[1.0] * 20, [0.0] * 20]))
    assert "| 2,000,000 | 1 of 2 | 100.0" in report.markdown([c])


def test_budgets_compare_in_whole_updates(smoke, tmp_path, capsys):
    """16 steps more than a finished 4,096-step sweep is no further update: the runs are kept.
    It said "going on ... to 4,112", then failed saying a larger budget would take it further."""
    out = tmp_path / "same"
    shutil.copytree(smoke, out)
    assert cli.main(_sweep_args(out, steps=STEPS + 16)) == 0
    assert capsys.readouterr().err.count("finished earlier, kept") == 4


def test_a_sweep_called_again_splits_its_programs_over_the_devices_its_runs_trained_on(smoke, tmp_path, capsys,
                                                                                     monkeypatch):
    """A sweep called again on a machine with another count of cores split its programs by that
    machine's cores: its resumed runs went on to float rounding, not bit for bit (only `train
    --resume` restored a run's layout).  sweep.json records the CPU device count; the command line
    restores it, and a library caller whose process has another count is told."""
    import jax

    from bpo_jax import reporting, runner

    record = json.loads((smoke / "sweep.json").read_text())
    assert record["cpu_devices"] == len(jax.devices())
    out = tmp_path / "moved"
    shutil.copytree(smoke, out)
    (out / "sweep.json").write_text(json.dumps({**record, "cpu_devices": 3}))  # as a 3-core machine wrote it
    asked = []
    monkeypatch.setattr(runner, "use_cpu_cores", lambda seeds, devices=None: asked.append((seeds, devices)))
    assert cli.main(_sweep_args(out)) == 0
    assert asked == [(2, 3)]
    assert "note:" not in capsys.readouterr().err  # finished runs kept: nothing resumes
    assert json.loads((out / "sweep.json").read_text())["cpu_devices"] == 3  # kept, not this process's count
    run = out / "runs" / "smoke_CartPole-v1__ppo"
    reporting.mark_incomplete(str(run), "killed")
    plan = sweep.plan("smoke", num_seeds=2, total_steps=STEPS)
    monkeypatch.setattr(runner, "cpu_device_count_chosen", lambda: True)  # a count the user set: unset it
    assert sweep._devices_moved(plan, str(out)).endswith(
        "(XLA_FLAGS' --xla_force_host_platform_device_count or jax_num_cpu_devices ($JAX_NUM_CPU_DEVICES) sets this "
        "process's count: unset it)")
    monkeypatch.setattr(runner, "cpu_device_count_chosen", lambda: False)
    said = []
    sweep.run(sweep.plan("smoke", num_seeds=2, total_steps=STEPS), str(out),
              RunOptions(progress=False, tensorboard=False, fast_compile=True), say=said.append)
    assert said[0] == (f"note: this sweep's runs trained on 3 CPU device(s) and this process has {len(jax.devices())}: "
                       "the runs it resumes go on to float rounding, not bit for bit (`bpo-jax sweep` restores the "
                       "count; from Python, call bpo_jax.runner.use_cpu_cores(..., devices=3) before JAX starts)")
    assert sweep.recorded_devices(str(tmp_path)) is None  # no sweep there
    (out / "sweep.json").write_text(json.dumps({**record, "cpu_devices": 0}))
    with pytest.raises(sweep.SweepError, match="cpu_devices missing or malformed"):
        sweep.run(sweep.plan("smoke", num_seeds=2, total_steps=STEPS), str(out), RunOptions(progress=False))


def test_a_sweep_is_the_same_whatever_the_order_of_its_algorithms(tmp_path):
    assert sweep.plan("smoke", ("ppo", "bpo"), 1).asked() == sweep.plan("smoke", ("bpo", "ppo"), 1).asked()


@pytest.mark.parametrize("text,fragment", [
    ("{not json", "is unreadable"), ("[]", "is not a sweep record"),
    ('{"suite": "smoke", "algos": [1, 2], "num_seeds": 1, "tasks": ["t"], "total_steps": null, "runs": ["r"]}',
     "is not a sweep record (algos missing or malformed"),
])
def test_a_damaged_sweep_file_is_named(tmp_path, text, fragment):
    (tmp_path / "sweep.json").write_text(text)
    with pytest.raises(sweep.SweepError, match=f"sweep.json {re.escape(fragment)}"):
        sweep.run(sweep.plan("smoke", "bpo", 1, 512), str(tmp_path), RunOptions(progress=False))
    assert sweep.title_of(str(tmp_path)) is None  # plot and report draw it untitled, not a traceback


@pytest.mark.parametrize("damage,fragment", [
    ("no-metrics", "lacks metrics.csv (deleted?)"), ("no-config", "lacks config.json (deleted?)"),
    ("binary", "metrics.csv is not text"),
])
def test_a_finished_run_with_a_file_deleted_or_damaged_is_named_with_its_remedy(smoke, tmp_path, capsys, damage,
                                                                                 fragment):
    """A deleted metrics.csv was resumed and then called finished; a deleted config.json stopped
    the sweep with a FileNotFoundError and the advice to run it again; bytes that are no text
    gave a bare UnicodeDecodeError."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    run = out / "runs" / "smoke_CartPole-v1__ppo"
    if damage == "binary":
        with open(run / "metrics.csv", "ab") as f:
            f.write(b"\xff\xfe\x00")
    else:
        (run / ("metrics.csv" if damage == "no-metrics" else "config.json")).unlink()
    for command in (_sweep_args(out), ["report", str(out)], ["plot", str(out)]):
        assert cli.main(command) == 2, command
        lines = capsys.readouterr().err.strip().splitlines()  # a sweep's progress lines, then the error
        assert lines[-1].startswith("bpo-jax: error: ") and str(run) in lines[-1] and fragment in lines[-1], lines
        if command[0] == "sweep":
            assert lines[-1].endswith(f"remove {run} and run the sweep again to train it anew")


@pytest.mark.parametrize("edit,fragment", [
    ({"lr": 0.5}, "holds a run with lr 0.5 where this sweep has 0.001 (its config.json edited, or the preset "
                  "changed since?)"),
    ({"env": "gymnax/Acrobot-v1"}, "holds a run with env 'gymnax/Acrobot-v1' where this sweep has 'gymnax/CartPole-v1'"),
    ({"num_seeds": 3}, "holds a run with --seeds 3 where this sweep has 2 (its config.json edited?)"),
    ("{", "config.json is unreadable (Expecting property name"),
    ("[1]", "config.json is unreadable (a JSON list, not an object; edited, or written by another bpo-jax version?)"),
])
def test_a_finished_run_whose_config_was_edited_is_refused_with_its_remedy(smoke, tmp_path, capsys, edit, fragment):
    """An edited config.json was kept as the sweep's run (report.md then had a row of Acrobot in
    a CartPole sweep); an unreadable one stopped the sweep with a JSON error naming no file."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    run = out / "runs" / "smoke_CartPole-v1__bpo"
    config = run / "config.json"
    config.write_text(edit if isinstance(edit, str) else json.dumps({**json.loads(config.read_text()), **edit}))
    report_before = (out / "report.md").read_text()
    assert cli.main(_sweep_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"bpo-jax: error: {run}") and fragment in err, err
    assert err.endswith(f"restore it, or remove {run} and run the sweep again to train it anew"), err
    assert (out / "report.md").read_text() == report_before


def test_a_damaged_finished_run_is_refused_before_the_runs_before_it_train(smoke, tmp_path, capsys):
    """A cut metrics.csv was found only when the figure was redrawn after the first program: the
    runs before it trained first, and the sweep stopped part way."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    shutil.rmtree(out / "runs" / "smoke_CartPole-v1__bpo")  # first in the plan: it would train again
    metrics = out / "runs" / "smoke_Pendulum-v1__ppo" / "metrics.csv"
    metrics.write_text(metrics.read_text()[:-30])
    assert cli.main(_sweep_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{metrics} line" in err and err.endswith("run the sweep again to train it anew"), err
    assert not (out / "runs" / "smoke_CartPole-v1__bpo").exists()


def test_a_finished_run_without_its_summary_json_is_kept(smoke, tmp_path, capsys):
    """It stopped the sweep with a FileNotFoundError and the advice to run the same command
    again, which failed the same way: summary.json holds timings only; the curve is whole."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    (out / "runs" / "smoke_CartPole-v1__bpo" / "summary.json").unlink()
    assert cli.main(_sweep_args(out)) == 0
    assert capsys.readouterr().err.count("finished earlier, kept") == 4
    first = json.loads((out / "summary.json").read_text())["runs"][0]
    assert first["run"] == "smoke_CartPole-v1__bpo" and first["compile_seconds"] is None
    assert first["final_return_mean"] == pytest.approx(np.mean(first["final_return_per_seed"]), rel=1e-4)


def test_a_run_compiled_otherwise_is_refused_before_anything_runs(smoke, tmp_path, capsys):
    """The smoke sweep ran with --fast-compile; going on without it said "going on ...", recorded
    the new budget in sweep.json, then stopped with "resume with --fast-compile = True"."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    assert cli.main([a for a in _sweep_args(out, steps=2 * STEPS) if a != "--fast-compile"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"bpo-jax: error: smoke_CartPole-v1__bpo in {out} was compiled with --fast-compile, and a run goes "
                   "on compiled as it started (float rounding differs): run the sweep with --fast-compile")
    assert json.loads((out / "sweep.json").read_text())["total_steps"] == STEPS
    # Finished runs that need no more updates compile nothing: kept, whatever the flag.
    assert cli.main([a for a in _sweep_args(out) if a != "--fast-compile"]) == 0
    assert capsys.readouterr().err.count("finished earlier, kept") == 4
    # A sweep.json from before it recorded the choice takes its runs' (not the call's).
    record = json.loads((out / "sweep.json").read_text())
    assert record.pop("fast_compile") is True
    (out / "sweep.json").write_text(json.dumps(record))
    assert cli.main([a for a in _sweep_args(out) if a != "--fast-compile"]) == 0
    assert json.loads((out / "sweep.json").read_text())["fast_compile"] is True


def test_a_run_without_checkpoints_to_go_on_from_says_how_to_train_it_anew(smoke, tmp_path, capsys):
    """"choose another --out" alone left out that removing the one run keeps all the others."""
    out = tmp_path / "copy"
    shutil.copytree(smoke, out)
    run = out / "runs" / "smoke_Pendulum-v1__bpo"
    shutil.rmtree(run / "checkpoints")  # space made by hand
    assert cli.main(_sweep_args(out, steps=2 * STEPS)) == 2
    assert capsys.readouterr().err.strip() == (
        f"bpo-jax: error: smoke_Pendulum-v1__bpo in {out} kept no checkpoint to go on from (its checkpoints deleted?); "
        f"remove {run} to train it anew to the new budget, or choose another --out")
    assert json.loads((out / "sweep.json").read_text())["total_steps"] == STEPS


def test_the_resume_hint_carries_the_plugins(tmp_path):
    """Without its --plugin, the hint's command refused the plug-in's algorithm as unknown."""
    plugin = tmp_path / "noop_plugin.py"
    plugin.write_text("x = 1\n")
    args = cli.parse_args(["sweep", "--plugin", str(plugin), "--suite", "smoke", "--out", "o"])
    assert cli._sweep_command(args).startswith(f"bpo-jax sweep --plugin {plugin} --suite smoke --algos bpo,ppo ")


def test_a_run_in_which_no_episode_ended_says_so(tmp_path):
    """One 512-step update of 200-step Pendulum episodes: the line said "final return nan"."""
    plan = sweep.plan("smoke", algos="ppo", num_seeds=1, total_steps=512, tasks="Pendulum-v1")
    said = []
    sweep.run(plan, str(tmp_path), RunOptions(progress=False, tensorboard=False, fast_compile=True), say=said.append)
    assert said[-1].startswith("[sweep 1/1] smoke/Pendulum-v1 ppo: final return n/a (no episode ended in the last 10% of updates) in "), said
    assert "| 0 of 1 | n/a |" in (tmp_path / "report.md").read_text()


def test_plot_writes_the_format_its_file_name_asks_for(smoke, tmp_path, capsys):
    assert cli.main(["plot", str(smoke), "--out", str(tmp_path / "f.pdf")]) == 0
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    assert cli.main(["plot", str(smoke), "--out", str(tmp_path / "f.svg")]) == 0
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()[:1000]
    capsys.readouterr()
    assert cli.main(["plot", str(smoke), "--out", str(tmp_path / "f.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the file name's extension picks the image format" in err
    assert not (tmp_path / "f.xyz").exists()


def _damaged_copy(smoke, tmp_path, damage):
    run = tmp_path / damage
    shutil.copytree(smoke / "runs" / "smoke_CartPole-v1__bpo", run,
                    ignore=shutil.ignore_patterns("figure.png", "report.md"))  # another test's outputs
    metrics, config = run / "metrics.csv", run / "config.json"
    lines = metrics.read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    if damage == "cut-row":
        metrics.write_text("".join(lines)[:-30])
    elif damage == "cut-rows":  # seed 0's first 6 updates left: a whole grid, short of summary.json
        metrics.write_text("".join(lines[:7]))
    elif damage == "missing-seed-row":
        metrics.write_text("".join(lines[:-3] + lines[-2:]))
    elif damage == "nan":
        cells = lines[-1].strip().split(",")
        assert float(cells[header.index("episodes")]) > 0
        cells[header.index("episode_return_mean")] = "nan"
        metrics.write_text("".join(lines[:-1]) + ",".join(cells) + "\n")
    elif damage == "episodes":
        cells = lines[-1].strip().split(",")
        cells[header.index("episodes")] = "nan"
        metrics.write_text("".join(lines[:-1]) + ",".join(cells) + "\n")
    elif damage == "text":
        cells = lines[2].strip().split(",")
        cells[header.index("episode_return_mean")] = "abc"
        metrics.write_text("".join(lines[:2]) + ",".join(cells) + "\n" + "".join(lines[3:]))
    elif damage == "config":
        config.write_text(config.read_text()[:40])
    return run


@pytest.mark.parametrize("damage,fragments", [
    ("cut-row", ["metrics.csv line", "cells for", "columns (a cut or edited file?)"]),
    ("cut-rows", ["metrics.csv ends at 3,072 steps per seed but", "summary.json records 4,096"]),
    ("missing-seed-row", ["metrics.csv lacks rows: 15 (seed, update) rows for 2 seed(s) x 8 updates"]),
    ("nan", ["episode_return_mean is nan where", "non-finite rewards?"]),
    ("episodes", ["metrics.csv line 17: episodes is 'nan', not a count"]),
    ("text", ["metrics.csv line 3 does not parse", "could not convert string to float: 'abc'"]),
    ("config", ["config.json is unreadable"]),
])
def test_a_damaged_run_is_named_not_reported_wrong(smoke, tmp_path, capsys, damage, fragments):
    """plot and report refuse a run whose files were cut or edited, in one line naming the file,
    instead of a traceback or a report of the wrong numbers."""
    run = _damaged_copy(smoke, tmp_path, damage)
    with pytest.raises(curves.CurveError) as e:
        curves.load(str(run))
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)
    for command in ("plot", "report"):
        assert cli.main([command, str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(run) in err and fragments[0] in err
    assert not (run / "figure.png").exists() and not (run / "report.md").exists()


def test_bad_sweep_input_is_one_line(tmp_path, capsys):
    for args, fragment in ((["--suite", "nope"], "unknown suite 'nope'"),
                           (["--suite", "smoke", "--algos", "bpo,sac"], "unknown algo 'sac'; valid: bpo, ppo (in --algos)"),
                           (["--suite", "smoke", "--algos", "BPO"], "unknown algo 'BPO'; did you mean 'bpo'?"),
                           (["--suite", "smoke", "--seeds", "0"], "--seeds must be >= 1"),
                           (["--suite", "smoke", "--tasks", "Nope"], "unknown smoke task 'Nope'; valid: smoke/Cart"),
                           (["--suite", "smoke", "--tasks", "Cartpole"],
                            "unknown smoke task 'Cartpole'; did you mean 'smoke/CartPole-v1'?"),
                           (["--suite", "smoke", "--algos", "bpo,bpo"], "--algos names 'bpo' twice"),
                           (["--suite", "smoke", "--tasks", "CartPole-v1,smoke/CartPole-v1"],
                            "--tasks names 'smoke/CartPole-v1' twice ('CartPole-v1' and 'smoke/CartPole-v1')"),
                           (["--suite", "smoke", "--tasks", ","], "--tasks is empty"),
                           # An empty name between commas is a slip, not a name to drop:
                           (["--suite", "smoke", "--algos", "bpo,,ppo"],
                            "argument --algos: an empty name in 'bpo,,ppo'; give names separated by single commas"),
                           (["--suite", "smoke", "--algos", "ppo,"], "argument --algos: an empty name in 'ppo,'"),
                           (["--suite", "smoke", "--tasks", "CartPole-v1,,Pendulum-v1"],
                            "argument --tasks: an empty name in 'CartPole-v1,,Pendulum-v1'"),
                           # In the sweep's words: it has no --lr or --num-envs (presets and --grid set them).
                           (["--suite", "smoke", "--algos", "ppo", "--grid", "lr=-1,0.1"],
                            "run smoke_CartPole-v1__ppo__lr=-1: lr must be > 0, got -1.0"),
                           (["--suite", "smoke", "--total-steps", "10"],
                            "--total-steps 10 is less than one update's batch (num_envs 4 x num_steps 128 = 512)"),
                           # Not "install IsaacLab", after which it is refused all the same:
                           (["--suite", "paper/isaaclab"], "run each isaaclab/ preset on its own: bpo-jax train")):
        assert cli.main(["sweep", *args, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and fragment in err, err
        assert not (tmp_path / "o").exists()


def test_a_sweep_inside_a_sweep_or_a_run_directory_is_refused(smoke, capsys):
    """It was made there: `bpo-jax report` on the outer sweep then counted its runs as the
    outer's, and a run's folder got a sweep in it."""
    run = smoke / "runs" / "smoke_CartPole-v1__bpo"
    for out, owner in ((smoke / "more", f"sweep in {os.path.realpath(smoke)}, whose plot and report would count this "
                                        "sweep's runs as its own"),
                       (smoke / "runs" / "new", f"sweep in {os.path.realpath(smoke)}"),
                       (run / "sub", f"run in {os.path.realpath(run)}, whose folder holds its own files only")):
        assert cli.main(_sweep_args(out)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"bpo-jax: error: {out} is inside the {owner}"), err
        assert err.endswith("; choose an --out outside it") and "\n" not in err
        assert not out.exists()


@pytest.mark.parametrize("kwargs,fragment", [
    ({"algos": ("bpo", "bpo")}, "`algos` names 'bpo' twice"),
    ({"algos": ("ppo", "bpo", "ppo")}, "`algos` names 'ppo' twice"),
    ({"tasks": ("Pendulum-v1", "Pendulum-v1")}, "`tasks` names 'smoke/Pendulum-v1' twice"),
    ({"tasks": ("CartPole-v1", "smoke/CartPole-v1")}, "`tasks` names 'smoke/CartPole-v1' twice"),
    ({"tasks": ()}, "`tasks` is empty"),
    ({"algos": None}, "`algos` must be a name or a sequence of names, got None"),
    ({"algos": ("bpo", 1)}, "`algos` must hold names (strings), got 1 (int)"),
    ({"num_seeds": 2.5}, "`num_seeds` must be a positive integer, got 2.5 (float)"),
    ({"num_seeds": "2"}, "`num_seeds` must be a positive integer, got '2' (str)"),
    ({"num_seeds": None}, "`num_seeds` must be a positive integer, got None"),
    ({"num_seeds": True}, "`num_seeds` must be a positive integer, got True (bool)"),
    ({"num_seeds": 0}, "`num_seeds` must be >= 1, got 0"),
    ({"total_steps": 4096.7}, "`total_steps` must be None (each preset's budget) or a positive integer, got 4096.7"),
    ({"total_steps": "4096"}, "`total_steps` must be None (each preset's budget) or a positive integer, got '4096'"),
    ({"total_steps": False}, "`total_steps` must be None (each preset's budget) or a positive integer, got False"),
    ({"total_steps": -1}, "`total_steps` must be >= 1, got -1"),
    ({"suite": None}, "`suite` must be a suite name (one of paper/mujoco"),
    ({"suite": ["smoke"]}, "`suite` must be a suite name"),
])
def test_bad_plan_input_is_one_sweep_error_naming_the_parameter(kwargs, fragment):
    kwargs = {"suite": "smoke", **kwargs}
    with pytest.raises(sweep.SweepError) as e:
        sweep.plan(**kwargs)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and fragment in str(e.value), str(e.value)


def test_one_string_is_one_algo_or_task_not_its_characters():
    p = sweep.plan("smoke", algos="bpo", num_seeds=1, total_steps=STEPS, tasks="CartPole-v1")
    assert p.algos == ("bpo",) and [r.name for r in p.runs] == ["smoke_CartPole-v1__bpo"]
    assert sweep.plan("smoke", algos="ppo", num_seeds=1).asked()["runs"] == ["smoke_CartPole-v1__ppo",
                                                                             "smoke_Pendulum-v1__ppo"]
    # A one-shot iterable is read once, not emptied by the checks; numpy ints are counts.
    p = sweep.plan("smoke", algos=(a for a in ["ppo"]), num_seeds=np.int64(2), total_steps=np.int64(STEPS))
    assert len(p.runs) == 2 and type(p.num_seeds) is int and type(p.total_steps) is int
    json.dumps(p.asked())  # what sweep.json records


def test_run_options_that_cannot_be_used_are_refused_before_anything_is_written(tmp_path):
    """Each run's session formats the resume hint with out=: a brace in it (from a path) used to stop
    the sweep with a KeyError after sweep.json was written, and running it again failed the same way."""
    out = tmp_path / "sweep{b}"
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, total_steps=STEPS, tasks="CartPole-v1")
    for options in (RunOptions(resume_hint=f"again: sweep --out {out}"), RunOptions(checkpoint_every_updates=0)):
        with pytest.raises(ValueError) as e:
            sweep.run(p, str(out), options, say=lambda line: None)
        assert "\n" not in str(e.value) and ("resume_hint" in str(e.value) or "checkpoint_every_updates" in str(e.value))
        assert not out.exists()


def test_a_suite_without_its_packages_is_refused_before_the_sweep_folder_is_claimed(tmp_path, monkeypatch):
    """paper/atari without the atari extra: the sweep wrote sweep.json first, and once the extra
    was installed it refused the sweep the user meant ("holds a sweep with another --algos")."""
    from bpo_jax.envs import atari

    monkeypatch.setattr(atari, "installed", lambda module: False)
    out = tmp_path / "a" / "sweep"
    p = sweep.plan("paper/atari", algos="bpo", num_seeds=1, total_steps=4096, tasks="Pong")
    with pytest.raises(sweep.SweepError) as e:
        sweep.run(p, str(out), say=lambda line: None)
    assert str(e.value) == ("the atari/ suite needs 'ale_py' (No module named 'ale_py'); install it with: "
                            "pip install 'bpo-jax[atari]'")
    assert not (tmp_path / "a").exists()


def test_a_plugin_loss_that_breaks_the_contract_is_refused_before_the_sweep_folder_is_claimed(tmp_path):
    """The sweep said the loss's error after sweep.json was written; train says it first."""
    from bpo_jax import algorithms
    from bpo_jax.algorithms import PPO

    class PerSample(PPO):
        name = "per-sample-test"

        def loss(self, config, hp, x):
            policy, heads, metrics = super().loss(config, hp, x)
            return x.ratio * x.batch.advantage, heads, metrics

    algorithms.register(PerSample())
    try:
        p = sweep.plan("smoke", algos="per-sample-test", num_seeds=1, total_steps=STEPS, tasks="CartPole-v1")
        with pytest.raises(sweep.SweepError) as e:
            sweep.run(p, str(tmp_path / "sweep"), say=lambda line: None)
        assert str(e.value).startswith("smoke/CartPole-v1 per-sample-test: algorithm per-sample-test's loss returned "
                                       "a policy loss of shape")
        assert not (tmp_path / "sweep").exists()
    finally:
        del algorithms._REGISTRY["per-sample-test"]


def test_tasks_select_by_full_or_short_name():
    names = lambda tasks: [r.name for r in sweep.plan("smoke", ("ppo",), 1, STEPS, tasks).runs]
    assert names(["Pendulum-v1"]) == names(["smoke/Pendulum-v1"]) == ["smoke_Pendulum-v1__ppo"]
    assert len(names(None)) == 2


def _interrupt_at_update_4(plan, out, options, monkeypatch) -> list[list[str]]:
    """Run ``plan`` into ``out`` with Ctrl-C pressed after update 4; returns the run names of
    each program it started."""
    run_all, calls = sweep.run_together, []

    def interrupted(sessions, on_progress=None):
        calls.append([os.path.basename(s.out) for s in sessions])

        def stop(p):
            if p.update >= 4:
                raise KeyboardInterrupt
        return run_all(sessions, stop)

    with monkeypatch.context() as patch:
        patch.setattr(sweep, "run_together", interrupted)
        with pytest.raises(KeyboardInterrupt):
            sweep.run(plan, str(out), options, say=lambda line: None)
    return calls


def test_interrupted_sweep_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    plan = sweep.plan("smoke", algos=("ppo",), num_seeds=1, total_steps=STEPS)
    options = RunOptions(progress=False, tensorboard=False, checkpoint_every_updates=1, fast_compile=True)
    _interrupt_at_update_4(plan, tmp_path, options, monkeypatch)
    first = tmp_path / "runs" / plan.runs[0].name
    assert sweep.status(str(first)) == "resumable"
    # A damaged config.json of an unfinished run: it goes on with its checkpoint's (this stopped
    # the sweep with a bare JSONDecodeError; a deleted one, with the advice to run it again).
    (first / "config.json").write_text("{")
    # A damaged newest checkpoint gives way to the one before it (the sweep stopped, with no word
    # of the older one it could not be given).
    newest = sorted((first / "checkpoints").iterdir())[-1]
    shutil.rmtree(newest / "arrays")
    assert sweep.pending_runs(str(tmp_path)) == [r.name for r in plan.runs]  # the second one not even started
    assert sweep.report_text([], "t", pending=["a", "b"]).endswith(
        "Not finished yet (2 of the sweep's runs; its command goes on with them): a, b\n")
    said = []
    summary = sweep.run(plan, str(tmp_path), options, say=said.append)
    assert sweep.pending_runs(str(tmp_path)) == [] and "Not finished" not in (tmp_path / "report.md").read_text()
    assert any("resuming" in line for line in said) and [r["env_steps"] for r in summary["runs"]] == [STEPS, STEPS]
    assert any(f"checkpoint {newest} is damaged" in line and line.endswith("resuming from the checkpoint before it")
               for line in said), said
    rows = list(csv.DictReader(open(first / "metrics.csv")))
    assert [int(r["update"]) for r in rows] == list(range(1, STEPS // 512 + 1))
    assert json.loads((first / "config.json").read_text())["total_steps"] == STEPS  # written again


def _curve(env, algo, steps, returns):
    returns = np.asarray(returns, float)
    return curves.Curve(run_dir="x", env=env, algo=algo, total_steps=int(steps[-1]), steps=np.asarray(steps, float),
                        returns=returns, episodes=np.ones_like(returns))


def test_curve_at_is_the_tail_mean_up_to_the_step():
    steps = np.arange(1, 21) * 100_000  # 20 updates of 100k steps
    r = np.stack([np.arange(20.0), 10 * np.arange(20.0)])
    c = _curve("mjx/Hopper-v4", "bpo", steps, r)
    # up to 1M = 10 updates; the last 10% of them is update 10 alone (index 9)
    np.testing.assert_allclose(c.at(1_000_000), [9.0, 90.0])
    # whole run: last 2 updates, equal episode counts -> plain mean
    np.testing.assert_allclose(c.at(steps[-1]), [18.5, 185.0])


def test_report_verdicts_against_the_paper_values():
    steps = np.arange(1, 21) * 100_000
    flat = lambda *seeds: np.array([[v] * 20 for v in seeds], float)
    hopper = {row.step: row for row in report.compare(_curve("mjx/Hopper-v4", "bpo", steps, flat(3000, 3200)))}
    assert sorted(hopper) == [1_000_000, 2_000_000]  # the paper's points reached; 20M not reached
    assert hopper[1_000_000].paper == 2726 and hopper[1_000_000].verdict.startswith("above")
    assert hopper[2_000_000].paper == 3047 and hopper[2_000_000].verdict.startswith("inside")
    ppo = report.compare(_curve("mjx/Hopper-v4", "ppo", steps, flat(900, 1000)))
    assert [r.verdict.split()[0] for r in ppo] == ["above", "below"]  # the paper: 853 at 1M, 1267 at 2M
    long = np.arange(1, 21) * 1_000_000
    final = report.compare(_curve("mjx/Hopper-v4", "ppo", long, flat(2400, 2500)))[-1]
    assert final.step == 20_000_000 and final.band == (1831, 3008) and final.verdict == "inside the paper's band"
    short = report.compare(_curve("mjx/Hopper-v4", "bpo", steps[:5], flat(1, 1)[:, :5]))
    assert len(short) == 1 and short[0].verdict.startswith("not comparable") and short[0].paper is None
    table = report.markdown([_curve("mjx/Hopper-v4", "bpo", steps, flat(3000, 3200))])
    assert "| mjx/Hopper-v4 | BPO | 1,000,000 | 2 | 3,100.0 ± 141.4 [3,000.0, 3,200.0] | 2,726.0 |" in table


def test_paper_values_cover_the_papers_figures():
    values = report.paper_values()
    assert {(v.env, v.algo) for v in values} >= {(f"mjx/{t}-v4", a) for t in ("Ant", "Hopper", "Humanoid", "Swimmer")
                                                  for a in ("bpo", "ppo")}
    for v in values:
        assert v.band[0] <= v.final <= v.band[1] and all(p < v.budget for p in v.points)


# --------------------------------------------------------------------------------- grids
def test_a_grid_plans_every_combination_and_one_program_per_task_and_algorithm():
    p = sweep.plan("smoke", algos=("bpo", "ppo"), num_seeds=2, total_steps=STEPS, tasks="CartPole-v1",
                   grid={"eps": (0.1, 0.3), "bpo_lambda": [0.01, 1]})
    assert [r.name for r in p.runs] == [
        "smoke_CartPole-v1__bpo__eps=0.1__bpo_lambda=0.01", "smoke_CartPole-v1__bpo__eps=0.1__bpo_lambda=1",
        "smoke_CartPole-v1__bpo__eps=0.3__bpo_lambda=0.01", "smoke_CartPole-v1__bpo__eps=0.3__bpo_lambda=1",
        # bpo_lambda is BPO's alone: PPO's runs vary eps only
        "smoke_CartPole-v1__ppo__eps=0.1", "smoke_CartPole-v1__ppo__eps=0.3"]
    assert [(r.config.eps, r.config.bpo_lambda) for r in p.runs[:4]] == [(0.1, 0.01), (0.1, 1.0), (0.3, 0.01), (0.3, 1.0)]
    assert dict(p.runs[4].point) == {"eps": 0.1} and p.runs[4].config.bpo_lambda == Config().bpo_lambda
    assert [[r.name for r in g] for g in p.programs()] == [[r.name for r in p.runs[:4]], [r.name for r in p.runs[4:]]]
    for group in p.programs():  # one program each: they differ in traced hyperparameters only
        assert all(group[0].config.program_difference(r.config) is None for r in group)
    assert p.asked()["grid"] == {"eps": [0.1, 0.3], "bpo_lambda": [0.01, 1.0]}
    assert "grid" not in sweep.plan("smoke", num_seeds=1).asked()  # sweep.json of sweeps without a grid unchanged


@pytest.mark.parametrize("grid,fragment", [
    ({"hidden_sizes": ((8,), (16,))}, "`grid` cannot vary 'hidden_sizes' (not a number: sweep it as separate sweeps)"),
    ({"learning_rate": (1e-3,)}, "unknown `grid` field 'learning_rate'; valid: num_envs, num_steps,"),
    ({"rewardscale": (1.0,)}, "unknown `grid` field 'rewardscale'; did you mean 'reward_scale'?"),
    ({"seed": (0, 1)}, "`grid` cannot vary 'seed' (`num_seeds` seeds every run)"),
    ({"total_steps": (4096,)}, "`grid` cannot vary 'total_steps' (the sweep's `total_steps` sets every run's budget)"),
    ({"num_epochs": (2, 2.5)}, "`grid` values of num_epochs must be whole numbers, got 2.5"),
    ({"eps": ()}, "`grid` gives eps no values"),
    ({"eps": (0.1, 0.10)}, "`grid` gives eps the value 0.1 twice; give each value once"),
    ({"num_epochs": (2, float("inf"))}, "`grid` values of num_epochs must be whole numbers, got inf"),
    ({"bpo_lambda": (1, 10)}, "`grid` varies bpo_lambda, which no algorithm of this sweep (ppo) reads"),
    ({"eps": ("0.1",)}, "`grid` values of eps must be numbers, got '0.1' (str)"),
    ({"eps": (True,)}, "`grid` values of eps must be numbers, got True (bool)"),
    ({"eps": None}, "`grid` values of eps must be numbers, got None"),
    ([("eps", (0.1,))], "`grid` must map field names to values"),
    ({"gae_lambda": (0.9, 1.5)}, "run smoke_CartPole-v1__ppo__gae_lambda=1.5: `gae_lambda` must be"),
    # Fields the smoke presets leave unused: each value trained the same run again.
    ({"obs_clip": (5, 10)}, "`grid` varies obs_clip, which no run of this sweep reads: a run reads it only with "
                            "`normalize_obs` on, and none here has that; vary another field"),
    ({"obs_norm_window": (0, 5)}, "`grid` varies obs_norm_window, which no run of this sweep reads"),
    ({"reward_clip": (1, 5)}, "a run reads it only with `normalize_rewards` on"),
    ({"desired_kl": (0.01, 0.02)}, "a run reads it only with `lr_schedule` adaptive"),
    ({"eps": (0.1, 0.3), "eps_low": (0.2,), "eps_high": (0.2,)}, "a run reads it only with `eps_low` or `eps_high` unset"),
    ({"init_std": (0.5, 1.0)}, "`grid` varies init_std, which no run of this sweep reads: a run reads it only with "
                               "continuous actions, and none here has that"),
    ({"min_std": (0.01, 0.1)}, "a run reads it only with continuous actions"),
])
def test_bad_grids_are_one_sweep_error(grid, fragment):
    with pytest.raises(sweep.SweepError) as e:
        sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid=grid)
    assert "\n" not in str(e.value) and fragment in str(e.value), str(e.value)


def test_a_grid_field_a_preset_leaves_unused_leaves_its_runs_at_their_preset(monkeypatch, tmp_path):
    """obs_clip is read only with normalize_obs on: each value trained the same run again."""
    smoke = sweep.SUITES["smoke"]
    settings = lambda task, algo: {**smoke.settings(task, algo), "normalize_obs": task.endswith("Pendulum-v1")}
    monkeypatch.setitem(sweep.SUITES, "smoke", dataclasses.replace(smoke, settings=settings))
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, grid={"obs_clip": (5, 10)})
    assert [r.name for r in p.runs] == ["smoke_CartPole-v1__ppo", "smoke_Pendulum-v1__ppo__obs_clip=5",
                                        "smoke_Pendulum-v1__ppo__obs_clip=10"]
    assert p.runs[0].config.obs_clip == Config().obs_clip and [r.config.obs_clip for r in p.runs[1:]] == [5.0, 10.0]
    # eps is read where eps_low or eps_high takes it: not where the grid sets both
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"eps": (0.1, 0.3), "eps_low": (0.2,)})
    assert [r.name.partition("__ppo__")[2] for r in p.runs] == ["eps=0.1__eps_low=0.2", "eps=0.3__eps_low=0.2"]
    # A preset's eps that the grid's bounds leave unread is the preset's, not a setting to refuse:
    # the run starts (the paper presets set eps 0.25; such a sweep was planned, then refused).
    settings = lambda task, algo: {**smoke.settings(task, algo), "eps": 0.25}
    monkeypatch.setitem(sweep.SUITES, "smoke", dataclasses.replace(smoke, settings=settings))
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"eps_low": (0.2,), "eps_high": (0.2,)})
    assert [r.config.eps for r in p.runs] == [0.25]
    RunSession.start(p.runs[0].config, out=str(tmp_path / "run"), options=RunOptions(tensorboard=False))
    monkeypatch.setitem(sweep.SUITES, "smoke", smoke)
    # a Gaussian's std is read where actions are continuous: Pendulum's, not CartPole's
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, grid={"init_std": (0.5, 1.0)})
    assert [r.name for r in p.runs] == ["smoke_CartPole-v1__ppo", "smoke_Pendulum-v1__ppo__init_std=0.5",
                                        "smoke_Pendulum-v1__ppo__init_std=1"]


def test_sizes_in_a_grid_make_one_program_per_value():
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"num_epochs": (2, 4), "lr": (1e-3, 3e-3)})
    assert [[r.name.partition("__ppo__")[2] for r in g] for g in p.programs()] == [
        ["num_epochs=2__lr=0.001", "num_epochs=2__lr=0.003"], ["num_epochs=4__lr=0.001", "num_epochs=4__lr=0.003"]]
    assert [type(r.config.num_epochs) for r in p.runs] == [int] * 4
    assert cli.parse_args(["sweep", "--suite", "smoke", "--grid", "num-epochs=2,4", "--out", "o"]).grid == [
        ("num_epochs", (2, 4))]


def test_grid_values_are_named_exactly_and_planned_in_ascending_order():
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", total_steps=4 * 1048576,
                   grid={"lr": (1.0000002e-3, 1.0000001e-3), "num_steps": (1048576,)})
    assert [r.name.partition("__ppo__")[2] for r in p.runs] == ["num_steps=1048576__lr=0.0010000001",
                                                               "num_steps=1048576__lr=0.0010000002"]
    assert p.asked()["grid"] == {"lr": [1.0000001e-3, 1.0000002e-3], "num_steps": [1048576]}
    assert curves.number_text(1e-5) == "1e-05" and curves.number_text(3.0) == "3"


def test_a_single_number_is_a_grid_of_one():
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"lr": 1e-3})
    assert [r.name for r in p.runs] == ["smoke_CartPole-v1__ppo__lr=0.001"] and p.runs[0].config.lr == 1e-3


def test_bad_grid_flags_are_one_line_and_write_nothing(tmp_path, capsys):
    for flags, fragment in ((["--grid", "eps"], "expected FIELD=V,V (e.g. eps=0.1,0.2), got 'eps'"),
                            (["--grid", "eps=0.1,x"], "the values of eps must be numbers, got '0.1,x'"),
                            (["--grid", "eps=0.1", "--grid", "eps=0.2"], "--grid names eps twice"),
                            (["--grid", "activation=1"], "--grid cannot vary 'activation' (not a number"),
                            (["--grid", "lr=0.1,,0.2"], "an empty value in --grid lr=0.1,,0.2"),
                            (["--grid", "num-epochs=1e400"], "--grid values of num_epochs must be whole numbers")):
        assert cli.main(["sweep", "--suite", "smoke", *flags, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and fragment in err, err
        assert not (tmp_path / "o").exists()
    # The resume hint repeats the grid, flag spelling accepted.
    args = cli.parse_args(["sweep", "--suite", "smoke", "--grid", "bpo-lambda=0.01,1", "--out", "o"])
    assert args.grid == [("bpo_lambda", (0.01, 1.0))]
    assert "--grid bpo_lambda=0.01,1 " in cli._sweep_command(args)
    # ... with every value exact (a :g rounding would name another grid, which the sweep refuses)
    args = cli.parse_args(["sweep", "--suite", "smoke", "--grid", "lr=1.0000001e-3,1.0000002e-3", "--out", "o"])
    assert "--grid lr=0.0010000001,0.0010000002 " in cli._sweep_command(args)


def test_a_grid_sweep_trains_each_program_once_and_resumes_it_from_a_common_checkpoint(tmp_path, monkeypatch):
    plan = sweep.plan("smoke", algos="ppo", num_seeds=1, total_steps=STEPS, tasks="CartPole-v1",
                      grid={"eps": (0.1, 0.3)})
    options = RunOptions(progress=False, tensorboard=False, checkpoint_every_updates=1, fast_compile=True)
    calls = _interrupt_at_update_4(plan, tmp_path, options, monkeypatch)
    assert calls == [[r.name for r in plan.runs]]  # both grid points in one program
    first, second = (tmp_path / "runs" / r.name for r in plan.runs)
    # A kill while the program's checkpoints were being written: the second run lacks the newest.
    shutil.rmtree(second / "checkpoints" / "step_00000004")
    said = []
    summary = sweep.run(plan, str(tmp_path), options, say=said.append)
    assert sum("resuming" in line for line in said) == 2
    assert sum("(2 runs as one program)" in line for line in said) == 2  # resumed together, from update 3
    for run in (first, second):
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        assert [int(r["update"]) for r in rows] == list(range(1, STEPS // 512 + 1))
    assert [(r["variant"], r["env_steps"]) for r in summary["runs"]] == [("eps=0.1", STEPS), ("eps=0.3", STEPS)]
    table = (tmp_path / "report.md").read_text()
    assert "| gymnax/CartPole-v1 | PPO eps=0.1 |" in table and "| gymnax/CartPole-v1 | PPO eps=0.3 |" in table
    variants = {r["variant"] for r in csv.DictReader(open(tmp_path / "curves.csv"))}
    assert variants == {"eps=0.1", "eps=0.3"}


def test_runs_of_one_env_and_algorithm_are_named_by_the_settings_that_differ():
    steps, r = np.arange(1, 3) * 100.0, np.ones((1, 2))
    base = {"env": "e", "algo": "bpo", "lr": 3e-4, "eps": 0.2, "eps_low": 0.2, "eps_high": 0.2, "total_steps": 200}
    made = [dataclasses.replace(_curve("e", "bpo", steps, r), settings=s) for s in (
        base, {**base, "eps": 0.1, "eps_low": 0.1, "eps_high": 0.1, "total_steps": 400},
        {**base, "lr": 1e-3, "total_steps": 400})]
    alone = dataclasses.replace(_curve("f", "ppo", steps, r), settings={**base, "algo": "ppo"})
    named = curves.name_variants(made + [alone])
    # eps says what eps_low and eps_high repeat; the budget is on the figure, not in the name
    assert [c.variant for c in named] == ["lr=0.0003, eps=0.2", "lr=0.0003, eps=0.1", "lr=0.001, eps=0.2", ""]
    assert [c.name for c in named] == ["BPO lr=0.0003, eps=0.2", "BPO lr=0.0003, eps=0.1", "BPO lr=0.001, eps=0.2",
                                       "PPO"]
    assert named[3].label == "PPO (1 seed)"
    # Runs of other presets differ in dozens of settings: a label names the first few.
    many = [dataclasses.replace(made[0], settings={f"f{i}": i + k for i in range(6)}) for k in (0, 1)]
    assert [c.variant for c in curves.name_variants(many)] == ["f0=0, f1=1, f2=2, +3 more", "f0=1, f1=2, f2=3, +3 more"]


def test_a_sweep_resumed_without_its_fast_compile_choice_is_refused_even_before_a_run_started(tmp_path):
    """sweep.json records `fast_compile`: a sweep interrupted before its later runs started, then
    called again without the flag, compiled those at full optimisation beside runs that used it
    (only runs with a checkpoint were checked).  A sweep.json from before it recorded the choice
    takes the next call's (its runs' checkpoints are checked, as before).  A finished sweep called
    again compiles nothing: kept whatever the flag (test_a_run_compiled_otherwise_...)."""
    plan = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1")
    fast, full = RunOptions(fast_compile=True), RunOptions()
    sweep._claim(plan, str(tmp_path), fast)
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["fast_compile"] is True
    with pytest.raises(sweep.SweepError, match="compiles its runs with `fast_compile`.*starts from the beginning: run "
                                               "the sweep with `fast_compile`"):
        sweep._claim(plan, str(tmp_path), full)
    sweep._claim(plan, str(tmp_path), fast)  # the same choice goes on
    del record["fast_compile"]
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    sweep._claim(plan, str(tmp_path), full)
    assert json.loads((tmp_path / "sweep.json").read_text()) == {**record, "fast_compile": False}
    with pytest.raises(sweep.SweepError, match="compiles its runs without `fast_compile`"):
        sweep._claim(plan, str(tmp_path), fast)
    (tmp_path / "sweep.json").write_text(json.dumps({**record, "fast_compile": "yes"}))
    with pytest.raises(sweep.SweepError, match="fast_compile missing or malformed"):
        sweep._claim(plan, str(tmp_path), fast)


def test_another_grid_in_a_sweep_directory_is_refused_by_name(tmp_path):
    with_grid = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"eps": (0.1, 0.3)})
    sweep._claim(with_grid, str(tmp_path))
    for other, fragment in ((sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1"),
                             "another `grid` (eps=0.1,0.3, asked none)"),
                            (sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"eps": (0.2,)}),
                             "another `grid` (eps=0.1,0.3, asked eps=0.2)")):
        with pytest.raises(sweep.SweepError) as e:
            sweep._claim(other, str(tmp_path))
        assert fragment in str(e.value), str(e.value)
    sweep._claim(with_grid, str(tmp_path))  # the same sweep again: fine


def test_a_diverging_grid_point_is_kept_out_and_the_others_finish(tmp_path, capsys):
    """reward_scale 1e38 makes every loss non-finite at once; its neighbour in the program goes on
    without it, the next program runs, and running the command again keeps both as they are."""
    args = ["sweep", "--suite", "smoke", "--tasks", "CartPole-v1", "--seeds", "1", "--total-steps", str(STEPS),
            "--grid", "reward-scale=1,1e38", "--out", str(tmp_path), "--quiet", "--no-tensorboard", "--fast-compile"]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    assert "smoke_CartPole-v1__bpo__reward_scale=1e+38: diverged, kept out of the figure: non-finite" in err
    assert "2 run(s) finished, 2 diverged (listed in report.md)" in out  # BPO's and PPO's 1e38 points
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["algo"], r["variant"]) for r in summary["runs"]] == [("bpo", "reward_scale=1"), ("ppo", "reward_scale=1")]
    assert [d["run"] for d in summary["diverged"]] == ["smoke_CartPole-v1__bpo__reward_scale=1e+38",
                                                       "smoke_CartPole-v1__ppo__reward_scale=1e+38"]
    assert "Diverged (kept out of the table and figure):" in (tmp_path / "report.md").read_text()
    # The sweep's words, as report.md has them: it has no --lr (its presets and --grid set lr).
    assert "lower lr or max_grad_norm" in err and "--lr" not in err and "`" not in err
    # `bpo-jax report` on the sweep writes the sweep's own report: its title, the one point left
    # of each algorithm labelled by its grid point, and the runs that diverged.
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == (tmp_path / "report.md").read_text()
    assert "| gymnax/CartPole-v1 | PPO reward_scale=1 |" in (tmp_path / "again.md").read_text()
    bad = tmp_path / "runs" / "smoke_CartPole-v1__bpo__reward_scale=1e+38"
    assert sweep.status(str(bad)) == "diverged" and "non-finite" in (bad / "DIVERGED").read_text()
    assert err.count("diverged") == 2  # each said once (not again as "diverged earlier")
    assert curves.find_runs([str(bad)]) == curves.Found(runs=(), diverged=(str(bad),))
    assert cli.main(["plot", str(bad), "--out", str(tmp_path / "bad.png")]) == 2
    assert capsys.readouterr().err.strip().endswith("no finished run to draw; 1 diverged (their DIVERGED files say where)")
    with pytest.raises(curves.CurveError, match="diverged .its DIVERGED file says why.; it has no final curve"):
        curves.load(str(bad))
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert err.count("diverged earlier, kept out of the figure") == 2 and err.count("finished earlier, kept") == 2
    # A larger budget takes the sound runs further and leaves the diverged ones as they are.
    assert cli.main([a if a != str(STEPS) else str(2 * STEPS) for a in args]) == 0
    err = capsys.readouterr().err
    assert err.count("diverged earlier") == 2 and err.count(f"on to {2 * STEPS:,} steps per seed") == 2


def test_a_sweep_whose_every_run_diverged_says_so_and_writes_its_report(tmp_path, capsys):
    args = ["sweep", "--suite", "smoke", "--tasks", "CartPole-v1", "--algos", "ppo", "--seeds", "1", "--total-steps",
            str(STEPS), "--grid", "reward-scale=1e38,2e38", "--out", str(tmp_path), "--quiet", "--no-tensorboard",
            "--fast-compile"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"every run diverged (2, listed in report.md); wrote {tmp_path}/{{report.md,summary.json}}"), err
    assert sorted(os.listdir(tmp_path)) == ["report.md", "runs", "summary.json", "sweep.json"]
    assert [d["run"] for d in json.loads((tmp_path / "summary.json").read_text())["diverged"]] == [
        "smoke_CartPole-v1__ppo__reward_scale=1e+38", "smoke_CartPole-v1__ppo__reward_scale=2e+38"]


def test_the_same_grid_in_another_order_is_the_same_sweep():
    a = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"lr": (3e-4, 1e-3), "eps": (0.3, 0.1)})
    b = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1", grid={"eps": (0.1, 0.3), "lr": (1e-3, 3e-4)})
    assert a.asked() == b.asked() and a.runs[0].name == "smoke_CartPole-v1__ppo__lr=0.0003__eps=0.1"  # Config's order


def test_a_sweep_whose_sweep_json_is_gone_says_to_restore_it(tmp_path):
    """It said only "choose another --out", which leaves its trained runs behind."""
    p = sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1")
    (tmp_path / "runs" / "smoke_CartPole-v1__ppo").mkdir(parents=True)
    with pytest.raises(sweep.SweepError) as e:
        sweep._claim(p, str(tmp_path))
    assert str(e.value) == (f"{tmp_path} holds a sweep's runs/ but no sweep.json (deleted?), which says what the sweep "
                            "is: restore it (a copy, or its backup), or choose another `out`")
    (tmp_path / "runs").rename(tmp_path / "other")
    with pytest.raises(sweep.SweepError, match="is not empty and holds no sweep.json; choose another `out`$"):
        sweep._claim(p, str(tmp_path))


def test_a_sweep_in_a_project_folder_with_its_own_config_and_csv_is_made(tmp_path):
    """A folder holding some config.json and metrics.csv is no run: a sweep below it was refused."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.csv").write_text("a,b\n")
    out = tmp_path / "results" / "sw"
    sweep._claim(sweep.plan("smoke", algos="ppo", num_seeds=1, tasks="CartPole-v1"), str(out))
    assert (out / "sweep.json").is_file()


def test_a_sweep_too_large_for_the_memory_is_refused_before_its_folder_is_claimed(tmp_path, monkeypatch, capsys):
    """10 million seeds claimed the folder (sweep.json), compiled, then failed inside XLA with a
    message that said to run the same command again."""
    from bpo_jax import runner

    monkeypatch.setattr(runner, "memory_bytes", lambda: 2**20)
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--suite", "smoke", "--tasks", "CartPole-v1", "--algos", "ppo", "--seeds", "1000",
                     "--total-steps", "2048", "--no-tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bpo-jax: error: smoke/CartPole-v1 ppo: one update's rollout keeps 512 observations of "
                          "shape (4,) per seed") and "for 1000 seed(s)" in err and "\n" not in err, err
    assert not out.exists()


def test_a_program_s_split_over_devices_is_said_before_it_trains(tmp_path, monkeypatch):
    """The README says a run's first lines name the split; a sweep's runs never did.  Said per
    program, from the runs it trains (a member diverged earlier is not in it)."""
    from bpo_jax import runner

    p = sweep.plan("smoke", ("ppo",), num_seeds=2, total_steps=STEPS, tasks=("CartPole-v1",))
    seen, said = [], []
    real = runner.layout

    def layout(config, members, split):
        seen.append(members)
        return {**real(config, members, split), "split": "seeds", "devices": 2}

    monkeypatch.setattr(runner, "layout", layout)
    options = RunOptions(progress=False, tensorboard=False, fast_compile=True)
    sweep.run(p, str(tmp_path / "s"), options, say=said.append)
    assert any(line.endswith("smoke/CartPole-v1 ppo: seeds split over 2 CPU devices") for line in said), said
    assert 2 in seen
