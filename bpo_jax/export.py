"""Export a trained policy for deployment: one serialized JAX function, normaliser included.

``export_policy`` writes the deterministic policy (the Gaussian's mean, or the most likely
discrete action) with the run's observation normalisation baked in as constants, as a
``jax.export`` artifact with a symbolic batch size.  Running it needs only ``jax``::

    import jax, numpy as np
    policy = jax.export.deserialize(open("policy.jaxexport", "rb").read())
    action = policy.call(np.zeros((1, obs_dim), np.float32))       # [1, A]

or :func:`load_policy`.  With an asymmetric critic the function takes the actor's observation
(the ``policy`` group) only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax import normalization as norm
from bpo_jax.networks import action_to_env, make_network


def policy_function(config, action_space, params, obs_stats=None, obs_dim: int | None = None):
    """obs [B, policy_obs] -> deterministic env action [B, ...], a pure function of obs alone."""
    network = make_network(config, action_space)
    split = config.policy_obs_dim

    def policy(obs):
        obs = obs.astype(jnp.float32)
        if split:  # the actor reads the first `split` entries; pad the critic's part, which it ignores
            pad = jnp.zeros(obs.shape[:-1] + (obs_dim - split,), obs.dtype)
            full = jnp.concatenate([obs, pad], axis=-1)
        else:
            full = obs
        if obs_stats is not None:
            full = norm.normalize(obs_stats, full, config.obs_clip)
        dist = network.apply(params, full, method="policy")
        return action_to_env(action_space, dist.mode(), config.action_squash)

    return config.with_precision(policy)


def export_policy(path: str, config, action_space, state, obs_dim: int) -> bytes:
    """Serialize the policy of ``state`` (a TrainState of one seed) to ``path``; returns the bytes.
    ``obs_dim``: the full observation width the networks were trained on."""
    params = jax.device_get(state.params)
    stats = jax.device_get(state.obs_stats) if state.obs_stats is not None else None
    fn = policy_function(config, action_space, params, stats, obs_dim)
    width = config.policy_obs_dim or obs_dim
    (batch,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(fn))(jax.ShapeDtypeStruct((batch, width), jnp.float32))
    data = exported.serialize()
    with open(path, "wb") as f:
        f.write(data)
    return bytes(data)


def load_policy(path: str):
    """The exported policy as a callable obs [B, D] -> action (needs only jax)."""
    with open(path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    return lambda obs: exported.call(np.asarray(obs, np.float32))
