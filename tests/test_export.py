"""Policy export: the ONNX graph and the jax.export file compute the JAX policy's actions."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import Config, checkpoint, cli, export, make_trainer
from bpo_jax.envs import Box, Discrete
from bpo_jax.export import export_onnx, load_policy, policy_function
from tests.compiling import compile_fast

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("config", [
    Config(env="gymnax/Pendulum-v1", total_steps=1024, num_minibatches=2, normalize_obs=True),
    Config(env="gymnax/Pendulum-v1", total_steps=1024, num_minibatches=2, normalize_obs=True, action_squash="tanh",
           activation="elu", hidden_sizes=(32, 16, 8)),
    Config(env="gymnax/Acrobot-v1", total_steps=1024, num_minibatches=2, activation="relu"),
], ids=["clip", "tanh-elu-3-layers", "discrete-relu"])
def test_the_onnx_graph_computes_the_deterministic_policy(config, tmp_path):
    """Trained parameters and normaliser, observations far outside the normaliser's clip: the
    ONNX runtime's actions equal :func:`policy_function`'s (float32 rounding)."""
    trainer = make_trainer(config)
    key = jax.random.key(0)
    state, _ = compile_fast(trainer.train, key)(key)
    obs_dim = trainer.env.obs_spec.shape[0]
    export_onnx(str(tmp_path / "p.onnx"), config, trainer.env.action_space, state, obs_dim)
    obs = (np.random.default_rng(0).normal(size=(64, obs_dim)) * 20).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"obs": obs})[0]
    want = np.asarray(policy_function(config, trainer.env.action_space, state.params, state.obs_stats, obs_dim)(
        jnp.asarray(obs)))
    if config.env == "gymnax/Acrobot-v1":
        assert got.dtype == np.int64 and np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert np.all(got >= -2.0) and np.all(got <= 2.0)  # Pendulum's torque bounds


def test_cli_exports_a_runs_seed_in_both_formats(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli.main(["train", "--total-steps", "1024", "--seeds", "2", "--quiet", "--no-tensorboard",
                     "--out", str(run)]) == 0
    assert cli.main(["export", "--checkpoint", str(run), "--seed-index", "1"]) == 0
    assert cli.main(["export", "--checkpoint", str(run), "--format", "jax", "--out", str(tmp_path / "p.jaxexport")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {run / 'policy_seed1.onnx'}: seed 1's deterministic policy at update 2" in out
    # Each file against policy_function of ITS seed's restored parameters and normaliser.
    loaded = checkpoint.load(str(run))
    space = Discrete(2)
    obs = (np.random.default_rng(1).normal(size=(256, 4)) * 3).astype(np.float32)
    want = [np.asarray(policy_function(loaded.config, space, *jax.tree.map(lambda x: x[i], (
        loaded.start.state.params, loaded.start.state.obs_stats)), 4)(jnp.asarray(obs))) for i in (0, 1)]
    assert not np.array_equal(want[0], want[1])  # the seeds' policies differ on these observations
    onnx_actions = ort.InferenceSession(str(run / "policy_seed1.onnx")).run(None, {"obs": obs})[0]
    policy = load_policy(str(tmp_path / "p.jaxexport"))
    jax_actions = np.asarray(policy(obs))  # seed 0
    # Inside a jitted control loop too (it converted a tracer with NumPy).
    np.testing.assert_array_equal(np.asarray(jax.jit(policy)(jnp.asarray(obs))), jax_actions)
    assert onnx_actions.shape == jax_actions.shape == (256,)
    np.testing.assert_array_equal(onnx_actions, want[1])
    np.testing.assert_array_equal(jax_actions, want[0])

    assert cli.main(["export", "--checkpoint", str(run), "--seed-index", "2"]) == 2
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(run)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "bpo-jax: error: --seed-index must be in [0, 1] (the run has 2 seed(s)), got 2"
    assert err[1].startswith(f"bpo-jax: error: --out {run} is a directory")
    assert cli.main(["export", "--checkpoint", "", "--out", str(tmp_path / "e.onnx")]) == 2  # it read the current folder
    assert "the checkpoint path is empty" in capsys.readouterr().err

    # Without the onnx package, `--out new/sub/p.onnx` failed in one line but left new/sub/ behind.
    def no_onnx(*args, **kwargs):
        raise export.ExportError("ONNX export needs the onnx package: pip install 'bpo-jax[onnx]'")

    monkeypatch.setattr(export, "export_onnx", no_onnx)
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "new" / "sub" / "p.onnx")]) == 2
    assert capsys.readouterr().err.strip() == "bpo-jax: error: ONNX export needs the onnx package: pip install 'bpo-jax[onnx]'"
    assert not (tmp_path / "new").exists()


def test_the_nature_cnn_exports_to_onnx_and_jax(tmp_path):
    """Atari's Nature-CNN policy (uint8 NHWC frames in): the ONNX graph (NCHW convolutions,
    flattened back in NHWC order) and the jax.export file choose the JAX policy's actions."""
    from types import SimpleNamespace

    from bpo_jax.envs.base import Discrete
    from bpo_jax.export import export_policy
    from bpo_jax.networks import init_params, make_network

    config, space, image = Config(env="atari/Pong-v5", hidden_sizes=(32,), activation="relu"), Discrete(6), (84, 84, 4)
    network = make_network(config, space, jax.ShapeDtypeStruct(image, jnp.uint8))
    params = init_params(network, jax.random.key(0), jnp.zeros((1, *image), jnp.uint8))
    # The head's gain 0.01 leaves near-ties that float rounding could break either way: widen it.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 1000.0 if "pi_head" in jax.tree_util.keystr(path) else x, params)
    state = SimpleNamespace(params=params, obs_stats=None)
    frames = np.random.default_rng(2).integers(0, 256, size=(16, *image), dtype=np.uint8)
    want = np.asarray(policy_function(config, space, params, None, image)(jnp.asarray(frames)))
    assert len(set(want.tolist())) > 1  # the frames do not all get one action

    export_onnx(str(tmp_path / "cnn.onnx"), config, space, state, image)
    got = ort.InferenceSession(str(tmp_path / "cnn.onnx")).run(None, {"obs": frames})[0]
    assert np.array_equal(got, want)
    export_policy(str(tmp_path / "cnn.jaxexport"), config, space, state, image)
    assert np.array_equal(np.asarray(load_policy(str(tmp_path / "cnn.jaxexport"))(frames)), want)


