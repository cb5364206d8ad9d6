"""bpo_jax.envs.contract: a plug-in environment's shapes checked in one line before a run."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import Config, ConfigError, envs
from bpo_jax.envs import Box, Discrete, EnvContractError, FunctionalEnv, ObsSpec, contract, registry
from bpo_jax.networks import action_to_env
from bpo_jax.session import RunSession
from bpo_jax.train import make_train


class Walk(FunctionalEnv):
    """Walk right to position 5 in at most 10 steps; ``bug`` plants one contract violation."""

    def __init__(self, num_envs, bug=None, obs_dim=2, space=Discrete(2)):
        super().__init__("toy/Walk", num_envs, ObsSpec((obs_dim,)), space)
        self.bug = bug

    def _reset_one(self, key):
        obs = jnp.zeros(3 if self.bug == "reset_obs" else 2, jnp.float16 if self.bug == "half_obs" else jnp.float32)
        return ((jnp.int32(0), jnp.int32(0)), obs, 0) if self.bug == "reset_three" else ((jnp.int32(0), jnp.int32(0)), obs)

    def _step_one(self, key, inner, action):
        pos, t = inner
        pos, t = jnp.clip(pos + jnp.int32(jnp.mean(action) > 0), 0, 5), t + 1
        obs = jnp.stack([pos / 5, t / 10]).astype(jnp.float32)
        reward, terminated = (pos == 5).astype(jnp.float32), pos == 5
        if self.bug == "reward_1":
            reward = reward[None]
        if self.bug == "numpy":  # a NumPy call on a traced value: it fails inside NumPy
            obs = jnp.asarray(np.clip(obs, 0, 1))
        if self.bug == "branch":  # Python control flow on a traced value
            if pos == 5:
                reward = reward + 1
        if self.bug == "step_obs_dtype":
            obs = obs.astype(jnp.int32)
        if self.bug == "inner_dtype":
            t = t.astype(jnp.float32)
        if self.bug == "terminated_2":
            terminated = jnp.stack([terminated, terminated])
        if self.bug == "raises":  # the user's own error while tracing was a full traceback
            raise RuntimeError("boom in step")
        return (pos, t), obs, reward, terminated, t >= 10


@pytest.mark.parametrize("bug,message", [
    ("reward_1", "toy/Walk: _step_one returned reward of shape (1,); one copy's reward is a scalar"),
    ("terminated_2", "toy/Walk: _step_one returned terminated of shape (2,)"),
    ("reset_obs", "toy/Walk: _reset_one returned obs of shape (3,); obs_spec declares (2,)"),
    ("reset_three", "toy/Walk: _reset_one must return (inner, obs), got a tuple of 3"),
    ("step_obs_dtype", "toy/Walk: _step_one returned obs of dtype int32 but _reset_one float32"),
    ("inner_dtype", "toy/Walk: _step_one returned [1] as float32[] but _reset_one as int32[] (an auto-reset selects"),
    # These trained: a uint8 spec of rank 3 picks the Nature CNN, which divides the frames by 255.
    ("half_obs", "toy/Walk: _reset_one returned obs of dtype float16; obs_spec declares float32"),
    # JAX's TracerBoolConversionError, three lines deep in its own words.
    ("branch", f"toy/Walk: _step_one cannot be traced by JAX at {__file__}:"),
    ("numpy", f"toy/Walk: _step_one cannot be traced by JAX at {__file__}:"),
    ("raises", f"toy/Walk: _step_one raised at {__file__}:"),
])
def test_a_broken_functional_env_is_named_in_one_line(bug, message):
    """Each of these failed inside the training loop's scan or cond, naming library internals."""
    with pytest.raises(EnvContractError) as e:
        contract.check(Walk(4, bug))
    assert str(e.value).startswith(message)
    contract.check(Walk(4))  # the same env without the bug keeps the contract


def test_obs_dtypes_compare_as_jax_arrays_have_them():
    """Python's float (float64 to NumPy) is float32 in JAX without x64: such a spec passed before
    observations' dtypes were checked, and passes; a spec whose dtype is none is one line."""
    env = Walk(2)
    env.obs_spec = ObsSpec((2,), float)
    contract.check(env)
    for dtype in ("foo", None):
        env.obs_spec = ObsSpec((2,), dtype)
        with pytest.raises(EnvContractError, match="^toy/Walk: obs_spec's dtype must be a dtype such as jnp.float32"):
            contract.check(env)


