"""Arguments of the library's entry points (evaluation, export) checked before any tracing, in
one line that names them, rather than as a JAX shape error or a flax ScopeParamShapeError deep
inside: integers, seeds, a Config, and whether a TrainState is one seed's or a run's of a
configuration's network (its parameter shapes against the network's, traced abstractly)."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from bpo_jax import normalization as norm
from bpo_jax.envs.options import is_int
from bpo_jax.networks import make_network


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 and "\n" not in text else text[:57].replace("\n", " ") + "..."


INT32_MAX = 2**31 - 1  # step and frame counters are int32 inside the programs


def check_int(name: str, value: Any, low: int = 1, high: int = INT32_MAX) -> int:
    """``value`` as an int in [``low``, ``high``]; ValueError naming ``name`` otherwise (a bool or
    a float is no integer)."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer >= {low}, got {show(value)}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if value > high:
        raise ValueError(f"{name} must be <= {high:,}, got {value:,}")
    return int(value)


def check_seed(seed: Any, name: str = "seed") -> int:
    """A PRNG seed: an integer in [0, 2**32), as Config.seed."""
    if not is_int(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"{name} must be an integer in [0, 2**32), got {show(seed)}")
    return int(seed)


def check_config(config: Any) -> None:
    from bpo_jax.config import Config

    if not isinstance(config, Config):
        raise ValueError(f"config must be a bpo_jax Config, got {type(config).__name__}")


def leaf_shapes(prefix: str, tree) -> dict[str, tuple[int, ...]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {prefix + jax.tree_util.keystr(path): tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
            for path, leaf in leaves}


def expected_shapes(config, action_space, obs_spec) -> dict[str, tuple[int, ...]]:
    """The shapes of one seed's ``state.params`` (and ``state.obs_stats`` with normalize_obs) that
    ``config``'s network has for observations of ``obs_spec`` (traced abstractly: no computation)."""
    shape, dtype = tuple(obs_spec.shape), obs_spec.dtype
    network = make_network(config, action_space, jax.ShapeDtypeStruct(shape, dtype))
    params = jax.eval_shape(network.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *shape), dtype))
    shapes = leaf_shapes("state.params", params)
    if config.normalize_obs:
        shapes.update(leaf_shapes("state.obs_stats", jax.eval_shape(lambda: norm.init_stats(shape))))
    return shapes


def state_shapes(state) -> dict[str, tuple[int, ...]]:
    if not (hasattr(state, "params") and hasattr(state, "obs_stats")):
        raise ValueError(f"state must be a TrainState (with params and obs_stats), got {type(state).__name__}")
    shapes = leaf_shapes("state.params", state.params)
    if state.obs_stats is not None:
        shapes.update(leaf_shapes("state.obs_stats", state.obs_stats))
    return shapes


def match_shapes(expected: dict, actual: dict) -> tuple[int | None, str | None]:
    """(None, None): ``actual`` is one seed's state; (S, None): S seeds' (every array with a
    leading seed axis of S); (None, why): neither."""
    missing, extra = [k for k in expected if k not in actual], [k for k in actual if k not in expected]
    if missing or extra:
        if all(k.startswith("state.obs_stats") for k in missing + extra):
            return None, ("the configuration normalizes observations (normalize_obs) but the state holds no "
                          "observation statistics" if missing else "the state holds observation statistics but "
                          "the configuration does not normalize observations (normalize_obs)")
        keys = missing or extra
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        return None, (f"the state lacks {keys[0]}{more}" if missing else
                      f"the state has {keys[0]}{more}, which the configuration's network has not")
    if all(actual[k] == expected[k] for k in expected):
        return None, None
    batched = [k for k in expected if actual[k][1:] == expected[k] and len(actual[k]) == len(expected[k]) + 1]
    seeds = {actual[k][0] for k in batched}
    if len(batched) == len(expected) and len(seeds) == 1:
        return seeds.pop(), None
    wrong = [k for k in expected if actual[k] != expected[k] and k not in batched]
    if not wrong:
        return None, "its arrays disagree on the leading seed axis"
    k = wrong[0]
    if batched and len(actual[k]) == len(expected[k]) + 1:  # a run's state: compare one seed's
        return None, f"{k} has shape {actual[k][1:]} per seed where the configuration's network has {expected[k]}"
    return None, f"{k} has shape {actual[k]} where the configuration's network has {expected[k]}"


def state_seeds(config, action_space, obs_spec, state) -> int | None:
    """How many seeds ``state`` holds: None where it is one seed's (unbatched), S where every array
    has a leading axis of S seeds.  ValueError where its parameters (or observation statistics)
    are not those of ``config``'s network for observations of ``obs_spec`` (.shape, .dtype)."""
    seeds, why = match_shapes(expected_shapes(config, action_space, obs_spec), state_shapes(state))
    if why is not None:
        raise ValueError(f"the state does not match the configuration (another env, algorithm or network?): {why}")
    return seeds


def check_finite(state, seeds: int | None) -> None:
    """ValueError naming the first array of ``state.params`` or ``state.obs_stats`` that holds a
    NaN or Inf (and the seed, where the state holds ``seeds``): a policy of it acts without a
    word on nonsense (a CartPole argmax over NaN logits is action 0, a plausible return)."""
    for prefix, tree in (("state.params", state.params), ("state.obs_stats", state.obs_stats)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            x = np.asarray(jax.device_get(leaf))
            if not np.issubdtype(x.dtype, np.floating) or np.isfinite(x).all():
                continue
            where = ""
            if seeds is not None:
                bad = [i for i in range(x.shape[0]) if not np.isfinite(x[i]).all()]
                where = f" of seed {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            raise ValueError(f"{prefix}{jax.tree_util.keystr(path)}{where} holds NaN or Inf, so its policy acts on "
                             "nonsense (a damaged checkpoint?)")