# ------------------------------------------------------------------ argument checks
# Untrained parameters suffice: the checks read shapes, before anything is traced or written.
CARTPOLE = Config(env="gymnax/CartPole-v1", hidden_sizes=(16,), normalize_obs=True)


def _one_seed(config, obs_shape=(4,), seeds=None):
    """An untrained state of ``config``'s network for observations of ``obs_shape``, with
    statistics of a normaliser that saw samples (one seed's, or ``seeds`` seeds' stacked)."""
    from types import SimpleNamespace

    from bpo_jax import normalization as norm
    from bpo_jax.envs import make as make_env
    from bpo_jax.networks import init_params, make_network

    env = make_env(config.env, num_envs=1, reset_pool=0)
    params = init_params(make_network(config, env.action_space, env.obs_spec), jax.random.key(0),
                         jnp.zeros((1, *obs_shape)))
    rng = np.random.default_rng(3)
    stats = norm.RunningStats(jnp.float32(100.0), jnp.asarray(rng.normal(size=obs_shape), jnp.float32),
                              jnp.asarray(rng.uniform(1, 300, size=obs_shape), jnp.float32))
    state = SimpleNamespace(params=params, obs_stats=stats if config.normalize_obs else None)
    if seeds:
        state = SimpleNamespace(**jax.tree.map(lambda x: jnp.stack([x] * seeds), vars(state)))
    return state, env