def test_a_functional_env_without_its_methods_is_named_in_one_line():
    """A missing _step_one was a NotImplementedError with no message."""
    no_step = type("NoStep", (FunctionalEnv,), {"_reset_one": Walk._reset_one, "bug": None})
    with pytest.raises(EnvContractError) as e:
        contract.check(no_step("toy/Walk", 2, ObsSpec((2,)), Discrete(2)))
    assert str(e.value) == ("toy/Walk: NoStep does not define _step_one(key, inner, action) -> (inner, obs, reward, "
                            "terminated, truncated)")


@pytest.mark.parametrize("env,message", [
    (Walk(4, obs_dim=3), "_reset_one returned obs of shape (2,); obs_spec declares (3,)"),
    (Walk(2, space=Box([1.0], [-1.0], (1,))), "Box needs low <= high everywhere, got low [1.0] and high [-1.0]"),
    (Walk(2, space=Box(-1.0, 1.0, 1)), "Box shape must be a tuple of sizes such as (3,), got 1"),
    (Walk(2, space=Box([-1.0, 0.0, 1.0], 1.0, (2,))), "Box bounds must be numbers or arrays broadcastable to (2,)"),
    (Walk(2, space=Discrete(0)), "Discrete needs a whole number n >= 1 of actions, got 0"),
    (Walk(2, space=(2,)), "action_space must be a Discrete or a Box, got (2,)"),
])
def test_specs_that_do_not_fit_are_named(env, message):
    with pytest.raises(EnvContractError, match="^toy/Walk: ") as e:
        contract.check(env)
    assert message in str(e.value)


class Protocol:
    """An env written against the Env protocol alone (Walk underneath), with a planted bug."""

    def __init__(self, num_envs, bug=None):
        self.inner, self.bug = Walk(num_envs), bug
        self.name, self.num_envs = "toy/Protocol", num_envs
        self.obs_spec, self.action_space = self.inner.obs_spec, self.inner.action_space

    def reset(self, key):
        state = self.inner.reset(key)
        if self.bug == "int_obs":
            state = state.replace(obs=state.obs.astype(jnp.int32), final_obs=state.final_obs.astype(jnp.int32))
        return state.obs if self.bug == "bare_obs" else state

    def step(self, state, action):
        state = self.inner.step(state, action)
        if self.bug == "float_length":
            state = state.replace(episode_length=state.episode_length.astype(jnp.float32))
        if self.bug == "reward_2d":
            state = state.replace(reward=state.reward[:, None])
        return state


class NoStep(Protocol):
    step = None


@pytest.mark.parametrize("bug,message", [
    ("bare_obs", "toy/Protocol: reset must return an EnvState, got ShapeDtypeStruct"),
    ("int_obs", "toy/Protocol: reset returned obs of dtype int32; obs_spec declares float32"),
    ("reward_2d", "toy/Protocol: step returned reward of shape (4, 1); expected (num_envs,) = (4,)"),
    ("float_length", "toy/Protocol: step returned .episode_length as float32[4] but reset as int32[4] (the training "
                     "loop carries the state from step to step)"),
])
def test_a_broken_protocol_env_is_named_in_one_line(bug, message):
    with pytest.raises(EnvContractError) as e:
        contract.check(Protocol(4, bug))
    assert str(e.value) == message
    contract.check(Protocol(4))
    with pytest.raises(EnvContractError) as e:  # an AttributeError from inside the trainer
        contract.check(NoStep(4))
    assert str(e.value) == "toy/Protocol: NoStep has no step method (bpo_jax.envs.Env)"


@pytest.fixture
def toy_suite():
    """A plug-in suite ``toy`` (its env options pick the bug), removed after the test."""
    registry.register_suite("toy", lambda: ["Walk"], lambda name, num_envs, bug=None: Walk(num_envs, bug), "toy")
    yield
    del registry._SUITES["toy"]


