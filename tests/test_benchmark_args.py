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


@pytest.mark.parametrize("parse, text", [
    (common.positive_int, "0"), (common.positive_int, "x"), (common.nonnegative_int, "-1"),
    (common.positive_ints, "1,0"), (common.positive_ints, "x"), (common.positive_ints, ","),
    (common.floats, "a,b"), (common.algo_name, "xyz"), (common.algo_names, "ppo,xyz"),
    (common.env_id, "gymnax/NoSuchEnv"), (common.env_id, "nosuite/CartPole-v1"), (common.env_id, "CartPole"),
    (common.preset_name, "paper/Nope"), (common.existing_path, "/nonexistent/run"),
    (common.comma_list(common.one_of(("rolled", "auto"), "lowering")), "rolled,bogus"),
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