def _writers():
    from bpo_jax.export import export_policy
    return [pytest.param(export_onnx, id="onnx"), pytest.param(export_policy, id="jax")]


@pytest.mark.parametrize("write", _writers())
@pytest.mark.parametrize("normalize", [True, False], ids=["normaliser", "no-normaliser"])
def test_export_refuses_a_state_batched_over_seeds(write, normalize, tmp_path):
    """A run's state (leading seed axis): a one-line ValueError naming ``state``, and no file
    (ONNX used to write a graph the checker rejects; jax.export failed in flax)."""
    config = CARTPOLE.replace(normalize_obs=normalize)
    state, env = _one_seed(config, seeds=3)
    with pytest.raises(ValueError) as e:
        write(str(tmp_path / "p"), config, env.action_space, state, 4)
    assert str(e.value) == "state holds 3 seeds; pass one seed's state (jax.tree.map(lambda x: x[i], state))"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write", _writers())
def test_export_refuses_an_observation_width_the_state_was_not_trained_on(write, tmp_path):
    state, env = _one_seed(CARTPOLE)
    for obs_dim in (5, 3, (5,)):
        with pytest.raises(ValueError) as e:
            write(str(tmp_path / "p"), CARTPOLE, env.action_space, state, obs_dim)
        width = obs_dim[0] if isinstance(obs_dim, tuple) else obs_dim
        assert str(e.value) == f"obs_dim {width} does not match the state, whose networks read observations of width 4"
    for obs_dim in (0, -4, 4.0, True, "4", (4, 1), (), None):
        with pytest.raises(ValueError, match=r"^obs_dim must be the observation width \(an integer >= 1\) or an "):
            write(str(tmp_path / "p"), CARTPOLE, env.action_space, state, obs_dim)
    with pytest.raises(ValueError, match=r"^obs_dim \(84, 84, 4\) is an image's \(H, W, C\), .* MLP policy: pass"):
        write(str(tmp_path / "p"), CARTPOLE, env.action_space, state, (84, 84, 4))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write", _writers())
def test_export_refuses_a_state_of_another_configuration(write, tmp_path):
    state, env = _one_seed(CARTPOLE)
    for config, why in [
        (CARTPOLE.replace(hidden_sizes=(8,)), "state.params['params']['actor']['Dense_0']['kernel'] has shape "
                                              "(16, 2) where the configuration's network has (8, 2)"),
        (CARTPOLE.replace(normalize_obs=False), "the state holds observation statistics but the configuration "
                                                "does not normalize observations (normalize_obs)"),
    ]:
        with pytest.raises(ValueError) as e:
            write(str(tmp_path / "p"), config, env.action_space, state, 4)
        assert str(e.value) == ("the state does not match the configuration and obs_dim 4 (another env, algorithm, "
                                f"network or observation shape?): {why}")
    with pytest.raises(ValueError, match=r"^the state does not match .*\['std_raw'\]$"):
        write(str(tmp_path / "p"), CARTPOLE, Box(-1.0, 1.0, (2,)), state, 4)  # Gaussian vs categorical
    assert list(tmp_path.iterdir()) == []


def test_a_one_tuple_obs_dim_is_its_width(tmp_path):
    from bpo_jax.export import export_policy

    state, env = _one_seed(CARTPOLE)
    as_int = export_onnx(str(tmp_path / "int.onnx"), CARTPOLE, env.action_space, state, 4)
    assert export_onnx(str(tmp_path / "tuple.onnx"), CARTPOLE, env.action_space, state, (4,)) == as_int
    export_policy(str(tmp_path / "p.jaxexport"), CARTPOLE, env.action_space, state, (4,))
    obs = (np.random.default_rng(4).normal(size=(64, 4)) * 3).astype(np.float32)
    want = np.asarray(policy_function(CARTPOLE, env.action_space, state.params, state.obs_stats, 4)(jnp.asarray(obs)))
    np.testing.assert_array_equal(np.asarray(load_policy(str(tmp_path / "p.jaxexport"))(obs)), want)
    np.testing.assert_array_equal(ort.InferenceSession(str(tmp_path / "tuple.onnx")).run(None, {"obs": obs})[0], want)


