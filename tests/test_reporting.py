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
