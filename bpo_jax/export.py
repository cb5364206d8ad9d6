"""Export a trained policy for deployment: one serialized JAX function, normaliser included.

``export_policy`` writes the deterministic policy (the Gaussian's mean, or the most likely
discrete action) with the run's observation normalisation baked in as constants, as a
``jax.export`` artifact with a symbolic batch size.  Running it needs only ``jax``::

    import jax, numpy as np
    policy = jax.export.deserialize(open("policy.jaxexport", "rb").read())
    action = policy.call(np.zeros((1, obs_dim), np.float32))       # [1, A]

or :func:`load_policy`.  With an asymmetric critic the function takes the actor's observation
(the ``policy`` group) only.

``export_onnx`` writes the same policy as an ONNX graph (opset 17: Gemm layers, one alone for a
linear policy, the activation, the normaliser and the action mapping as constants; the ``onnx``
extra), for robot deployment stacks and runtimes that read ONNX, as rsl_rl's ``policy.onnx``:
input ``obs`` [batch, D] float32, output ``action`` (float32 [batch, A], or int64 [batch] for
discrete actions); for the Nature CNN (Atari) the input is the uint8 frames [batch, H, W, C].
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax import normalization as norm
from bpo_jax.checks import check_config, check_finite, expected_shapes, match_shapes, show, state_shapes
from bpo_jax.envs.base import Box, Discrete
from bpo_jax.envs.options import is_int
from bpo_jax.networks import action_to_env, make_network


# ------------------------------------------------------------------ argument checks
def check_obs_dim(obs_dim: Any) -> int | tuple[int, int, int]:
    """``obs_dim`` as the observation width (an int; a 1-tuple counts as its entry) or an image's
    (H, W, C) tuple."""
    dims = tuple(obs_dim) if isinstance(obs_dim, (tuple, list)) else None
    if dims is not None and len(dims) in (1, 3) and all(is_int(d) and d >= 1 for d in dims):
        return int(dims[0]) if len(dims) == 1 else tuple(int(d) for d in dims)
    if dims is None and is_int(obs_dim) and obs_dim >= 1:
        return int(obs_dim)
    raise ValueError(f"obs_dim must be the observation width (an integer >= 1) or an image's (H, W, C), "
                     f"got {show(obs_dim)}")


def _image_shape(obs_dim) -> tuple[int, ...] | None:
    """(H, W, C) where ``obs_dim`` is an image's shape (the Nature-CNN policies), else None."""
    return tuple(obs_dim) if isinstance(obs_dim, (tuple, list)) and len(obs_dim) == 3 else None


def _obs_spec(obs_dim) -> jax.ShapeDtypeStruct:
    """One observation as export takes it: uint8 frames for an image's shape, else float32 [obs_dim]."""
    image = _image_shape(obs_dim)
    return jax.ShapeDtypeStruct(image, jnp.uint8) if image else jax.ShapeDtypeStruct((obs_dim,), jnp.float32)


def _flat_stats(stats, width: int):
    """Observation statistics of a multi-axis observation (e.g. gymnax DeepSea's [8, 8]) as those
    of its flattened width, the observation the exported function takes (the MLP flattens too)."""
    if stats is None:
        return None
    return jax.tree.map(lambda x: np.reshape(x, (width,)) if np.ndim(x) > 1 and np.size(x) == width else x, stats)


def _flat_stat_shapes(actual: dict, width: int) -> dict:
    """:func:`state_shapes` with multi-axis statistics (one seed's, or a leading seed axis and
    then one seed's) shown as the flattened width, as :func:`_flat_stats` will pass them."""
    def flat(k, shape):
        if not k.startswith("state.obs_stats") or len(shape) < 2:
            return shape
        if int(np.prod(shape)) == width:
            return (width,)
        return (shape[0], width) if len(shape) > 2 and int(np.prod(shape[1:])) == width else shape
    return {k: flat(k, shape) for k, shape in actual.items()}


