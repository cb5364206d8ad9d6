"""The environment protocol: registry errors, auto-reset, final_obs, termination vs truncation."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import envs
from tests.compiling import FULL


def test_unknown_suite_lists_valid_suites():
    with pytest.raises(envs.UnknownEnvError, match="gymnax"):
        envs.make("nosuchsuite/CartPole-v1")
    with pytest.raises(envs.UnknownEnvError, match="suite/name"):
        envs.make("CartPole-v1")


def test_unknown_env_lists_valid_names():
    with pytest.raises(envs.UnknownEnvError, match="CartPole-v1"):
        envs.make("gymnax/CartPole-v9")


def test_list_envs_covers_gymnax_registry():
    import gymnax

    ids = envs.list_envs("gymnax")
    assert ids == [f"gymnax/{n}" for n in gymnax.registered_envs]


def test_specs():
    cartpole = envs.make("gymnax/CartPole-v1", num_envs=3)
    assert cartpole.action_space == envs.Discrete(2)
    assert cartpole.obs_spec.shape == (4,)
    pendulum = envs.make("gymnax/Pendulum-v1", num_envs=3)
    assert isinstance(pendulum.action_space, envs.Box)
    np.testing.assert_allclose(pendulum.action_space.low, [-2.0])
    np.testing.assert_allclose(pendulum.action_space.high, [2.0])
    minatar = envs.make("gymnax/Breakout-MinAtar", num_envs=2)
    state = minatar.reset(jax.random.key(0))
    assert state.obs.shape == (2, 10, 10, 4)


def test_bad_env_parameter():
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        envs.make("gymnax/CartPole-v1", num_envs=1, no_such_param=3)


def _rollout(env, actions_fn, steps, key=0, compiler_options=None):
    state = env.reset(jax.random.key(key))

    def body(s, i):
        s = env.step(s, actions_fn(i))
        return s, s

    rollout = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(steps)))
    return jax.device_get(rollout.lower(state).compile(compiler_options)(state)[1])


def test_termination_resets_and_keeps_final_obs():
    env = envs.make("gymnax/CartPole-v1", num_envs=4)
    # Always pushing left topples the pole in a few dozen steps: a real termination.
    traj = _rollout(env, lambda i: jnp.zeros(4, jnp.int32), 200)
    assert traj.terminated.any() and not traj.truncated.any()
    t, b = np.argwhere(traj.terminated)[0]
    # The terminal observation is outside the pole-angle or cart-position limits ...
    final = traj.final_obs[t, b]
    assert abs(final[2]) > 0.2094 or abs(final[0]) > 2.4
    # ... while the observation to act on is a fresh reset inside [-0.05, 0.05].
    assert np.all(np.abs(traj.obs[t, b]) <= 0.05)
    # CartPole pays 1 per step, so the finished episode's return equals its length.
    assert traj.done_length[t, b] == t + 1
    assert traj.done_return[t, b] == pytest.approx(t + 1)
    assert traj.episode_length[t, b] == 0 and traj.episode_return[t, b] == 0
    # On steps without a reset, final_obs is the observation acted on next.
    not_done = ~(traj.terminated | traj.truncated)
    np.testing.assert_array_equal(traj.final_obs[not_done], traj.obs[not_done])


class _EndsOnItsTimeLimit(envs.FunctionalEnv):
    """Terminates on the step its time limit also cuts (step 3 of every episode)."""

    def __init__(self, num_envs):
        super().__init__("test/EndsOnItsTimeLimit", num_envs, envs.ObsSpec((1,)), envs.Discrete(2))

    def _reset_one(self, key):
        return jnp.zeros((), jnp.int32), jnp.zeros(1)

    def _step_one(self, key, t, action):
        t = t + 1
        return t, jnp.ones(1) * t, 1.0, t >= 3, t >= 3


def test_a_termination_on_the_time_limits_step_is_not_also_a_truncation():
    """The two flags never overlap (the contract): a terminal state reached as the clock runs out
    is terminal, and GAE must not bootstrap from it."""
    env = _EndsOnItsTimeLimit(2)
    state = env.reset(jax.random.key(0))
    flags = []
    for _ in range(6):
        state = env.step(state, jnp.zeros(2, jnp.int32))
        flags.append((np.asarray(state.terminated), np.asarray(state.truncated)))
    terminated, truncated = map(np.stack, zip(*flags))
    np.testing.assert_array_equal(terminated[:, 0], [False, False, True, False, False, True])
    assert not truncated.any()


def test_time_limit_is_truncation_not_termination():
    env = envs.make("gymnax/Pendulum-v1", num_envs=2, max_steps_in_episode=10)
    traj = _rollout(env, lambda i: jnp.zeros((2, 1)), 25)
    truncated_steps = np.argwhere(traj.truncated[:, 0]).ravel()
    np.testing.assert_array_equal(truncated_steps, [9, 19])
    assert not traj.terminated.any()
    assert np.all(traj.done_length[9] == 10)
    # The return of the truncated episode is the sum of its rewards.
    np.testing.assert_allclose(traj.done_return[9], traj.reward[:10].sum(0), rtol=1e-5)
    # The final observation is the true last state, not the reset one.
    assert not np.allclose(traj.final_obs[9], traj.obs[9])
    np.testing.assert_allclose(traj.final_obs[8], traj.obs[8])


def test_reset_is_deterministic_per_key_and_differs_across_envs():
    env = envs.make("gymnax/CartPole-v1", num_envs=8)
    a, b = env.reset(jax.random.key(3)), env.reset(jax.random.key(3))
    np.testing.assert_array_equal(a.obs, b.obs)
    assert len({tuple(np.asarray(o).round(6)) for o in a.obs}) == 8


def test_cached_reset_restarts_only_from_the_pool():
    """reset_pool=P: finished episodes restart from one of P initial states drawn at reset."""
    env = envs.make("gymnax/Pendulum-v1", num_envs=4, reset_pool=3, max_steps_in_episode=2)
    state = env.reset(jax.random.key(0))
    pool_obs = np.asarray(state.reset_pool[1])
    assert pool_obs.shape == (3, 3)
    step = jax.jit(env.step)
    restarts = []
    for _ in range(12):
        state = step(state, jnp.zeros((4, 1)))
        restarts += [np.asarray(o) for o, d in zip(state.obs, state.done) if d]
    assert len(restarts) == 24
    for obs in restarts:
        assert np.min(np.abs(pool_obs - obs).max(axis=1)) < 1e-6
    assert len({tuple(o.round(5)) for o in restarts}) > 1  # drawn at random, not one fixed state
    used = {int(np.argmin(np.abs(pool_obs - obs).max(axis=1))) for obs in restarts}
    assert used == {0, 1, 2}  # every pool entry: uniform over the whole pool (24 draws of 3)
    fresh = envs.make("gymnax/Pendulum-v1", num_envs=4, max_steps_in_episode=2)
    assert fresh.reset(jax.random.key(0)).reset_pool is None


@pytest.mark.parametrize("name,kwargs", [
    ("gymnax/CartPole-v1", {}),                                          # deterministic step
    ("gymnax/Pendulum-v1", {"reset_pool": 3, "max_steps_in_episode": 7}),  # cached resets
    ("gymnax/Acrobot-v1", {"max_steps_in_episode": 50}),                 # stochastic step
])
def test_skipping_idle_resets_changes_nothing(name, kwargs):
    """On the CPU a step where no episode ended skips the reset (``lax.cond``); the same rollout
    with the reset computed on every step and selected per env (other backends, vmapped seeds)
    is bit-identical, keys included, at XLA's default optimisation (``FULL``).  At its lowest
    (the test session's default, ``--fast-compile``) LLVM rounds the physics inside the cond's
    branch and outside it differently, by ~1e-8."""
    runs = []
    for skip in (True, False):
        env = envs.make(name, num_envs=4, **kwargs)
        env.skip_idle_resets = skip
        n = getattr(env.action_space, "n", None)
        act = ((lambda i: (jnp.arange(4) + i) % n) if n else (lambda i: jnp.sin(jnp.arange(4.0) + i)[:, None]))
        traj = _rollout(env, act, 120, compiler_options=FULL)
        runs.append(jax.tree.map(lambda x: np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x), traj))
    assert np.asarray(runs[0].done).any() and not np.asarray(runs[0].done).all()
    jax.tree.map(np.testing.assert_array_equal, runs[0], runs[1])


def test_a_deterministic_step_draws_no_key_until_an_episode_ends():
    """A task whose step ignores its key (found from its trace) leaves each env's key as it is
    until its episode ends; one whose step reads it (Acrobot: torque noise) gets a fresh key every step."""
    cartpole, acrobot = envs.make("gymnax/CartPole-v1", num_envs=4), envs.make("gymnax/Acrobot-v1", num_envs=4)
    traj = _rollout(cartpole, lambda i: jnp.zeros(4, jnp.int32), 60)
    assert cartpole.step_uses_key is False
    keys = np.asarray(jax.random.key_data(traj.key))  # [T, B, 2]
    changed = np.any(keys[1:] != keys[:-1], axis=-1)
    np.testing.assert_array_equal(changed, traj.done[1:])
    assert traj.done.any()
    traj = _rollout(acrobot, lambda i: jnp.zeros(4, jnp.int32), 5)
    assert acrobot.step_uses_key is True
    keys = np.asarray(jax.random.key_data(traj.key))
    assert np.all(np.any(keys[1:] != keys[:-1], axis=-1))


def test_no_key_that_drew_an_initial_state_is_carried_on():
    """A key used twice correlates its draws (JAX: a draw and a split of one key hash the same
    counters).  So the key each env carries on is never the one that drew its current episode's
    first state, after ``reset`` or after an auto-reset: that key would draw the same state again."""
    env = envs.make("gymnax/Pendulum-v1", num_envs=4, max_steps_in_episode=3)
    state = env.reset(jax.random.key(0))
    redraw = jax.jit(jax.vmap(lambda k: env._reset_one(k)[1]))
    assert not np.any(np.all(np.isclose(redraw(state.key), state.obs), axis=1))
    step = jax.jit(env.step)
    for _ in range(3):
        state = step(state, jnp.zeros((4, 1)))
    assert np.asarray(state.done).all()  # every env restarted on this step
    assert not np.any(np.all(np.isclose(redraw(state.key), state.obs), axis=1))


def test_a_step_that_keeps_its_key_in_its_state_is_given_a_fresh_one():
    """A task may store its step's key in its state to draw from later; it then reads the key
    (as far as the key-saving rule goes) and gets a fresh key every step, not the env's own."""
    class KeepsKey(envs.FunctionalEnv):
        def _reset_one(self, key):
            return key, jnp.zeros(1)

        def _step_one(self, key, inner, action):
            return key, jnp.zeros(1), 0.0, False, False

    env = KeepsKey("test/keeps-key", 2, envs.ObsSpec((1,)), envs.Discrete(2))
    state = env.step(env.reset(jax.random.key(0)), jnp.zeros(2, jnp.int32))
    assert env.step_uses_key is True
    carried, stored = (np.asarray(jax.random.key_data(k)) for k in (state.key, state.inner))
    assert not np.any(np.all(carried == stored, axis=-1))


def test_reset_pool_must_be_non_negative():
    with pytest.raises(ValueError, match="reset_pool must be >= 0"):
        envs.make("gymnax/Pendulum-v1", num_envs=1, reset_pool=-2)


def test_with_reset_pool_leaves_the_original_env_unchanged():
    env = envs.make("gymnax/Pendulum-v1", num_envs=2)
    before = dict(vars(env))
    pooled = env.with_reset_pool(3)
    assert pooled is not env and pooled.reset_pool_size == 3
    assert env.reset_pool_size == 0 and vars(env) == before
    assert env.reset(jax.random.key(0)).reset_pool is None
    assert pooled.reset(jax.random.key(0)).reset_pool[1].shape == (3, 3)


# --------------------------------------------------------------------------- listing


def test_describe_suites_groups_ids_with_a_description():
    """One entry per suite, sorted: a one-line description and its ids, the ones make() accepts."""
    infos = envs.describe_suites()
    assert [i.name for i in infos] == envs.suites()
    for info in infos:
        assert info.description and "\n" not in info.description
        if info.unavailable_reason is None:
            assert info.ids and all(i.startswith(f"{info.name}/") for i in info.ids)
            assert list(info.ids) == envs.list_envs(info.name)  # the list make() validates against
        else:
            assert not info.ids and "pip install" in info.unavailable_reason
    by_suite = {i.name: i for i in infos}
    assert "gymnax/CartPole-v1" in by_suite["gymnax"].ids
    assert envs.list_envs() == [i for info in infos for i in info.ids]
    for env_id in ("gymnax/CartPole-v1", by_suite["gymnax"].ids[-1]):
        assert envs.make(env_id).name == env_id


def test_unavailable_suite_is_described_not_listed(monkeypatch):
    from bpo_jax.envs import registry

    def missing():
        raise envs.MissingDependencyError("the nosim/ suite needs 'nosim'; install it with: pip install nosim")

    monkeypatch.setitem(registry._SUITES, "nosim", registry._Suite(missing, None, "a suite whose package is absent"))
    info = {i.name: i for i in envs.describe_suites()}["nosim"]
    assert info.ids == () and "pip install" in info.unavailable_reason
    assert not any(i.startswith("nosim/") for i in envs.list_envs())
    with pytest.raises(envs.MissingDependencyError):
        envs.list_envs("nosim")


def test_registry_names_read_from_source_match_the_imported_registries():
    """The listing reads the simulators' registries from their source files (fast); they must be
    exactly the imported registries, in the same order."""
    import importlib

    from bpo_jax.envs import registry

    gymnax = importlib.import_module("gymnax")
    assert registry.source_names("gymnax.registration", "_BUILTIN_ENV_IDS") == list(gymnax.registered_envs)
    pytest.importorskip("brax")
    brax_envs = importlib.import_module("brax.envs")
    assert registry.source_names("brax.envs", "_envs") == list(brax_envs._envs)
    pytest.importorskip("mujoco_playground")
    for group in ("dm_control_suite", "locomotion", "manipulation"):
        module = importlib.import_module(f"mujoco_playground._src.{group}")
        assert registry.source_names(module.__name__, "_envs") == list(module.ALL_ENVS)
    assert registry.source_names("gymnax.registration", "no_such_variable") is None
    assert registry.source_names("no_such_package.module", "_envs") is None


def test_listing_imports_no_simulator():
    """describe_suites() (``bpo-jax envs``) must not import the simulators: each takes seconds."""
    import subprocess
    import sys

    heavy = ("gymnax", "brax", "mujoco.mjx", "mujoco_playground")
    code = ("import sys; from bpo_jax import envs; infos = envs.describe_suites(); "
            f"print(sum(len(i.ids) for i in infos), [m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert int(out[0]) > 50 and out[1].strip() == "[]"


def test_cli_envs_prints_each_suite_under_a_header(capsys):
    from bpo_jax import cli

    assert cli.main(["envs"]) == 0
    out = capsys.readouterr().out
    for info in envs.describe_suites():
        count = "unavailable" if info.unavailable_reason else f"{len(info.ids)} envs"
        assert f"{info.name}/  ({count}) {info.description}\n" in out
    assert " CartPole-v1 " in out
    assert cli.main(["envs", "--suite", "gymnax"]) == 0
    assert capsys.readouterr().out.splitlines() == envs.list_envs("gymnax")


# --------------------------------------------------------------------------- input checks
# Bad input is refused when the env is made, in one line naming the option: never after
# compiling, never from inside JAX, gymnax or MuJoCo.


def _one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("options,fragments", [
    (dict(max_steps_in_episode=-5), ["max_steps_in_episode must be >= 1", "got -5"]),
    (dict(max_steps_in_episode=0), ["max_steps_in_episode must be >= 1", "got 0"]),
    (dict(max_steps_in_episode=1.5), ["option max_steps_in_episode takes an integer (default 500)", "got 1.5"]),
    (dict(max_steps_in_episode="abc"), ["option max_steps_in_episode takes an integer", "got 'abc'"]),
    (dict(max_steps_in_episode=True), ["option max_steps_in_episode takes an integer", "got True"]),
    (dict(gravity=float("inf")), ["option gravity takes a finite number (default 9.8)", "got inf"]),
    (dict(gravity=float("nan")), ["option gravity takes a number, not NaN", "got nan"]),
    (dict(gravity="9.8"), ["option gravity takes a number", "got '9.8'"]),
    (dict(gravity="inf"), ["option gravity takes a finite number", "got 'inf'"]),  # --env-options gravity=inf
    (dict(gravity="nan"), ["option gravity takes a finite number", "got 'nan'"]),
    (dict(gravity=True), ["option gravity takes a number", "got True"]),
])
def test_gymnax_option_values_are_checked_against_the_params(options, fragments):
    with pytest.raises(ValueError) as err:
        envs.make("gymnax/CartPole-v1", 2, **options)
    _one_line_error(err, "gymnax/CartPole-v1", *fragments)


def test_gymnax_option_values_of_every_kind():
    """One rule for every gymnax task, from the type of each EnvParams default: ints for floats
    are converted, bool fields take bools, array fields array-likes of their shape."""
    env = envs.make("gymnax/CartPole-v1", 1, gravity=10, max_steps_in_episode=np.int64(7))
    assert env._params.gravity == 10.0 and isinstance(env._params.gravity, float)
    assert env._params.max_steps_in_episode == 7 and env.time_limit == 7
    with pytest.raises(ValueError) as err:
        envs.make("gymnax/Asterix-MinAtar", 1, ramping=1)
    _one_line_error(err, "option ramping takes True or False (default True)", "got 1")
    assert envs.make("gymnax/Asterix-MinAtar", 1, ramping=False)._params.ramping is False
    env = envs.make("gymnax/Acrobot-v1", 1, available_torque=(-2, 0, 2))
    np.testing.assert_array_equal(env._params.available_torque, [-2.0, 0.0, 2.0])
    assert env._params.available_torque.dtype == jnp.float32
    for bad in ((-1.0, 1.0), (-1.0, float("nan"), 1.0), "abc"):
        with pytest.raises(ValueError) as err:
            envs.make("gymnax/Acrobot-v1", 1, available_torque=bad)
        _one_line_error(err, "option available_torque takes an array of shape (3,) of numbers")


def test_cli_refuses_a_bad_gymnax_option_before_the_run_directory(tmp_path, capsys):
    from bpo_jax import cli

    out = tmp_path / "o"
    for option in ("max_steps_in_episode=-5", "gravity=inf", "gravity=nan", "max_steps_in_episode=1.5"):
        assert cli.main(["train", "--seeds", "1", "--total-steps", "2048", "--out", str(out),
                         "--env-options", option]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("bpo-jax: error:"), err
        assert option.partition("=")[0] in err
        assert not out.exists()


@pytest.mark.parametrize("args,kwargs,fragment", [
    (("gymnax/CartPole-v1", "4"), {}, "num_envs must be a positive integer, got '4'"),
    (("gymnax/CartPole-v1", True), {}, "num_envs must be a positive integer, got True"),
    (("gymnax/CartPole-v1", 2.0), {}, "num_envs must be a positive integer, got 2.0"),
    (("gymnax/CartPole-v1", 0), {}, "num_envs must be a positive integer, got 0"),
    ((None, 2), {}, "env must be a 'suite/name' string such as 'gymnax/CartPole-v1', got None"),
    ((5, 2), {}, "env must be a 'suite/name' string such as 'gymnax/CartPole-v1', got 5"),
    (("gymnax/CartPole-v1", 2), dict(reset_pool="3"), "reset_pool must be >= 0, an integer"),
    (("gymnax/CartPole-v1", 2), dict(reset_pool=True), "reset_pool must be >= 0, an integer"),
])
def test_make_refuses_bad_arguments_by_name(args, kwargs, fragment):
    with pytest.raises(ValueError) as err:
        envs.make(*args, **kwargs)
    _one_line_error(err, fragment)


def test_make_takes_numpy_integers():
    env = envs.make("gymnax/Pendulum-v1", np.int32(3), reset_pool=np.int64(2))
    assert env.num_envs == 3 and type(env.num_envs) is int and env.reset_pool_size == 2


def test_register_suite_refuses_to_replace_a_suite_unless_asked(monkeypatch):
    from bpo_jax.envs import registry

    monkeypatch.setattr(registry, "_SUITES", dict(registry._SUITES))
    fake = lambda name, num_envs, **kw: envs.make("gymnax/CartPole-v1", num_envs)
    with pytest.raises(ValueError) as err:
        envs.register_suite("gymnax", lambda: ["X"], fake, "a look-alike")
    _one_line_error(err, "'gymnax' is a built-in suite", "replace=True")
    assert envs.list_envs("gymnax")[0] != "gymnax/X"  # untouched
    envs.register_suite("mine", lambda: ["X"], fake, "a new suite")  # new names as before
    assert envs.list_envs("mine") == ["mine/X"]
    with pytest.raises(ValueError, match="'mine' is already registered; pass replace=True"):
        envs.register_suite("mine", lambda: ["Y"], fake, "again")
    envs.register_suite("mine", lambda: ["Y"], fake, "again", replace=True)
    envs.register_suite("gymnax", lambda: ["X"], fake, "a look-alike", replace=True)
    assert envs.list_envs("mine") == ["mine/Y"] and envs.list_envs("gymnax") == ["gymnax/X"]
    for bad in ("", "a/b", None, "sp ace", ".."):
        with pytest.raises(ValueError, match="suite must be a word of letters, digits"):
            envs.register_suite(bad, lambda: [], fake, "bad")
    # Accepted, these failed later: a list is not called, a constructor of None builds nothing.
    for names, constructor, description, fragment in ((["X"], fake, "d", "names must be a function"),
                                                      (lambda: ["X"], None, "d", "constructor must be a function"),
                                                      (lambda: ["X"], fake, None, "description must be a string")):
        with pytest.raises(TypeError, match=fragment):
            envs.register_suite("nc", names, constructor, description)
    assert "nc" not in envs.suites()


def test_a_plugin_suite_whose_lister_fails_is_described_not_a_traceback(monkeypatch, capsys):
    """One plug-in's broken lister made `bpo-jax envs` a traceback for every suite; a lister
    returning a str matched ids by substring."""
    from bpo_jax.envs import registry

    monkeypatch.setattr(registry, "_SUITES", dict(registry._SUITES))

    def unreachable():
        raise RuntimeError("cannot reach my simulator's registry")

    envs.register_suite("mysim", unreachable, lambda name, num_envs, **kw: None, "d")
    envs.register_suite("letters", lambda: "abc", lambda name, num_envs, **kw: None, "d")
    envs.register_suite("nothing", lambda: None, lambda name, num_envs, **kw: None, "d")
    envs.register_suite("generated", lambda: (n for n in ("A", "B")), lambda name, num_envs, **kw: None, "d")
    info = {i.name: i for i in envs.describe_suites()}
    assert info["mysim"].unavailable_reason == ("the mysim/ suite's names() failed: RuntimeError: cannot reach my "
                                                "simulator's registry")
    assert info["letters"].unavailable_reason == "the letters/ suite's names() must return a list of names " \
                                                 "(strings), got 'abc'"
    assert info["nothing"].unavailable_reason == "the nothing/ suite's names() must return a list of names " \
                                                 "(strings), got None"
    assert info["generated"].ids == ("generated/A", "generated/B")  # any iterable, a generator too
    assert info["gymnax"].ids  # the others listed as before
    with pytest.raises(envs.EnvContractError, match="must return a list of names"):
        envs.make("letters/ab")
    # Named on the command line, the suite's failure is one line (it was a traceback).
    from bpo_jax import cli

    assert cli.main(["envs", "--suite", "mysim"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "bpo-jax: error: the mysim/ suite's names() failed: RuntimeError: cannot reach my simulator's registry\n"


def test_check_option_rules():
    from bpo_jax.envs.options import check_option, positive_int

    check = lambda value, default: check_option("suite/Task", "x", value, default)
    assert check(3, 1.0) == 3.0 and type(check(3, 1.0)) is float
    assert check(np.float32(0.5), 1.0) == 0.5 and check(jnp.float32(2.0), 1.0) == 2.0
    assert check(np.int64(3), 1) == 3 and type(check(np.int64(3), 1)) is int
    assert check([0.5, float("inf")], (0.7, float("inf"))) == (0.5, float("inf"))  # ranges may be open
    assert check((1, 2, 3), [1.0, 2.0]) == [1.0, 2.0, 3.0]  # a list default: any length
    assert check("anything", None) == "anything"
    for value, default, takes in [
        (True, 1, "an integer"), (1.0, 1, "an integer"), (1, True, "True or False"),
        (False, 1.0, "a number"), (float("-inf"), 1.0, "a finite number"), ("1", 1.0, "a number"),
        ((1.0,), (0.0, 1.0), "a tuple of 2 numbers"),
        ((float("nan"), 1.0), (0.0, 1.0), "a tuple of 2 numbers, not NaN"),
        (["a"], [1.0], "a list of numbers"), (1, "jax", "text"),
    ]:
        with pytest.raises(ValueError) as err:
            check(value, default)
        _one_line_error(err, f"suite/Task: option x takes {takes} (default {default!r}), got {value!r}")
    assert positive_int("w", "episode_length", 1e3) == 1000
    for bad in (0, 1.5, True, "5", float("inf"), float("nan")):
        with pytest.raises(ValueError, match="w: episode_length must be a positive integer"):
            positive_int("w", "episode_length", bad)


@pytest.mark.parametrize("options,fragment", [
    (dict(ctrl_cost_weight=float("nan")), "option ctrl_cost_weight takes a number, not NaN"),
    (dict(max_episode_steps=1.5), "option max_episode_steps takes an integer (default 1000)"),
    (dict(healthy_z_range=(0.7,)), "option healthy_z_range takes a tuple of 2 numbers (default (0.7, inf))"),
    (dict(terminate_when_unhealthy=1), "option terminate_when_unhealthy takes True or False"),
    (dict(reset_noise_scale="abc"), "option reset_noise_scale takes a number"),
    (dict(healthy_z_range=(2, 1)), "option healthy_z_range takes (low, high) with low <= high"),  # never healthy
])
def test_mjx_option_values_are_checked(options, fragment):
    pytest.importorskip("mujoco")
    with pytest.raises(ValueError) as err:
        envs.make("mjx/Hopper-v4", 1, **options)
    _one_line_error(err, "mjx/Hopper-v4", fragment)


def test_mjx_main_body_must_name_a_body():
    pytest.importorskip("mujoco")
    for bad in (99, "nosuch", -1):
        with pytest.raises(ValueError) as err:
            envs.make("mjx/Ant-v5", 1, main_body=bad)
        _one_line_error(err, "option main_body takes a body index in [0, 13] or a body name (world, torso,")


@pytest.mark.parametrize("env_id,options,fragment", [
    ("brax/ant", dict(ctrl_cost_weight="abc"), "brax/ant: option ctrl_cost_weight takes a number (default 0.5)"),
    ("brax/ant", dict(healthy_z_range=(0.2,)), "brax/ant: option healthy_z_range takes a tuple of 2 numbers"),
    ("brax/fast", dict(obs_mode="bogus"), "brax/fast: option obs_mode takes one of 'ndarray',"),
    ("brax/fast", dict(episode_length="abc"), "brax/fast: episode_length must be a positive integer, got 'abc'"),
    ("brax/fast", dict(episode_length=float("inf")), "brax/fast: episode_length must be a positive integer"),
    ("brax/fast", dict(action_repeat=True), "brax/fast: action_repeat must be a positive integer, got True"),
    ("brax/fast", dict(obs_key=5), "brax/fast: obs_key must be the name of an observation entry"),
    # Forwarded to PipelineEnv by tasks that take **kwargs: unchecked, 'abc' failed once training had started.
    ("brax/inverted_pendulum", dict(n_frames="abc"), "brax/inverted_pendulum: n_frames must be a positive integer"),
    ("brax/inverted_pendulum", dict(n_frames=0), "brax/inverted_pendulum: n_frames must be a positive integer"),
    ("brax/inverted_pendulum", dict(debug="maybe"), "brax/inverted_pendulum: option debug takes True or False"),
])
def test_brax_option_values_are_checked(env_id, options, fragment):
    pytest.importorskip("brax")
    with pytest.raises(ValueError) as err:
        envs.make(env_id, 1, **options)
    _one_line_error(err, fragment)


@pytest.mark.parametrize("options,fragment", [
    (dict(ctrl_dt="abc"), "option ctrl_dt takes a number (default 0.01), got 'abc'"),  # was a TypeError
    (dict(ctrl_dt=float("nan")), "option ctrl_dt takes a number, not NaN"),
    (dict(vision=1), "option vision takes True or False"),
    (dict(episode_length="abc"), "episode_length must be a positive integer, got 'abc'"),
    (dict(episode_length=True), "episode_length must be a positive integer, got True"),
    (dict(action_repeat=1.5), "action_repeat must be a positive integer, got 1.5"),
    (dict(menagerie_path=5), "menagerie_path must be a directory path, got 5"),
    (dict(ctrl_dt=0), "option ctrl_dt takes a time step > 0 (default 0.01), got 0"),  # trained, no episode ended
    (dict(sim_dt=-1.0), "option sim_dt takes a time step > 0"),
])
def test_playground_option_values_are_checked(options, fragment):
    pytest.importorskip("mujoco_playground")
    with pytest.raises(ValueError) as err:
        envs.make("playground/CartpoleBalance", 1, **options)
    _one_line_error(err, "playground/CartpoleBalance", fragment)


@pytest.mark.parametrize("options,fragment", [
    (dict(bogus=1), "atari/Pong-v5 has no option(s) bogus; valid: backend,"),
    (dict(noop_max="abc"), "atari/Pong-v5: option noop_max takes an integer (default 30), got 'abc'"),
    (dict(frame_skip=1.5), "atari/Pong-v5: option frame_skip takes an integer (default 4), got 1.5"),
    (dict(episodic_life=1), "atari/Pong-v5: option episodic_life takes True or False"),
    (dict(repeat_action_probability=2.0), "repeat_action_probability must be in [0, 1]"),
    (dict(num_threads=-1), "num_threads must be >= 0"),
])
def test_atari_option_values_are_checked(options, fragment):
    pytest.importorskip("ale_py")
    with pytest.raises(ValueError) as err:
        envs.make("atari/Pong-v5", 1, **options)
    _one_line_error(err, fragment)


def test_an_unusable_mujoco_gl_is_one_line_not_a_traceback(tmp_path):
    """``import mujoco`` fails on a MUJOCO_GL it cannot use (an unknown value: RuntimeError; a backend
    without its library: an AttributeError inside PyOpenGL).  The CLI says so in one line and
    leaves no run directory; a fresh interpreter, so that mujoco really is imported there."""
    import os
    import subprocess
    import sys

    pytest.importorskip("mujoco")
    out = tmp_path / "m"
    proc = subprocess.run(
        [sys.executable, "-m", "bpo_jax", "train", "--env", "mjx/Hopper-v4", "--seeds", "1", "--total-steps",
         "2048", "--num-envs", "4", "--num-steps", "16", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "MUJOCO_GL": "bogus"})
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("bpo-jax: error: MUJOCO_GL=bogus cannot be used here"), err
    assert "invalid value for environment variable MUJOCO_GL: bogus" in err and "unset MUJOCO_GL" in err
    assert not out.exists()


def test_gymnax_data_it_cannot_download_is_one_line_saying_where_to_put_it(monkeypatch):
    """Offline, envs.make("gymnax/MNISTBandit-bsuite") raised gymnax's raw URLError."""
    import urllib.error

    import gymnax

    def offline(env_id):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(gymnax, "make", offline)
    with pytest.raises(envs.MissingDependencyError) as e:
        envs.make("gymnax/MNISTBandit-bsuite", num_envs=1)
    assert str(e.value) == ("gymnax/MNISTBandit-bsuite reads MNIST from /tmp/mnist, downloading what is missing on "
                            "first use (gymnax's load_mnist), and could not: URLError: <urlopen error [Errno -2] Name "
                            "or service not known>; connect once (after deleting any partial file there), or put "
                            "MNIST's four .gz files in /tmp/mnist")
    # A partial file left by a download cut short: gzip's error, the same advice.
    monkeypatch.setattr(gymnax, "make", lambda env_id: (_ for _ in ()).throw(EOFError("Compressed file ended")))
    with pytest.raises(envs.MissingDependencyError, match="could not: EOFError: Compressed file ended; connect once"):
        envs.make("gymnax/MNISTBandit-bsuite", num_envs=1)


def test_envs_marks_the_playground_tasks_whose_menagerie_assets_are_missing(tmp_path, monkeypatch, capsys):
    """`bpo-jax envs` listed 29 tasks that cannot be built without MuJoCo Menagerie, unmarked."""
    from bpo_jax import cli
    from bpo_jax.envs import playground

    monkeypatch.setenv(playground.MENAGERIE_ENV_VAR, str(tmp_path / "nowhere"))
    info = {i.name: i for i in envs.describe_suites()}["playground"]
    assert "playground/Go1JoystickFlatTerrain" in info.unbuildable and "playground/CartpoleBalance" in info.ids
    assert set(info.unbuildable) == {i for i in info.ids if playground.needs_menagerie(i.partition("/")[2])}
    assert "playground/CartpoleBalance" not in info.unbuildable and str(tmp_path / "nowhere") in info.unbuildable_reason
    assert cli.main(["envs"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert " Go1Getup* " in out and " CartpoleBalance " in out and "* these need MuJoCo Menagerie" in out
    monkeypatch.setenv(playground.MENAGERIE_ENV_VAR, str(tmp_path))  # a directory: the tasks read it
    info = {i.name: i for i in envs.describe_suites()}["playground"]
    assert info.unbuildable == () and info.unbuildable_reason is None
    # A hook that fails (a path naming no user's home) marks nothing; it broke `bpo-jax envs` for every suite.
    monkeypatch.setenv(playground.MENAGERIE_ENV_VAR, "~nosuchuser_bpo/m")
    info = {i.name: i for i in envs.describe_suites()}["playground"]
    assert info.unbuildable == () and "playground/Go1Getup" in info.ids


def test_a_suite_package_that_prints_at_its_import_prints_nothing_through_require(tmp_path, monkeypatch, capsys):
    """MJX prints "Failed to import warp: ..." and "Failed to import mujoco_warp: ..." at its
    import where warp-lang is missing (a core install): above every mjx/, brax/ and playground/
    run's first line and above its one-line errors."""
    from bpo_jax.envs.registry import require

    (tmp_path / "chatty_sim.py").write_text("print('Failed to import warp:', 'No module named warp')\n"
                                            "print('Failed to import mujoco_warp:', \"No module named 'warp'\")\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "chatty_sim", raising=False)
    require("chatty_sim", "chatty", "chatty")
    assert "chatty_sim" in sys.modules and capsys.readouterr().out == ""


def test_only_the_warp_lines_are_dropped_while_a_suite_imports(tmp_path, monkeypatch, capsys):
    """The import's other lines, and every line another thread prints meanwhile, reach stdout
    (redirect_stdout dropped them all, process-wide)."""
    from bpo_jax.envs.registry import require

    (tmp_path / "threaded_sim.py").write_text(
        "import threading\n"
        "print('Failed to import warp:', 'No module named warp')\n"
        "print('a line of its own')\n"
        "def other():\n"
        "    print('from', 'another', 'thread')\n"
        "    print('Failed to import warp: in another thread too')\n"
        "t = threading.Thread(target=other)\n"
        "t.start(); t.join()\n"
        "print('no newline yet', end='')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "threaded_sim", raising=False)
    before = sys.stdout
    require("threaded_sim", "threaded", "threaded")
    assert sys.stdout is before
    assert capsys.readouterr().out == "a line of its own\nfrom another thread\nno newline yet"


def test_dropping_lines_overlapping_out_of_order_leaves_stdout_as_it_was(capsys):
    """Two threads' imports overlap: the first to end put back the other's stand-in, which
    then held unfinished lines back for good."""
    from bpo_jax import console

    before = sys.stdout
    first, second = console.dropping_lines("x:"), console.dropping_lines("x:")
    first.__enter__()
    second.__enter__()
    print("x: dropped")
    first.__exit__(None, None, None)  # puts nothing back: sys.stdout is second's stand-in
    second.__exit__(None, None, None)  # puts back first's, closed off by now: taken away too
    assert sys.stdout is before
    with console.dropping_lines("x:"):
        print("a prompt> ", end="", flush=True)  # an unfinished line shows at flush
        assert capsys.readouterr().out == "a prompt> "
        sys.stdout.writelines(["x: gone\n", "kept\n"])
    assert capsys.readouterr().out == "kept\n"


def _conds(env, action):
    state = env.reset(jax.random.key(0))
    return str(jax.make_jaxpr(env.step)(state, action)).count("cond[")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the default skips idle resets on the CPU only")
def test_on_the_cpu_a_step_skips_idle_resets_by_default():
    """``skip_idle_resets=None`` means: on the CPU the reset sits in a ``lax.cond`` (a step where
    no episode ended skips it), as with True; with False it has no cond of its own."""
    counts = {}
    for skip in (None, True, False):
        env = envs.make("gymnax/CartPole-v1", num_envs=4)
        env.skip_idle_resets = skip
        counts[skip] = _conds(env, jnp.zeros(4, jnp.int32))
    assert counts[None] == counts[True] == counts[False] + 1


def test_a_functional_env_of_no_copies_is_refused():
    """num_envs < 1 is refused by the env class itself (not only by ``envs.make``)."""
    from tests.test_env_contract import Walk

    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        Walk(0)
    assert Walk(1).num_envs == 1


def test_check_option_boundaries():
    """The documented rules at their edges: ``inf`` is taken where the default is itself infinite;
    a ``*_range`` with low == high is valid (low <= high); a time step must be > 0, so 0 is
    refused; an array default of floats takes integers too, converted to its dtype."""
    from bpo_jax.envs.options import check_option

    inf = float("inf")
    assert check_option("suite/Task", "limit", inf, inf) == inf
    assert check_option("suite/Task", "healthy_z_range", (1.0, 1.0), (0.7, inf)) == (1.0, 1.0)
    for option in ("dt", "ctrl_dt"):
        assert check_option("suite/Task", option, 0.01, 0.02) == 0.01
        with pytest.raises(ValueError, match=f"option {option} takes a time step > 0"):
            check_option("suite/Task", option, 0.0, 0.02)
    fitted = check_option("suite/Task", "torques", [1, 2], jnp.array([0.5, 1.5]))
    assert fitted.dtype == jnp.float32 and fitted.tolist() == [1.0, 2.0]


def test_host_state_is_declared_per_suite_and_false_for_unknown_ids():
    """Only suites registered with ``host_state`` (the simulators outside JAX: atari, isaaclab)
    say so; JAX suites and ids of no registered suite do not."""
    from bpo_jax.envs import registry

    assert registry.host_state("atari/Pong-v5") and registry.host_state("isaaclab/Isaac-Ant-v0")
    assert not registry.host_state("gymnax/CartPole-v1")
    assert not registry.host_state("nosuchsuite/Task") and not registry.host_state("")
