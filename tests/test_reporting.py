"""bpo_jax.reporting: atomic writes that never replace what is not a regular file."""
import os
import subprocess
import sys

import pytest

from bpo_jax import reporting


def test_a_write_replaces_a_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")
    reporting.write_text(str(path), "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["report.md"]


def test_a_write_through_a_link_replaces_its_target_and_keeps_the_link(tmp_path):
    target, link = tmp_path / "target.md", tmp_path / "link.md"
    target.write_text("old")
    link.symlink_to(target)
    reporting.write_text(str(link), "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_a_write_to_a_device_writes_into_it_and_never_replaces_it():
    """`bpo-jax report DIR --out /dev/null` replaced the device with a regular file (as root)."""
    before = os.stat("/dev/null")
    reporting.write_text("/dev/null", "discarded")
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)


def test_a_dangling_link_is_written_where_it_points(tmp_path):
    (tmp_path / "there").mkdir()
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "there" / "report.md")
    reporting.write_text(str(link), "new")
    assert link.is_symlink() and (tmp_path / "there" / "report.md").read_text() == "new"


def test_dev_stdout_is_written_into_what_the_shell_opened(tmp_path):
    """Through a pipe it named a temporary file that does not exist; redirected to a file, the
    rename put another file in the shell's file's place.  (Opening /dev/stdout for writing
    truncates a redirected file, as a shell's `> /dev/stdout` does.)"""
    code = "import sys; from bpo_jax import reporting; print('before', flush=True); reporting.write_text('/dev/stdout', 'report')"
    with open(tmp_path / "out.txt", "w") as f:  # the two side by side: each process starts for seconds
        piped = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        redirected = subprocess.Popen([sys.executable, "-c", code], stdout=f, stderr=subprocess.PIPE, text=True)
    out, err = piped.communicate(timeout=120)
    assert piped.returncode == 0 and out == "before\nreport", err
    _, err = redirected.communicate(timeout=120)
    assert redirected.returncode == 0 and (tmp_path / "out.txt").read_text() == "report", err
    assert os.listdir(tmp_path) == ["out.txt"]


def test_output_folders_that_would_fail_once_the_run_started_are_refused_up_front(tmp_path):
    """A broken link failed with FileExistsError, a link to a full folder with `overwrite` with
    rmtree's "Cannot call rmtree on a symbolic link", a too long folder name with "File name too
    long": each after the run had started (exit 1, advice to add --overwrite)."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("kept")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dangling").symlink_to(tmp_path / "nothere")
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")  # 255 on Linux's usual file systems
    refused = {
        str(tmp_path / "dangling"): "is a symbolic link to",
        str(tmp_path / ("x" * (longest + 1)) / "run"): f"is {longest + 1} bytes, more than the {longest} this file system",
    }
    for path, said in refused.items():
        with pytest.raises(reporting.OutputDirError, match=said):
            reporting.check_output_dir(path, overwrite=False)
    with pytest.raises(reporting.OutputDirError, match="`overwrite` cannot empty .* it is a symbolic link to"):
        reporting.check_output_dir(str(tmp_path / "link"), overwrite=True)
    assert (target / "keep.txt").read_text() == "kept"
    reporting.check_output_dir(str(tmp_path / ("x" * longest)), overwrite=False)  # at the limit: fine
    (target / "keep.txt").unlink()
    reporting.open_run_dir(str(tmp_path / "link"), overwrite=False, note="running")  # an empty one is used
    assert reporting.is_incomplete(str(target))


def test_a_failed_atomic_write_names_the_file_asked_for_not_the_temporary_one(tmp_path):
    missing = tmp_path / "no" / "such" / "out.json"
    with pytest.raises(FileNotFoundError) as e:
        reporting.write_text(str(missing), "x")
    assert e.value.filename == str(missing) and ".tmp-" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_final_return_text_says_what_it_averages():
    """A run whose episodes all ended before its last 10% of updates read "no episode ended"."""
    assert reporting.final_return_text(float("nan")) == "n/a (no episode ended in the last 10% of updates)"
    assert reporting.final_return_text(None) == "n/a (no episode ended in the last 10% of updates)"
    assert reporting.final_return_text(12.345, over_seeds=True) == \
        "12.35 (mean over seeds, episodes that ended in the last 10% of updates)"
    assert reporting.final_return_text(12.345, 1, explained=False) == "12.3"


def test_tail_returns_is_the_mean_over_the_episodes_that_ended_in_the_last_tenth():
    """Per seed, every episode of the last 10% of updates weighs alike: an update's mean return
    counts as many times as episodes ended in it (NumPy over the episodes themselves)."""
    import numpy as np

    counts = np.zeros((3, 20), np.int32)
    means = np.full((3, 20), np.nan)
    counts[0, 18:], means[0, 18:] = (1, 3), (10.0, 30.0)  # episodes 10; 30, 30, 30
    counts[1, :18], means[1, :18] = 2, 5.0  # none in the last two updates
    counts[2, 19], means[2, 19] = 4, -2.0
    counts[2, 17], means[2, 17] = 1, 1e6  # before the tail
    got = reporting.tail_returns({"episodes": counts, "episode_return_mean": means})
    np.testing.assert_allclose(got, [np.mean([10.0, 30.0, 30.0, 30.0]), np.nan, -2.0])


def test_metrics_csv_numbers_updates_from_one_beside_their_env_steps(tmp_path):
    import csv

    import numpy as np

    metrics = {"episode_return_mean": np.array([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]),
               "episodes": np.ones((2, 3), np.int32)}
    path = tmp_path / "metrics.csv"
    reporting.write_metrics(str(path), metrics, np.array([512, 1024, 1536]), np.array([10.0, 20.0, 30.0]))
    rows = list(csv.DictReader(open(path)))
    assert [(r["update"], r["seed"], r["env_steps"], r["episode_return_mean"]) for r in rows] == [
        ("1", "0", "512", "1.5"), ("2", "0", "1024", "2.5"), ("3", "0", "1536", "3.5"),
        ("1", "1", "512", "4.5"), ("2", "1", "1024", "5.5"), ("3", "1", "1536", "6.5")]