def test_observations_of_several_axes_export_flattened_with_their_normaliser(tmp_path):
    """gymnax DeepSea's [8, 8] observations: the MLP flattens them, the exported policy takes the
    64-wide flat observation with the [8, 8] statistics flattened to match (evaluate's policy on
    the unflattened ones gives the same actions)."""
    from bpo_jax.evaluate import make_policy
    from bpo_jax.export import export_policy
    from bpo_jax.networks import make_network

    config = Config(env="gymnax/DeepSea-bsuite", hidden_sizes=(16,), normalize_obs=True)
    state, env = _one_seed(config, obs_shape=(8, 8))
    params = jax.tree_util.tree_map_with_path(  # the head's gain 0.01 leaves near-ties: widen it
        lambda path, x: x * 1000.0 if "'actor']['Dense_0']" in jax.tree_util.keystr(path) else x, state.params)
    state.params = params
    obs = np.random.default_rng(5).normal(size=(128, 8, 8)).astype(np.float32)
    act = make_policy(config, make_network(config, env.action_space, env.obs_spec), env.action_space)
    want = np.asarray(act(params, state.obs_stats, jnp.asarray(obs)))
    assert len(set(want.tolist())) > 1
    export_onnx(str(tmp_path / "p.onnx"), config, env.action_space, state, 64)
    export_policy(str(tmp_path / "p.jaxexport"), config, env.action_space, state, 64)
    flat = obs.reshape(128, 64)
    np.testing.assert_array_equal(ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"obs": flat})[0], want)
    np.testing.assert_array_equal(np.asarray(load_policy(str(tmp_path / "p.jaxexport"))(flat)), want)


def test_load_policy_refuses_what_is_not_an_export(tmp_path):
    junk = tmp_path / "not_an_export"
    junk.write_bytes(b"not_an_export: some other file's bytes")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "random").write_bytes(np.random.default_rng(0).bytes(4096))
    for path in (junk, tmp_path / "empty", tmp_path / "random"):
        with pytest.raises(ValueError) as e:
            load_policy(str(path))
        assert str(e.value) == (f"{path} is not a bpo-jax jax.export policy (export_policy or `bpo-jax export "
                                "--format jax` writes one)")
    with pytest.raises(FileNotFoundError, match=f"^no policy file {re.escape(str(tmp_path / 'missing'))}$"):
        load_policy(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path))} is a directory, not a bpo-jax jax.export "
                                         "policy file$"):
        load_policy(str(tmp_path))


# ------------------------------------------------------------------ linear policies, unwritable paths
@pytest.mark.parametrize("env, squash", [("gymnax/CartPole-v1", "clip"), ("gymnax/Pendulum-v1", "clip"),
                                         ("gymnax/Pendulum-v1", "tanh")], ids=["discrete", "clip", "tanh"])
