"""Verifiable rewards, and test-time RL (TTRL): rewards from a majority-vote pseudo-label.

A verifiable reward is any ``reward_fn(prompt, response) -> float`` of one prompt's tokens and
one response's tokens (the whole padded response; the function decides where it ends, e.g. at
the end token).  It runs on the host, outside jit, so it may parse, execute or look anything up.

TTRL (digest section 6.4) needs no label: sample N responses per prompt, take the most common
extracted answer as the pseudo-label, give reward 1 to responses that agree with it, and train
on the first M of the N (the paper: N = 64, M = 32).
"""
from __future__ import annotations

import collections
from typing import Callable, Hashable, NamedTuple, Optional, Sequence

import numpy as np

RewardFn = Callable[[np.ndarray, np.ndarray], float]
AnswerFn = Callable[[np.ndarray], Optional[Hashable]]


def score(reward_fn: RewardFn, prompts: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """Apply ``reward_fn`` to each (prompt, response) pair: [B, P], [B, R] -> [B] float32."""
    return np.array([reward_fn(p, r) for p, r in zip(np.asarray(prompts), np.asarray(responses))],
                    np.float32)


def majority_vote(answers: Sequence[Optional[Hashable]]) -> Optional[Hashable]:
    """The most common answer, ignoring None (unparseable); ties go to the answer seen first.
    None when no response gave an answer."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


class TTRLBatch(NamedTuple):
    """The training part of a TTRL batch, with the vote's outcome."""

    index: np.ndarray  # [P * M] rows of the sampled [P * N] batch that are trained on
    rewards: np.ndarray  # [P * M] 1.0 where the answer agrees with its prompt's pseudo-label
    group_ids: np.ndarray  # [P * M] prompt index of each trained row
    labels: list  # [P] the pseudo-label of each prompt (None: no answer parsed)


def ttrl_rewards(answers: Sequence[Optional[Hashable]], num_prompts: int, num_votes: int,
                 num_train: int) -> TTRLBatch:
    """Vote over all N responses of each prompt, reward agreement on the first M.

    Args:
      answers: [P * N] extracted answers, prompt-major (the N of prompt 0 first).
      num_votes: N responses per prompt used for the vote.  num_train: M <= N trained on.
    """
    if len(answers) != num_prompts * num_votes:
        raise ValueError(f"expected {num_prompts} x {num_votes} answers, got {len(answers)}")
    if not 1 <= num_train <= num_votes:
        raise ValueError(f"need 1 <= M <= N, got M = {num_train}, N = {num_votes}")
    index, rewards, groups, labels = [], [], [], []
    for p in range(num_prompts):
        group = answers[p * num_votes:(p + 1) * num_votes]
        label = majority_vote(group)
        labels.append(label)
        for j in range(num_train):
            index.append(p * num_votes + j)
            rewards.append(float(label is not None and group[j] == label))
            groups.append(p)
    return TTRLBatch(np.array(index, np.int32), np.array(rewards, np.float32), np.array(groups, np.int32), labels)