def test_a_run_on_a_broken_plugin_env_fails_before_anything_is_written(toy_suite, tmp_path):
    config = Config(env="toy/Walk", env_options=("bug='reward_1'",), num_envs=4, num_steps=16, total_steps=512,
                    hidden_sizes=(8,))
    with pytest.raises(EnvContractError, match="reward of shape"):
        RunSession.start(config, out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(EnvContractError, match="reward of shape"):  # the library's own entry point checks it too
        make_train(config)
    with pytest.raises(EnvContractError, match="obs of shape"):  # and an env handed to it
        make_train(config.replace(env_options=()), Walk(4, "reset_obs"))


def test_a_plugin_suite_s_constructor_and_time_limit_are_named_before_anything_is_written(tmp_path):
    """A constructor that raised (a traceback, or a ValueError naming no suite), returned None
    or built another num_envs, and a time_limit that is no integer, failed after compiling began
    and left a run folder, or said "NoneType: obs_spec must be ..." instead."""
    def make(name, num_envs, bug=None):
        if bug == "raises":
            raise RuntimeError("ctor broke")
        if bug == "refuses":
            raise ValueError("speed must be > 0")
        if bug == "none":
            return None
        env = Walk(1 if bug == "one" else num_envs)
        env.time_limit = "20" if bug == "time_limit" else None
        return env

    registry.register_suite("toyc", lambda: ["Walk"], make, "toy constructors")
    try:
        for bug, error, message in [
            ("raises", EnvContractError, f"the toyc/ suite's constructor failed for toyc/Walk at {__file__}:"),
            ("refuses", ValueError, "toyc/Walk: speed must be > 0"),
            ("none", EnvContractError, "the toyc/ suite's constructor returned NoneType for toyc/Walk, not an env"),
            ("one", EnvContractError, "the toyc/ suite's constructor built toyc/Walk with num_envs 1; it was asked for 4"),
            ("time_limit", EnvContractError, "toy/Walk: time_limit must be None or an integer >= 1, got '20'"),
        ]:
            config = Config(env="toyc/Walk", env_options=(f"bug={bug!r}",), num_envs=4, num_steps=16, total_steps=512,
                            hidden_sizes=(8,))
            with pytest.raises(error) as e:
                RunSession.start(config, out=str(tmp_path / "run"))
            assert str(e.value).startswith(message) and "\n" not in str(e.value), (bug, str(e.value))
            assert not (tmp_path / "run").exists()
    finally:
        del registry._SUITES["toyc"]


def test_only_plugin_envs_are_traced_ahead():
    """The built-in suites are tested instead: tracing an MJX step ahead of a run costs seconds."""
    assert not contract.is_users(envs.make("gymnax/CartPole-v1"))
    assert contract.is_users(Walk(1)) and contract.is_users(Protocol(1))


def test_bounds_given_as_lists_act_like_arrays():
    """Box([-1, -2], [1, 2], (2,)) failed inside jnp.clip (lists are no arrays to jax)."""
    space = Box([-1.0, -2.0], [1.0, 2.0], (2,))
    np.testing.assert_array_equal(action_to_env(space, jnp.array([5.0, -5.0]), "clip"), [1.0, -2.0])
    np.testing.assert_allclose(action_to_env(space, jnp.zeros(2), "tanh"), [0.0, 0.0], atol=1e-7)


def test_tanh_needs_finite_bounds():
    """Unbounded actions squashed by tanh gave -inf + inf = NaN at the first update."""
    space = Box(-jnp.inf * jnp.ones(1), jnp.inf * jnp.ones(1), (1,))
    with pytest.raises(ConfigError, match="`action_squash` 'tanh' maps onto the action bounds, and .* are not all "
                                          "finite; use `action_squash` clip"):
        Config(action_squash="tanh").validate_env(space)
    Config(action_squash="clip").validate_env(space)
    Config(action_squash="tanh").validate_env(Box(-1.0, 1.0, (1,)))
    assert not np.isnan(action_to_env(space, jnp.ones(1), "clip")).any()


class RawKeys(Protocol):
    """Per-env keys kept as raw uint32 data [B, 2] (gymnax's style): the trainer reads no env key."""

    def reset(self, key):
        state = super().reset(key)
        return state.replace(key=jax.random.key_data(state.key))

    def step(self, state, action):
        return self.inner.step(state.replace(key=jax.random.wrap_key_data(state.key)), action).replace(
            key=state.key)


def test_raw_keys_and_numpy_sizes_keep_the_contract():
    """Both trained before the contract existed: it must not refuse them."""
    contract.check(RawKeys(4))
    contract.check(Walk(np.int64(2), space=Discrete(np.int64(2))))
    with pytest.raises(EnvContractError, match="Discrete needs a whole number n >= 1 of actions, got True"):
        contract.check(Walk(2, space=Discrete(True)))


def test_a_session_traces_a_plugin_env_once(toy_suite, tmp_path, monkeypatch):
    """The session checks the env at the run's size before it writes anything; the trainer it
    builds makes the same env again and is not traced again (a physics env's trace is seconds).
    Another option is another env, checked again."""
    traced = []
    monkeypatch.setattr(contract, "check", lambda env, check=contract.check: (traced.append(env.num_envs), check(env)))
    config = Config(env="toy/Walk", num_envs=4, num_steps=16, total_steps=512, hidden_sizes=(8,))
    RunSession.start(config, out=str(tmp_path / "run")).run()
    assert traced == [4]
    with pytest.raises(EnvContractError, match="reward of shape"):
        RunSession.start(config.replace(env_options=("bug='reward_1'",)), out=str(tmp_path / "other"))
    assert traced == [4, 4]
    make_train(config, Walk(4))  # an env handed in is the caller's: checked each time
    assert traced == [4, 4, 4]


class TruncatedPair(Walk):
    """Walk whose one copy reports ``truncated`` as two flags instead of one."""

    def _step_one(self, key, inner, action):
        inner, obs, reward, terminated, truncated = super()._step_one(key, inner, action)
        return inner, obs, reward, terminated, jnp.stack([truncated, truncated])


def test_a_copy_s_truncated_that_is_no_scalar_is_named_at_step_one():
    """One copy's truncated flag must be a scalar like its reward and terminated: the message names
    ``_step_one`` (the user's method), not a broadcasting failure inside the batched step."""
    with pytest.raises(EnvContractError) as e:
        contract.check(TruncatedPair(4))
    assert str(e.value).startswith("toy/Walk: _step_one returned truncated of shape (2,); one copy's truncated "
                                   "is a scalar")


class Batched:
    """A protocol env (Walk underneath) whose states both from reset and step carry one planted
    fault, so that reset and step agree with each other and only the field checks can see it."""

    def __init__(self, num_envs, bug):
        self.inner, self.bug = Walk(num_envs), bug
        self.name, self.num_envs = "toy/Batched", num_envs
        self.obs_spec, self.action_space = self.inner.obs_spec, self.inner.action_space

    def _plant(self, state):
        if self.bug == "int_truncated":
            return state.replace(truncated=state.truncated.astype(jnp.int32))
        if self.bug == "one_key":
            return state.replace(key=state.key[:1])
        return state

    def reset(self, key):
        return self._plant(self.inner.reset(key))

    def step(self, state, action):
        return self._plant(self.inner.step(state.replace(key=jnp.broadcast_to(state.key, (self.num_envs,))), action))


@pytest.mark.parametrize("bug,message", [
    ("int_truncated", "toy/Batched: reset returned truncated of dtype int32; expected bool"),
    ("one_key", "toy/Batched: reset returned key of shape (1,); expected one per env (4, ...)"),
])
def test_field_faults_that_reset_and_step_share_are_named(bug, message):
    """truncated must be bool (the trainer masks with it) and key one per env, in reset's state
    already; a fault that step repeats is not caught by comparing step with reset."""
    with pytest.raises(EnvContractError) as e:
        contract.check(Batched(4, bug))
    assert str(e.value) == message
    contract.check(Batched(4, None))


def test_time_limit_zero_is_refused():
    """A declared time_limit is a number of steps >= 1 (the bootstrap divides by it)."""
    env = Walk(2)
    env.time_limit = 0
    with pytest.raises(EnvContractError, match=r"^toy/Walk: time_limit must be None or an integer >= 1, got 0$"):
        contract.check(env)
    env.time_limit = 1
    contract.check(env)


def test_a_box_with_a_fixed_dimension_keeps_the_contract():
    """low <= high everywhere, equality included: a dimension with low == high is a valid Box."""
    contract.check(Walk(2, space=Box([-1.0, 0.0], [1.0, 0.0], (2,))))
