"""bpo_jax.checks: the argument and saved-state checks that evaluation and export share."""
import pytest

from bpo_jax import checks
from bpo_jax.evaluate import MAX_EPISODES


def test_integer_arguments_take_their_bounds_inclusive():
    """check_int's range [low, high] includes both ends: MAX_EPISODES episodes and INT32_MAX steps
    are allowed, one more is refused by name."""
    assert checks.check_int("episodes", MAX_EPISODES, high=MAX_EPISODES) == MAX_EPISODES
    assert checks.check_int("max_steps", 2**31 - 1) == 2**31 - 1
    assert checks.check_int("episodes", 1) == 1
    with pytest.raises(ValueError, match=r"^episodes must be <= 1,048,576, got 1,048,577$"):
        checks.check_int("episodes", MAX_EPISODES + 1, high=MAX_EPISODES)
    with pytest.raises(ValueError, match=r"^max_steps must be >= 1, got 0$"):
        checks.check_int("max_steps", 0)


def test_a_state_whose_arrays_disagree_on_the_seed_axis_is_no_run():
    """A run's state has one leading seed axis S on every array; arrays batched over different
    counts (3 seeds' parameters, 4 seeds' statistics) are neither one seed's nor a run's."""
    expected = {"state.params['w']": (2, 5), "state.obs_stats['mean']": (2,)}
    assert checks.match_shapes(expected, {k: (3, *v) for k, v in expected.items()}) == (3, None)
    assert checks.match_shapes(expected, dict(expected)) == (None, None)
    mixed = {"state.params['w']": (3, 2, 5), "state.obs_stats['mean']": (4, 2)}
    assert checks.match_shapes(expected, mixed) == (None, "its arrays disagree on the leading seed axis")
