"""bpo_jax.report: the Markdown table holds whatever a run or folder is named."""
import dataclasses

import numpy as np

from bpo_jax import curves, report


def _curve(variant="", env="gymnax/CartPole-v1"):
    steps, returns = np.arange(1, 11) * 100.0, np.full((2, 10), 50.0)
    return curves.Curve(run_dir="x", env=env, algo="bpo", total_steps=1000, steps=steps, returns=returns,
                        episodes=np.ones_like(returns), variant=variant)


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells: split at each ``|`` no backslash escapes."""
    import re

    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_a_pipe_in_a_run_name_stays_in_its_cell():
    """A run folder named ``lr|a`` (its name is the run's variant) split the row into more cells
    than the header has."""
    text = report.markdown([_curve("lr|a"), _curve("b", env="my|env"), _curve("two\nlines")])
    header, _, *rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 3 and all(len(_cells(r)) == len(_cells(header)) == 8 for r in rows)
    assert _cells(rows[0])[:2] == ["gymnax/CartPole-v1", r"BPO lr\|a"]
    assert _cells(rows[1])[:2] == [r"my\|env", "BPO b"]
    assert _cells(rows[2])[:2] == ["gymnax/CartPole-v1", "BPO two lines"]  # a line break ended the row


def test_a_name_without_a_pipe_is_unchanged():
    (row,) = [line for line in report.markdown([dataclasses.replace(_curve(), variant="eps=0.1")]).splitlines()
              if line.startswith("| gymnax")]
    assert row.startswith("| gymnax/CartPole-v1 | BPO eps=0.1 | 1,000 | 2 | 50.0 ± 0.0 [50.0, 50.0] |")


def test_a_paper_point_before_the_first_update_ends_is_left_out():
    """A run whose updates are longer than a paper point's steps has no return at that point: the
    1M and 2M rows both showed update 1's (1.126M steps) return."""
    steps = np.arange(1, 19) * 1_126_400.0  # to 20.3M steps
    returns = np.linspace(100.0, 3500.0, 18)[None].repeat(2, 0)
    c = curves.Curve(run_dir="x", env="mjx/Hopper-v4", algo="bpo", total_steps=int(steps[-1]), steps=steps,
                     returns=returns, episodes=np.ones_like(returns))
    rows = report.compare(c)
    assert [r.step for r in rows] == [2_000_000, 20_000_000]  # 1M lies before the first update's end
    np.testing.assert_allclose(rows[0].values, returns[:, 0])  # 2M: the updates up to it, update 1 only


def test_a_title_of_several_lines_is_one_heading():
    text = report.markdown([_curve()], title="line1\nline2")
    assert text.splitlines()[:2] == ["# line1 line2", ""]


def test_a_band_verdict_reads_our_mean_over_seeds():
    """Against a paper band our mean decides (the seeds' median of 0 here would read below)."""
    seeds = np.array([0.0, 0.0, 0.0, 10.0, 10.0])  # mean 4, median 0
    assert report.verdict(seeds, 4.0, (3.0, 5.0)) == "inside the paper's band"
    assert report.verdict(seeds, 6.0, (5.0, 7.0)) == "below the paper's band"
    assert report.verdict(seeds, 2.0, (1.0, 3.0)) == "above the paper's band"
    assert report.verdict(np.array([np.nan, 4.0]), 4.0, (3.0, 5.0)) == "inside the paper's band"  # a seed with no episode


def test_isaaclabs_paper_values_are_in_iterations_of_the_runs_updates():
    """The IsaacLab figures' x axis is learning iterations: the paper's 1,500 for Go1 is the run's
    1,500th update (24 steps x 4,096 envs each), not 1,500 env steps."""
    per_update = 24 * 4096
    steps = np.arange(1, 1501) * float(per_update)
    returns = np.linspace(0.0, 25.0, 1500)[None].repeat(2, 0)
    c = curves.Curve(run_dir="x", env="isaaclab/Isaac-Velocity-Rough-Unitree-Go1-v0", algo="bpo",
                     total_steps=int(steps[-1]), steps=steps, returns=returns, episodes=np.ones_like(returns))
    (row,) = report.compare(c)
    assert row.step == 1500 * per_update and row.paper == 24.1 and row.band == (22.9, 25.3)
    np.testing.assert_allclose(row.values, returns[:, -150:].mean(1))  # the last 10% of updates
