"""Action mapping to environment bounds."""
import jax.numpy as jnp
import numpy as np

from bpo_jax.envs import Box, Discrete
from bpo_jax.networks import action_to_env

BOX = Box(low=jnp.array([-1.0, 0.0]), high=jnp.array([1.0, 4.0]), shape=(2,))


def test_clip_is_identity_inside_and_clips_outside():
    a = jnp.array([[0.5, 3.0], [-7.0, 9.0]])
    np.testing.assert_allclose(action_to_env(BOX, a, "clip"), [[0.5, 3.0], [-1.0, 4.0]])


def test_tanh_maps_onto_the_box_smoothly():
    a = jnp.array([[0.0, 0.0], [50.0, -50.0], [0.5, 1.0]])
    out = np.asarray(action_to_env(BOX, a, "tanh"))
    np.testing.assert_allclose(out[0], [0.0, 2.0], atol=1e-6)  # the centre of the box
    np.testing.assert_allclose(out[1], [1.0, 0.0], atol=1e-6)  # saturates at the bounds
    np.testing.assert_allclose(out[2], [np.tanh(0.5), 2.0 + 2.0 * np.tanh(1.0)], rtol=1e-6)


def test_discrete_actions_pass_through():
    a = jnp.array([0, 1, 2])
    np.testing.assert_array_equal(action_to_env(Discrete(3), a, "tanh"), a)
