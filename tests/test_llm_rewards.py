"""The addition task, the verifiable-reward interface, majority voting and TTRL batches."""
import numpy as np
import pytest

from bpo_jax.llm import rewards, task


def test_problems_are_seeded_distinct_and_disjoint():
    p1, ops1 = task.make_problems(0, 50)
    p2, _ = task.make_problems(0, 50)
    np.testing.assert_array_equal(p1, p2)
    assert len({tuple(o) for o in ops1}) == 50
    _, ops3 = task.make_problems(1, 500, exclude=ops1)
    assert not {tuple(o) for o in ops1} & {tuple(o) for o in ops3}
    assert p1.shape == (50, task.PROMPT_LEN) and task.true_answer(p1[0]) == ops1[0].sum()


def test_answer_tokens_and_extraction_round_trip():
    tokens, mask = task.answer_tokens(np.array([0, 7, 42, 198]))
    E, P = task.END, task.PAD
    np.testing.assert_array_equal(tokens, [[0, E, P, P], [7, E, P, P], [4, 2, E, P], [1, 9, 8, E]])
    np.testing.assert_array_equal(mask.sum(1), [2, 2, 3, 4])
    assert [task.extract_answer(t) for t in tokens] == [0, 7, 42, 198]
    # No end token, an empty answer, a leading zero, a non-digit: no answer.
    for bad in ([1, 2, 3, 4], [E, P, P, P], [0, 5, E, P], [task.PLUS, E, P, P]):
        assert task.extract_answer(np.array(bad)) is None


def test_verifiable_reward_scores_each_pair():
    prompts = task.encode_prompts(np.array([[12, 30], [99, 99]]))
    responses = np.array([[4, 2, task.END, task.PAD], [1, 9, 7, task.END]])
    np.testing.assert_array_equal(rewards.score(task.reward, prompts, responses), [1.0, 0.0])


def test_majority_vote_ignores_none_and_breaks_ties_by_first_seen():
    assert rewards.majority_vote([None, 3, 5, 5, 3, None, None]) == 3
    assert rewards.majority_vote([2, 7, 7]) == 7
    assert rewards.majority_vote([None, None]) is None


def test_ttrl_votes_over_n_and_rewards_the_first_m():
    # Prompt 0: the vote over all 4 is 8 (three of four), the first 2 are trained on.
    # Prompt 1: 5 wins the vote only through the responses that are not trained on.
    answers = [8, 1, 8, 8, 4, 5, 5, 5]
    b = rewards.ttrl_rewards(answers, num_prompts=2, num_votes=4, num_train=2)
    np.testing.assert_array_equal(b.index, [0, 1, 4, 5])
    np.testing.assert_array_equal(b.rewards, [1, 0, 0, 1])
    np.testing.assert_array_equal(b.group_ids, [0, 0, 1, 1])
    assert b.labels == [8, 5]
    none = rewards.ttrl_rewards([None, None], 1, 2, 2)
    np.testing.assert_array_equal(none.rewards, [0, 0])
    with pytest.raises(ValueError):
        rewards.ttrl_rewards(answers, 2, 4, 5)