@pytest.mark.parametrize("normalize", [True, False], ids=["normaliser", "no-normaliser"])
def test_a_linear_policy_exports_to_onnx(env, squash, normalize, tmp_path):
    """`--hidden-sizes ""` (a linear policy and value: no MLP_0 in the actor) is one Gemm, the
    head's: the ONNX graph chooses the JAX policy's deterministic actions (ONNX export used to
    refuse it as neither an MLP nor the Nature CNN)."""
    import onnx

    config = Config(env=env, hidden_sizes=(), normalize_obs=normalize, action_squash=squash)
    width = 4 if env == "gymnax/CartPole-v1" else 3
    state, env = _one_seed(config, obs_shape=(width,))
    assert set(state.params["params"]["actor"]) <= {"Dense_0", "std_raw"}
    # Widen the head (gain 0.01): no near-ties for the argmax, and means both within and beyond the bounds.
    state.params = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 30.0 if "'actor']['Dense_0']" in jax.tree_util.keystr(path) else x, state.params)
    data = export_onnx(str(tmp_path / "p.onnx"), config, env.action_space, state, width)
    assert [n.op_type for n in onnx.load_from_string(data).graph.node].count("Gemm") == 1
    obs = (np.random.default_rng(6).normal(size=(256, width)) * 20).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"obs": obs})[0]
    want = np.asarray(policy_function(config, env.action_space, state.params, state.obs_stats, width)(jnp.asarray(obs)))
    if isinstance(env.action_space, Discrete):
        assert got.dtype == np.int64 and got.shape == (256,) and len(set(want.tolist())) > 1
        np.testing.assert_array_equal(got, want)
    else:
        assert got.dtype == np.float32 and got.shape == (256, 1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        inside = np.abs(want) < 2.0 - 1e-3  # Pendulum's torque bounds are [-2, 2]
        assert inside.any() and (squash == "tanh" or (~inside).any())


def test_onnx_names_what_it_cannot_export_and_the_cli_format_that_can(tmp_path, monkeypatch):
    """A network ONNX export does not cover (none that make_network builds now: a stand-in past
    the argument checks): one line naming the network and `bpo-jax export --format jax`."""
    from types import SimpleNamespace

    from bpo_jax import export
    from bpo_jax.export import ExportError

    monkeypatch.setattr(export, "_checked", lambda path, config, space, state, obs_dim: obs_dim)
    state = SimpleNamespace(params={"params": {"actor": {"LSTM_0": {}, "Dense_1": {}}}}, obs_stats=None)
    with pytest.raises(ExportError) as e:
        export_onnx(str(tmp_path / "p.onnx"), CARTPOLE, Discrete(2), state, 4)
    assert str(e.value) == ("ONNX export covers MLP policies (linear ones too) on vector observations and the Nature "
                            "CNN on uint8 frames; gymnax/CartPole-v1's policy network (layers Dense_1, LSTM_0) on "
                            "vector observations is neither: export it with `bpo-jax export --format jax` "
                            "(export_policy in Python)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write", _writers())
def test_export_to_a_missing_folder_names_the_folder_not_a_temporary_file(write, tmp_path, monkeypatch):
    """Export does not create folders (the CLI does): a path in a folder that does not exist, or
    under a file, is refused before tracing in one line naming it; an error while writing names
    the path asked for, not write_atomic's temporary file beside it."""
    import errno
    import os

    state, env = _one_seed(CARTPOLE)
    path = tmp_path / "nodir" / "x" / "p.jaxexport"
    with pytest.raises(FileNotFoundError) as e:
        write(str(path), CARTPOLE, env.action_space, state, 4)
    assert str(e.value) == f"cannot write {path}: the folder {path.parent} does not exist (create it first)"
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as e:
        write(str(tmp_path / "a_file" / "p"), CARTPOLE, env.action_space, state, 4)
    assert str(e.value) == f"cannot write {tmp_path / 'a_file' / 'p'}: {tmp_path / 'a_file'} is not a folder"

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src, None, dst)
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError) as e:
        write(str(tmp_path / "p"), CARTPOLE, env.action_space, state, 4)
    assert str(e.value) == f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}: '{tmp_path / 'p'}'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written, no temporary file left


@pytest.mark.parametrize("write", _writers())
def test_export_refuses_a_state_that_is_not_finite(write, tmp_path):
    """A policy of NaN parameters was exported (its actions NaN, or CartPole's always 0)."""
    state, env = _one_seed(CARTPOLE)
    params = jax.tree.map(np.array, state.params)
    params["params"]["actor"]["Dense_0"]["kernel"][0, 0] = np.inf
    state.params = params
    with pytest.raises(ValueError) as e:
        write(str(tmp_path / "p"), CARTPOLE, env.action_space, state, 4)
    assert str(e.value) == ("state.params['params']['actor']['Dense_0']['kernel'] holds NaN or Inf, so its policy acts "
                            "on nonsense (a damaged checkpoint?)")
    assert list(tmp_path.iterdir()) == []
