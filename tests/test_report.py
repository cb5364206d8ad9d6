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