def _obs_dim_mismatch(config, action_space, obs_dim: int, actual: dict) -> str | None:
    """Where ``state`` fits ``config`` but not the width ``obs_dim``: the message that says so."""
    # The leaves whose shape follows obs_dim (the first layers' kernels) tell the state's width.
    base = expected_shapes(config, action_space, _obs_spec(obs_dim))
    other = expected_shapes(config, action_space, _obs_spec(obs_dim + 1))
    for k in base:
        if base[k] == other[k] or k not in actual:
            continue
        axis = next(i for i, (a, b) in enumerate(zip(base[k], other[k])) if a != b)
        got = actual[k][1:] if len(actual[k]) == len(base[k]) + 1 else actual[k]
        if len(got) != len(base[k]):
            return None
        width = obs_dim + got[axis] - base[k][axis]
        if width > config.policy_obs_dim and width != obs_dim and \
                match_shapes(expected_shapes(config, action_space, _obs_spec(width)), actual)[1] is None:
            return f"obs_dim {obs_dim} does not match the state, whose networks read observations of width {width}"
        return None
    return None


def _checked(path, config, action_space, state, obs_dim) -> int | tuple[int, int, int]:
    """The export's arguments checked (one seed's finite state that ``config``'s network for
    ``obs_dim`` fits); returns ``obs_dim`` as an int or an image's (H, W, C)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path, got {show(path)}")
    _check_folder(path)
    check_config(config)
    if not isinstance(action_space, (Box, Discrete)):
        raise ValueError(f"action_space must be a bpo_jax Box or Discrete, got {show(action_space)}")
    obs_dim = check_obs_dim(obs_dim)
    if _image_shape(obs_dim) is None and config.policy_obs_dim and obs_dim <= config.policy_obs_dim:
        raise ValueError(f"obs_dim must be the full observation width, above policy_obs_dim "
                         f"{config.policy_obs_dim} (the actor's part, then the critic's), got {obs_dim}")
    actual = state_shapes(state)
    image, cnn = _image_shape(obs_dim) is not None, any("['torso']" in k for k in actual)
    if image and not cnn:
        raise ValueError(f"obs_dim {obs_dim} is an image's (H, W, C), which the Nature-CNN policy reads, but the "
                         "state holds an MLP policy: pass the observation width (an integer)")
    if cnn and not image:
        raise ValueError(f"obs_dim {obs_dim} is an observation width, but the state holds a Nature-CNN policy: "
                         "pass the image's (H, W, C)")
    if not image:
        actual = _flat_stat_shapes(actual, obs_dim)
    seeds, why = match_shapes(expected_shapes(config, action_space, _obs_spec(obs_dim)), actual)
    if why is not None:
        raise ValueError((not image and _obs_dim_mismatch(config, action_space, obs_dim, actual)) or
                         f"the state does not match the configuration and obs_dim {obs_dim} (another env, algorithm, "
                         f"network or observation shape?): {why}")
    if seeds is not None:
        raise ValueError(f"state holds {seeds} seed{'s' * (seeds != 1)}; pass one seed's state "
                         "(jax.tree.map(lambda x: x[i], state))")
    check_finite(state, None)
    return obs_dim


# ------------------------------------------------------------------ export
def policy_function(config, action_space, params, obs_stats=None, obs_dim: int | tuple | None = None):
    """obs [B, policy_obs] (or uint8 frames [B, H, W, C] where ``obs_dim`` is an image's shape)
    -> deterministic env action [B, ...], a pure function of obs alone."""
    if obs_dim is not None:
        obs_dim = check_obs_dim(obs_dim)
    image = _image_shape(obs_dim)
    if image is not None:  # the Nature CNN scales its uint8 frames itself; no normaliser applies
        network = make_network(config, action_space, jax.ShapeDtypeStruct(image, jnp.uint8))
        return config.with_precision(lambda obs: network.apply(params, obs, method="policy").mode())
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


def export_policy(path: str, config, action_space, state, obs_dim: int | tuple) -> bytes:
    """Serialize the policy of ``state`` (a TrainState of one seed) to ``path``; returns the bytes.
    ``obs_dim``: the full observation width the networks were trained on (an int or a 1-tuple), or
    an image's (H, W, C).  ValueError, before any tracing, where ``state`` is not one seed's state
    of ``config``'s network for ``obs_dim`` observations; FileNotFoundError (NotADirectoryError)
    where ``path``'s folder does not exist (none is created)."""
    obs_dim = _checked(path, config, action_space, state, obs_dim)
    params = jax.device_get(state.params)
    stats = None if _image_shape(obs_dim) else _flat_stats(jax.device_get(state.obs_stats), obs_dim)
    fn = policy_function(config, action_space, params, stats, obs_dim)
    (batch,) = jax.export.symbolic_shape("b")
    image = _image_shape(obs_dim)
    obs = jax.ShapeDtypeStruct((batch, *image), jnp.uint8) if image else \
        jax.ShapeDtypeStruct((batch, config.policy_obs_dim or obs_dim), jnp.float32)
    exported = jax.export.export(jax.jit(fn))(obs)
    data = bytes(exported.serialize())
    _write(path, data)
    return data


def load_policy(path: str):
    """The exported policy as a callable obs [B, D] (or uint8 frames) -> action (needs only jax).
    FileNotFoundError where ``path`` does not exist; ValueError where it is not a file that
    :func:`export_policy` wrote."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path, got {show(path)}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a bpo-jax jax.export policy file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no policy file {path}")
    with open(path, "rb") as f:
        data = f.read()
    not_ours = f"{path} is not a bpo-jax jax.export policy (export_policy or `bpo-jax export --format jax` writes one)"
    try:
        exported = jax.export.deserialize(bytearray(data))
        avals = exported.in_avals
    except Exception:  # a foreign file fails anywhere in the flatbuffer reader (struct.error, ...)
        raise ValueError(not_ours) from None
    if len(avals) != 1 or len(avals[0].shape) < 2 or len(exported.out_avals) != 1:
        raise ValueError(not_ours + ": its function does not take one batch of observations to one of actions")
    dtype = avals[0].dtype
    return lambda obs: exported.call(jnp.asarray(obs, dtype))  # (jnp: it also runs inside jax.jit)


class ExportError(ValueError):
    """The policy cannot be written in the format asked (the message says why and what to do)."""


def export_onnx(path: str, config, action_space, state, obs_dim: int | tuple) -> bytes:
    """Write the deterministic policy of ``state`` (a TrainState of one seed) to ``path`` as ONNX;
    returns the bytes.  The graph computes what :func:`policy_function` computes, in float32;
    ``obs_dim`` (and the checks) as :func:`export_policy` takes it."""
    obs_dim = _checked(path, config, action_space, state, obs_dim)
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'bpo-jax[onnx]'") from None
    params = jax.device_get(state.params)["params"]
    image = _image_shape(obs_dim)
    nodes, consts = [], []

    def const(name, value, dtype=np.float32):
        consts.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    if image is not None and "torso" in params:  # the Nature CNN (bpo_jax.cnn): uint8 NHWC frames
        torso = params["torso"]
        x = node("Mul", [node("Cast", ["obs"], "frames", to=TensorProto.FLOAT), const("inv_255", 1.0 / 255.0)], "scaled")
        x = node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])  # ONNX convolutions are NCHW
        for i, stride in enumerate((4, 2, 1)):
            conv = torso[f"Conv_{i}"]
            kernel = np.transpose(np.asarray(conv["kernel"]), (3, 2, 0, 1))  # HWIO -> OIHW
            x = node("Conv", [x, const(f"conv{i}_w", kernel), const(f"conv{i}_b", conv["bias"])], f"conv{i}",
                     strides=[stride, stride])
            x = node("Relu", [x], f"conv{i}_relu")
        # Flattened in the network's NHWC order, so the dense layer's rows line up.
        x = node("Flatten", [node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])], "flat", axis=1)
        dense = torso["Dense_0"]
        x = node("Relu", [node("Gemm", [x, const("torso_w", dense["kernel"]), const("torso_b", dense["bias"])],
                               "torso_dense")], "features")
        mlp, head = params.get("pi_mlp", {}), params["pi_head"]
        obs_type, obs_shape = TensorProto.UINT8, ["batch", *image]
    elif image is None and "Dense_0" in params.get("actor", {}):  # an MLP; no MLP_0 where it is linear
        x = "obs"
        width = config.policy_obs_dim or obs_dim
        stats = _flat_stats(jax.device_get(state.obs_stats), obs_dim)
        if stats is not None and float(stats.count) > 0:  # the normaliser, as norm.normalize computes it
            mean = np.asarray(stats.mean, np.float32)[:width]
            std = np.sqrt(np.asarray(stats.variance, np.float32)[:width] + np.float32(1e-8))
            x = node("Div", [node("Sub", [x, const("obs_mean", mean)], "centred"), const("obs_std", std)], "scaled")
            x = node("Clip", [x, const("obs_low", -config.obs_clip), const("obs_high", config.obs_clip)], "normalised")
        mlp, head = params["actor"].get("MLP_0", {}), params["actor"]["Dense_0"]  # hidden_sizes=(): the head alone
        obs_type, obs_shape = TensorProto.FLOAT, ["batch", width]
    else:
        layers = params.get("actor", params)
        raise ExportError(f"ONNX export covers MLP policies (linear ones too) on vector observations and the Nature CNN "
                          f"on uint8 frames; {config.env}'s policy network (layers {', '.join(sorted(layers)) or 'none'}) "
                          f"on {'image' if image is not None else 'vector'} observations is neither: export it with "
                          "`bpo-jax export --format jax` (export_policy in Python)")
    activation = {"tanh": "Tanh", "relu": "Relu", "elu": "Elu"}[config.activation]
    for i, name in enumerate(sorted(mlp, key=lambda name: int(name.rpartition("_")[2]))):
        layer = mlp[name]
        x = node("Gemm", [x, const(f"w{i}", layer["kernel"]), const(f"b{i}", layer["bias"])], f"dense{i}")
        x = node(activation, [x], f"hidden{i}")
    x = node("Gemm", [x, const("w_head", head["kernel"]), const("b_head", head["bias"])], "head")
    if isinstance(action_space, Discrete):  # the most likely action
        nodes.append(helper.make_node("ArgMax", [x], ["action"], name="action", axis=1, keepdims=0))
        out_type, out_shape = TensorProto.INT64, ["batch"]
    else:  # the Gaussian's mean, mapped to the bounds as action_to_env
        low = np.broadcast_to(np.asarray(action_space.low, np.float32), action_space.shape)
        high = np.broadcast_to(np.asarray(action_space.high, np.float32), action_space.shape)
        if config.action_squash == "tanh":
            x = node("Add", [node("Tanh", [x], "squashed"), const("one", 1.0)], "shifted")
            x = node("Mul", [x, const("half_range", 0.5 * (high - low))], "scaled_action")
            nodes.append(helper.make_node("Add", [x, const("act_low", low)], ["action"], name="action"))
        else:
            x = node("Min", [x, const("act_high", high)], "below_high")
            nodes.append(helper.make_node("Max", [x, const("act_low", low)], ["action"], name="action"))
        out_type, out_shape = TensorProto.FLOAT, ["batch", int(np.prod(action_space.shape))]
    graph = helper.make_graph(
        nodes, "bpo_jax_policy", [helper.make_tensor_value_info("obs", obs_type, obs_shape)],
        [helper.make_tensor_value_info("action", out_type, out_shape)], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bpo-jax")
    model.ir_version = min(model.ir_version, 8)  # readable by older runtimes too
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    _write(path, data)
    return data


def _check_folder(path) -> None:
    """The folder ``path`` goes in exists (export does not create it), said in one line naming
    it before the policy is traced."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise FileNotFoundError(f"cannot write {os.fspath(path)}: the folder {folder} does not exist (create it first)")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"cannot write {os.fspath(path)}: {folder} is not a folder")


def _write(path: str, data: bytes) -> None:
    """``data`` to ``path`` atomically (a killed export leaves the old file or none, never a part)."""
    from bpo_jax.reporting import write_atomic

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    write_atomic(path, write)
