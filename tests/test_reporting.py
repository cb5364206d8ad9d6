"""bpo_jax.reporting: atomic writes that never replace what is not a regular file."""
import os

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
