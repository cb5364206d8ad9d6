"""Policy export: the ONNX graph and the jax.export file compute the JAX policy's actions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import Config, checkpoint, cli, make_trainer
from bpo_jax.envs import Discrete
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


def test_cli_exports_a_runs_seed_in_both_formats(tmp_path, capsys):
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
    jax_actions = np.asarray(load_policy(str(tmp_path / "p.jaxexport"))(obs))  # seed 0
    assert onnx_actions.shape == jax_actions.shape == (256,)
    np.testing.assert_array_equal(onnx_actions, want[1])
    np.testing.assert_array_equal(jax_actions, want[0])

    assert cli.main(["export", "--checkpoint", str(run), "--seed-index", "2"]) == 2
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(run)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "bpo-jax: error: --seed-index must be in [0, 1] (the run has 2 seed(s)), got 2"
    assert err[1].startswith(f"bpo-jax: error: --out {run} is a directory")


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
