"""The argparse types the benchmark scripts share (benchmarks/common.py): bad values must be
ArgumentTypeErrors, which argparse turns into a one-line error and exit 2 before any work."""
import argparse
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import common  # noqa: E402


def test_valid_values_parse():
    assert common.positive_int("3") == 3
    assert common.nonnegative_int("0") == 0
    assert common.positive_ints("64,256") == [64, 256]
    assert common.floats("1e-4,0.3") == [1e-4, 0.3]
    assert common.algo_names("ppo,bpo") == ["ppo", "bpo"]
    assert common.env_ids("gymnax/CartPole-v1") == ["gymnax/CartPole-v1"]
    assert common.preset_name("paper/Hopper-v4") == "paper/Hopper-v4"
    assert common.existing_path(os.curdir) == os.curdir
    assert [common.int_between(0, 3)(t) for t in "0123"] == [0, 1, 2, 3]


@pytest.mark.parametrize("parse, text", [
    (common.positive_int, "0"), (common.positive_int, "x"), (common.nonnegative_int, "-1"),
    (common.positive_ints, "1,0"), (common.positive_ints, "x"), (common.positive_ints, ","),
    (common.floats, "a,b"), (common.algo_name, "xyz"), (common.algo_names, "ppo,xyz"),
    (common.env_id, "gymnax/NoSuchEnv"), (common.env_id, "nosuite/CartPole-v1"), (common.env_id, "CartPole"),
    (common.preset_name, "paper/Nope"), (common.existing_path, "/nonexistent/run"),
    (common.comma_list(common.one_of(("rolled", "auto"), "lowering")), "rolled,bogus"),
    (common.int_between(0, 3), "4"), (common.int_between(0, 3), "-1"), (common.int_between(0, 3), "x"),
])
def test_bad_values_are_argument_type_errors(parse, text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_parser_error_is_one_line_exit_2(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--num-envs", type=common.positive_ints)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--num-envs", "x"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "x: error: argument --num-envs: expected a positive integer, got 'x'"


@pytest.mark.parametrize("text", [os.curdir, "/proc/nope/x.json", "/etc/hostname/x.json", "new-folder/"])
def test_out_path_refuses_what_cannot_be_written(text):
    with pytest.raises(argparse.ArgumentTypeError):
        common.out_path(text)


def test_out_path_accepts_a_file_in_a_folder_to_be_made(tmp_path):
    path = str(tmp_path / "a" / "b" / "results.json")
    assert common.out_path(path) == path
    assert not (tmp_path / "a").exists()  # checked, not created: a failed run leaves nothing behind
    assert os.listdir(tmp_path) == []


def test_write_results_prints_what_it_cannot_write(tmp_path, capsys):
    path = tmp_path / "gone" / "x.json"
    (tmp_path / "gone").write_text("")  # a file where the folder should be: makedirs fails
    with pytest.raises(SystemExit) as e:
        common.write_results({"steps_per_second": 123.0}, str(path), echo=False)
    assert e.value.code != 0 and "cannot write" in str(e.value.code) and "\n" not in str(e.value.code)
    assert '"steps_per_second": 123.0' in capsys.readouterr().out  # the measurement is not lost


def test_env_check_refuses_host_stepped_envs():
    problem = common.env_problem("isaaclab/Isaac-Velocity-Rough-Anymal-C-v0")
    assert problem and "throughput_isaaclab.py" in problem and "\n" not in problem
    assert common.env_problem("gymnax/CartPole-v1") is None


def test_env_check_names_missing_packages(monkeypatch):
    from bpo_jax.envs import MissingDependencyError, registry

    def missing(name, num_envs, **kw):
        raise MissingDependencyError("the fakesuite/ suite needs 'fakepkg': pip install fakepkg\nmore detail")

    # setitem, not register_suite: monkeypatch removes the suite again at teardown
    monkeypatch.setitem(registry._SUITES, "fakesuite", registry._Suite(lambda: ["Task-v0"], missing, "packages missing"))
    assert common.env_problem("fakesuite/Task-v0") == "fakesuite/Task-v0: the fakesuite/ suite needs 'fakepkg': pip install fakepkg"
