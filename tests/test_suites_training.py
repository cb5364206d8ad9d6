"""Training runs on every accelerator-resident physics suite: smoke runs of a few updates on
brax/inverted_pendulum (brax/ant in ``-m extended``), playground/CartpoleSwingup and
mjx/Hopper-v4, and a learning run on an MJX task (``-m extended``).

Each program compiles an MJX physics step (tens of seconds on a 2-core CPU), so the smoke
runs are as small as a real update allows."""
import jax
import numpy as np
import pytest

from bpo_jax import Config, make_trainer, runner
from bpo_jax.reporting import tail_returns
from tests.compiling import FULL, compile_fast

SPLIT_ACROSS_WORKERS = True  # independent tests, each compiling its own programs (see conftest.py)

# A cached-reset pool keeps the reset physics out of the step program (some tasks' resets
# simulate hundreds of physics steps: CheetahRun's 200).  The playground task is a cart-pole:
# CheetahRun's model compiled for 60 s of the suite's time where CartpoleSwingup's takes 20.
SMOKE = dict(num_envs=4, num_steps=8, num_epochs=2, num_minibatches=2, hidden_sizes=(32, 32),
             total_steps=4 * 8 * 2, normalize_obs=True, reset_pool=8)


@pytest.mark.slow
@pytest.mark.parametrize("env_id,algo", [
    # brax's pendulum compiles in two thirds of Ant's time; Ant (contacts) is in `-m extended`.
    ("brax/inverted_pendulum", "bpo"),
    pytest.param("brax/ant", "bpo", marks=pytest.mark.extended),
    ("playground/CartpoleSwingup", "ppo"),
    ("mjx/Hopper-v4", "bpo"),
])
def test_smoke_training_updates_parameters(env_id, algo):
    config = Config(env=env_id, algo=algo, **SMOKE)
    trainer = make_trainer(config)
    hp = config.hparams()
    key = jax.random.key(0)
    init = compile_fast(trainer.init, key, hp)(key, hp)
    before = jax.tree.map(np.asarray, init.params)
    # The updates continue from ``init`` (not ``trainer.train``, which would compile the reset again).
    state, metrics = compile_fast(trainer.update_chunk, init, hp, config.num_updates, static_argnums=2)(init, hp)
    assert metrics["loss"].shape == (config.num_updates,)
    for name in ("loss", "policy_loss", "value_loss", "grad_norm"):
        assert np.all(np.isfinite(metrics[name])), (name, metrics[name])
    assert not np.any(metrics["nonfinite"])
    changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params))]
    assert all(changed), "every parameter array should move in two updates"
    assert float(state.obs_stats.count) == config.num_updates * config.batch_size
    assert np.all(np.isfinite(np.asarray(state.env_state.obs)))


@pytest.mark.slow
@pytest.mark.extended  # 97 s, mostly compiling MJX; the default suite trains each physics suite in smoke runs
def test_bpo_learns_mjx_cartpole_balance():
    """playground/CartpoleBalance (MJX physics, 1000-step episodes, reward in [0, 1] per step):
    a random policy scores about 250-350 per episode; one that keeps the pole upright and the
    cart centred scores close to 1000.  BPO with running observation normalisation, 2 seeds as
    one vmapped program, 4e5 steps: every seed's first episodes are below 500 and its episodes
    in the last 10% of updates average above 800 (measured 2026-12-03, after the env's random
    draws changed: 988 and 986; per tenth of the run 355, 236, 288, 433, 842, 963, ... for the
    first seed; at 3e5 steps, before that change, one seed ended at 808, too close to the bar).
    Episodes restart from a cached pool of 256 initial states (8 per env): a fresh reset would
    compile MJX's forward pass into the step program a second time (the fresh-reset path is
    tested in test_brax_playground.py)."""
    config = Config(env="playground/CartpoleBalance", algo="bpo", num_envs=32, num_steps=32, num_epochs=4,
                    num_minibatches=4, total_steps=400_000, hidden_sizes=(64, 64), lr=1e-3, normalize_obs=True,
                    reset_pool=256)
    result = runner.run(config, num_seeds=2, compiler_options=FULL)
    returns, episodes = result.metrics["episode_return_mean"], result.metrics["episodes"]
    first = np.array([r[e > 0][0] for r, e in zip(returns, episodes)])
    final = tail_returns(result.metrics)
    assert np.all(first < 500), f"first-episode returns {first}: the task should start hard"
    assert np.all(final > 800), f"BPO CartpoleBalance returns per seed over the last 10%: {final} (first {first})"
