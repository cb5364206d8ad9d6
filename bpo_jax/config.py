"""Run configuration: one frozen dataclass, every field documented.

Fields split in two kinds, by how JAX sees them:

* **structural** fields (sizes, network shape, algorithm switches) are Python values baked
  into the compiled program;
* **sweepable** floats (learning rate, eps, lambda, gamma, ...) are collected by
  :meth:`Config.hparams` into an :class:`HParams` pytree whose leaves are traced, so
  ``jax.vmap(train)(keys, batched_hparams)`` trains a grid of configurations as one program.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Collection, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bpo_jax import algorithms
from bpo_jax.envs.base import ActionSpace, Discrete
from bpo_jax.errors import PLUGIN_HINT, float_settings_problem, unknown_name
from bpo_jax.networks import SQUASHES

ACTIVATIONS = ("tanh", "relu", "elu")
MATMUL_PRECISIONS = ("highest", "high", "default")
LR_SCHEDULES = ("constant", "linear", "adaptive")


class ConfigError(ValueError):
    """An invalid or inconsistent configuration; the message says what to change."""


def at_precision(precision: str, fn: Callable) -> Callable:
    """``fn`` traced at float32 matmul ``precision`` (one of MATMUL_PRECISIONS): every dot and
    convolution traced inside it (networks, an env's physics) that does not name its own."""
    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return fn(*args, **kwargs)
    return traced


def type_error(name: str, value: Any, hint: Any) -> Optional[str]:
    """The message for a ``value`` of field ``name`` that does not fit its type ``hint`` (None if
    it fits): an int where an int is declared (a bool is not one), a real number where a float
    is, a tuple of such where a tuple is.  Without this a string or a float reaches JAX as a
    shape or a key and fails deep inside, after the run directory exists."""
    def fits(v, h) -> bool:
        args = typing.get_args(h)
        if typing.get_origin(h) in (typing.Union, types.UnionType):
            return any(fits(v, a) for a in args)
        if typing.get_origin(h) is tuple:
            return isinstance(v, tuple) and all(fits(x, args[0]) for x in v)
        if h is type(None):
            return v is None
        if h is float:
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if h is int:
            return isinstance(v, int) and not isinstance(v, bool)
        return isinstance(v, h) if isinstance(h, type) else True

    def say(h) -> str:
        words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "None"}
        if typing.get_origin(h) in (typing.Union, types.UnionType):
            return " or ".join(say(a) for a in typing.get_args(h))
        if typing.get_origin(h) is tuple:
            return f"a tuple of {say(typing.get_args(h)[0]).removeprefix('an ').removeprefix('a ')}s"
        return words.get(h, f"a {h.__name__}" if isinstance(h, type) else str(h))

    if fits(value, hint):
        return None
    return f"{name} must be {say(hint)}, got {value!r}"


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars (and tuples of them) as the Python numbers they hold: a
    setting read from an array (``np.linspace``, a loaded file) is accepted as its value, and
    configs stay hashable, comparable and JSON-writable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def plain_fields(settings: Any) -> None:
    """Replace, in place, the NumPy scalars in the fields of the frozen dataclass ``settings``
    by :func:`plain` values (called from its ``__post_init__``)."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if plain(value) is not value:
            object.__setattr__(settings, f.name, plain(value))


# Arguments every env constructor gets from the run's own settings (registry.make's, a suite's
# name, the isaaclab/ host loop's), which an env option of the same name would collide with.
_SET_BY_RUN = {"num_envs": "num_envs", "reset_pool": "reset_pool", "asymmetric_critic": "asymmetric_critic",
               "env_id": "env", "name": "env"}


def _arg(default: Any, help: str, sweep: bool = False):
    return field(default=default, metadata={"help": help, "sweep": sweep})


@dataclass(frozen=True)
class Config:
    """Everything that defines a training run.  Defaults: BPO on gymnax CartPole-v1 with
    PureJaxRL's PPO settings (4 envs x 128 steps, 4 epochs x 4 minibatches, tanh 64x64)."""

    # --- run ---
    env: str = _arg("gymnax/CartPole-v1", "environment id, 'suite/name' (see `bpo-jax envs`)")
    algo: str = _arg("bpo", "algorithm: bpo (Bounded Policy Optimization) or ppo (clipped surrogate), or a "
                            "registered one (bpo_jax.algorithms.register)")
    seed: int = _arg(0, "base PRNG seed; seed i of a multi-seed run uses fold(seed, i)")
    total_steps: int = _arg(500_000, "environment steps per seed (rounded down to whole updates)")
    num_envs: int = _arg(4, "parallel environments per seed")
    num_steps: int = _arg(128, "rollout length T per environment and update")
    num_epochs: int = _arg(4, "passes over each rollout")
    num_minibatches: int = _arg(4, "minibatches per epoch; num_envs*num_steps must divide evenly")
    reshuffle_each_epoch: bool = _arg(
        True, "a new minibatch permutation every epoch (PureJaxRL, SB3); false: one per update, which every "
              "epoch reuses (rsl_rl's, IsaacLab's)")
    env_options: tuple[str, ...] = _arg(
        (), "environment constructor options as key=value pairs, e.g. backend=generalized,episode_length=500")
    reset_pool: int = _arg(
        0, "auto-reset: 0 = a fresh random initial state per episode (exact); P > 0 = draw from P initial "
           "states sampled once per run (much cheaper for MJX; biased towards those P starts)")
    # --- network ---
    hidden_sizes: tuple[int, ...] = _arg(
        (64, 64), "hidden layer widths of the actor and critic MLPs; empty = linear policy and value")
    activation: str = _arg("tanh", "hidden activation: tanh, relu or elu")
    median_hidden_sizes: tuple[int, ...] = _arg(
        (), "hidden widths of the median head on the critic trunk; empty = a linear head "
            "(the reference uses an MLP as wide as hidden_sizes: pass the same widths to match)")
    init_std: float = _arg(1.0, "initial policy std for continuous actions")
    min_std: float = _arg(1e-3, "floor of the policy std (std = min_std + softplus(param), never 0 or NaN)")
    action_squash: str = _arg(
        "clip", "continuous actions: clip (Gaussian clipped to the bounds, as SB3 and the paper) or tanh "
                "(smooth squash onto the bounds; the Jacobian cancels in the ratios)")
    # --- normalisation (inside the compiled loop) ---
    normalize_obs: bool = _arg(
        False, "running mean/std observation normalisation (off by default: the paper's MuJoCo runs use none)")
    obs_clip: float = _arg(10.0, "clip normalised observations to +-this")
    obs_norm_window: int = _arg(
        0, "normalize_obs over about the last N observations (older ones decay exponentially, each update's "
           "batch B weighing B/(N+B)) for long runs whose observations drift, as Brax's EMA option; 0 = over "
           "every observation seen (exact running mean and variance)")
    normalize_rewards: bool = _arg(
        False, "divide rewards by the running std of the discounted return, as SB3 VecNormalize (no shift)")
    reward_clip: float = _arg(10.0, "clip normalised rewards to +-this")
    # --- optimisation (sweepable) ---
    lr: Optional[float] = _arg(None, "Adam learning rate (default: the algorithm's, 1e-3 for BPO, 2.5e-4 for PPO "
                                     "as PureJaxRL)", sweep=True)
    anneal_lr: bool = _arg(True, "anneal the learning rate linearly to 0 over the run")
    adam_eps: float = _arg(1e-5, "Adam epsilon (1e-5 as SB3 and PureJaxRL)", sweep=True)
    max_grad_norm: float = _arg(0.5, "global gradient-norm clip over all parameters", sweep=True)
    gamma: float = _arg(0.99, "discount factor", sweep=True)
    gae_lambda: float = _arg(0.95, "GAE trace parameter", sweep=True)
    reward_scale: float = _arg(1.0, "multiply rewards by this before learning (episode statistics stay raw)", sweep=True)
    ent_coef: Optional[float] = _arg(
        None, "entropy bonus coefficient (default: the algorithm's, 0 for BPO as the reference code, 0.01 for PPO "
              "as PureJaxRL)", sweep=True)
    vf_coef: Optional[float] = _arg(
        None, "value loss coefficient on a plain MSE (default: the algorithm's, 0.25 for PPO = PureJaxRL's 0.5 "
              "times its 0.5*MSE, 0.5 for BPO as the reference)", sweep=True)
    # --- trust region, shared by PPO and BPO ---
    # Not itself traced: it is the default of eps_low and eps_high, which are.
    eps: float = _arg(0.2, "ratio bound: c_l = 1-eps, c_h = 1+eps (PPO clip range)")
    eps_low: Optional[float] = _arg(None, "asymmetric lower bound, c_l = 1-eps_low (default: eps)", sweep=True)
    eps_high: Optional[float] = _arg(None, "asymmetric upper bound, c_h = 1+eps_high (default: eps)", sweep=True)
    # --- PPO ---
    normalize_advantages: bool = _arg(True, "PPO: normalise advantages (mean 0, std 1)")
    normalize_advantages_per_minibatch: bool = _arg(
        True, "PPO: normalise advantages in each minibatch (PureJaxRL, SB3); false: once over the whole batch "
              "before the epochs (rsl_rl's default, IsaacLab's PPO)")
    adv_std_ddof: int = _arg(
        0, "the std that normalises advantages divides by n - adv_std_ddof: 0 as PureJaxRL's jnp.std, 1 as torch's "
           ".std() in SB3 and rsl_rl (the paper presets)")
    value_clip: Optional[float] = _arg(
        None, "clip the value update around V_old to +-this; 0 = off (default: the algorithm's, 0.2 for PPO as "
              "PureJaxRL, off for BPO as the reference)")
    # --- BPO ---
    bpo_lambda: float = _arg(0.001, "BPO temperature lambda of the target sigmoid, on the raw return scale", sweep=True)
    u_coef: float = _arg(0.5, "BPO median-head loss coefficient (0.5 as the reference's sb3 code)", sweep=True)
    use_median: bool = _arg(True, "BPO: target from Q_hat - u(s) (median head); false: from Q_hat - V(s) (ablation)")
    loss_type: str = _arg("adv_TV", "BPO divergence: adv_TV (paper), TV, log_TV, MSE, RKL, FKL, JS")
    online_adv: bool = _arg(True, "BPO weight |Q_hat - V_current|; false: |GAE advantage| normalised over the batch")
    logit_clamp: Optional[float] = _arg(None, "BPO: clamp (Q_hat - u)/lambda to +-this (rsl_rl uses 10; off by default)")
    # --- rsl_rl (IsaacLab) features, off by default ---
    lr_schedule: Optional[str] = _arg(
        None, "learning-rate schedule: constant, linear (to 0 over the run) or adaptive (rsl_rl's adaptive KL: per "
              "minibatch lr /1.5 when KL(old||new) > 2 desired_kl, x1.5 when < desired_kl/2, within [1e-5, 1e-2]); "
              "default: linear if anneal_lr else constant")
    desired_kl: float = _arg(0.01, "adaptive lr_schedule: the KL between the old and new policy aimed at (rsl_rl 0.01)")
    recompute_returns: bool = _arg(
        False, "BPO: recompute values and GAE returns with the current critic on each epoch's last minibatch, for "
               "the next epoch (rsl_rl BPO); advantages and time-out bootstraps stay the rollout's")
    tv_loss_coef: float = _arg(0.0, "BPO with `loss_type` adv_TV: add tv_loss_coef * mean|rho - rho*| to the policy loss "
                                      "(rsl_rl BPO's term, in its adv_TV branch only)")
    separate_median: bool = _arg(
        False, "BPO: the median u(s) is its own MLP (hidden_sizes) on the critic's input, as rsl_rl BPO's m_critic, "
               "instead of a head on the critic trunk")
    asymmetric_critic: bool = _arg(
        False, "isaaclab/: the critic and median read the env's `critic` observation group (privileged), the actor "
               "the `policy` group")
    policy_obs_dim: int = _arg(
        0, "asymmetric critic: the actor reads obs[..., :policy_obs_dim], critic and median the rest; 0 = all read "
           "the whole observation (the isaaclab/ host loop sets it from the env)")
    init_at_random_ep_len: bool = _arg(
        False, "isaaclab/: start every env at a random point of its episode before training, as rsl_rl's "
               "runner.learn(init_at_random_ep_len=True), so time-outs spread over iterations")
    # --- numerics ---
    matmul_precision: str = _arg(
        "highest", "float32 matmuls and convolutions on GPUs and TPUs (networks and MJX physics alike): highest "
                   "(true float32, as Playground and Brax advise), high, or default (the backend's fastest: TF32 on "
                   "NVIDIA Ampere and later, which changes physics and results); no effect on CPUs")

    # ---------------------------------------------------------------- derived
    @property
    def algorithm(self) -> algorithms.Algorithm:
        """The algorithm object named by ``algo``."""
        if self.algo not in algorithms.names():
            raise ConfigError(unknown_name("`algo`", self.algo, algorithms.names()) + PLUGIN_HINT)
        return algorithms.get(self.algo)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.batch_size

    @property
    def schedule(self) -> str:
        """The learning-rate schedule in force: ``lr_schedule``, or what ``anneal_lr`` says."""
        if self.lr_schedule is not None:
            return self.lr_schedule
        return "linear" if self.anneal_lr else "constant"

    @property
    def bounds(self) -> tuple[float, float]:
        """(eps_low, eps_high) with the symmetric default filled in."""
        low = self.eps if self.eps_low is None else self.eps_low
        high = self.eps if self.eps_high is None else self.eps_high
        return low, high

    def resolved(self) -> "Config":
        """This config with every ``None`` that means "the algorithm's default" filled in."""
        defaults = self.algorithm.defaults
        fill = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        low, high = self.bounds
        return dataclasses.replace(self, eps_low=low, eps_high=high, **fill)

    def program_difference(self, other: "Config") -> Optional[str]:
        """None where ``other`` is this run's program with other hyperparameters (they differ in
        sweepable fields only, :data:`SWEEPABLE`, so both can train as one vmapped program), else
        a line naming the first field that differs."""
        mine, theirs = self.resolved(), other.resolved()
        for f in fields(Config):
            if f.metadata["sweep"] or f.name == "eps":  # eps reaches the program as eps_low / eps_high
                continue
            a, b = getattr(mine, f.name), getattr(theirs, f.name)
            if a != b:
                return f"{f.name} is {a!r} in one and {b!r} in another"
        return None

    def hparams(self) -> HParams:
        """The sweepable floats as a pytree of float32 scalars, after :meth:`validate` (a grid
        built by ``replace`` would otherwise train a value validate refuses, bpo_lambda=0)."""
        self.validate()
        full = self.resolved()
        return HParams(**{name: jnp.asarray(getattr(full, name), jnp.float32) for name in SWEEPABLE})

    def env_kwargs(self) -> dict[str, Any]:
        """``env_options`` as keyword arguments; values are Python literals where they parse
        as one (numbers, True/False, tuples) and strings otherwise."""
        out = {}
        for item in self.env_options:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"`env_options` item {item!r} is not key=value (e.g. backend=generalized)")
            try:
                value = _literal(text.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = text.strip()
            if key.strip() in out:
                raise ConfigError(f"env option {key.strip()} is given twice in `env_options`")
            if key.strip() in _SET_BY_RUN:
                raise ConfigError(f"env option {key.strip()} is the run's `{_SET_BY_RUN[key.strip()]}`: set that "
                                  "instead, and drop it from `env_options`")
            out[key.strip()] = value
        return out

    def __post_init__(self):
        plain_fields(self)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_precision(self, fn: Callable) -> Callable:
        """``fn`` traced at this run's ``matmul_precision`` (:func:`at_precision`)."""
        return at_precision(self.matmul_precision, fn)

    # ------------------------------------------------------------- validation
    def validate(self) -> "Config":
        """Raise :class:`ConfigError` with a one-line, actionable message if anything is off."""
        def need(ok: bool, msg: str):
            if not ok:
                raise ConfigError(msg)

        def one_of(name: str, valid) -> None:  # the message (with its suggestions) only on failure
            if getattr(self, name) not in valid:
                raise ConfigError(unknown_name(f"`{name}`", getattr(self, name), valid))

        hints = _hints()
        for f in fields(self):
            message = type_error(f"`{f.name}`", getattr(self, f.name), hints[f.name])
            need(message is None, message)
        need(0 <= self.seed < 2**32, f"`seed` must be in [0, 2**32), got {self.seed}")
        algorithm = self.algorithm
        self._check_algorithm(algorithm)
        problem = float_settings_problem(self, _MAY_BE_INFINITE)  # before the range checks below
        need(problem is None, problem)
        for name in ("num_envs", "num_steps", "num_epochs", "num_minibatches", "total_steps"):
            need(getattr(self, name) > 0, f"`{name}` must be a positive integer, got {getattr(self, name)}")
        for name in ("num_envs", "num_steps", "num_epochs", "num_minibatches"):  # loop bounds and shapes: int32
            need(getattr(self, name) < 2**31, f"`{name}` must be below 2**31, got {getattr(self, name):,}")
        need(self.num_updates < 2**31, f"`total_steps` {self.total_steps:,} gives {self.num_updates:,} updates, more "
             f"than the int32 update counter holds; give at most {(2**31 - 1) * self.batch_size:,}")
        need(self.batch_size % self.num_minibatches == 0,
             f"one update's batch (`num_envs` {self.num_envs} x `num_steps` {self.num_steps} = {self.batch_size}) "
             f"does not divide into `num_minibatches` {self.num_minibatches}; change one of them")
        need(self.total_steps >= self.batch_size,
             f"`total_steps` {self.total_steps} is less than one update's batch "
             f"(`num_envs` {self.num_envs} x `num_steps` {self.num_steps} = {self.batch_size})")
        # XLA's shapes hold int32 sizes: a wider layer aborted the process in XLA (a C++ check).
        need(all(0 < h < 2**31 for h in self.hidden_sizes),  # empty: linear heads (e.g. SB3's Atari CnnPolicy)
             f"`hidden_sizes` must be positive widths below 2**31, got {self.hidden_sizes}")
        need(all(0 < h < 2**31 for h in self.median_hidden_sizes),
             f"`median_hidden_sizes` must be positive widths below 2**31, got {self.median_hidden_sizes}")
        one_of("matmul_precision", MATMUL_PRECISIONS)
        one_of("activation", ACTIVATIONS)
        full = self.resolved()
        need(full.lr > 0, f"`lr` must be > 0, got {full.lr}")
        need(0.0 <= self.gamma <= 1.0, f"`gamma` must be in [0, 1], got {self.gamma}")
        need(0.0 <= self.gae_lambda <= 1.0, f"`gae_lambda` must be in [0, 1], got {self.gae_lambda}")
        low, high = self.bounds
        need(0.0 < low <= 1.0, f"`eps_low` (or `eps`) must be in (0, 1], as the ratio's lower bound 1 - eps_low is >= 0; "
             f"got {low}")
        need(high > 0.0, f"`eps_high` (or `eps`) must be > 0, got {high}")
        need(self.max_grad_norm > 0, f"`max_grad_norm` must be > 0, got {self.max_grad_norm}")
        need(self.init_std > self.min_std >= 0, f"need `init_std` > `min_std` >= 0, got {self.init_std} and {self.min_std}")
        need(full.ent_coef >= 0, f"`ent_coef` must be >= 0, got {full.ent_coef}")
        for name in ("vf_coef", "u_coef", "adam_eps", "value_clip"):
            need(getattr(full, name) >= 0, f"`{name}` must be >= 0, got {getattr(full, name)}")
        need(self.reward_scale > 0, f"`reward_scale` must be > 0, got {self.reward_scale}")
        need(self.adv_std_ddof in (0, 1),
             f"`adv_std_ddof` must be 0 (population std) or 1 (unbiased), got {self.adv_std_ddof!r}")
        need(self.adv_std_ddof == 0 or self.minibatch_size > 1,
             "`adv_std_ddof` 1 needs minibatches of 2 samples or more (one sample has no unbiased std); "
             "lower `num_minibatches`")
        one_of("action_squash", SQUASHES)
        need(self.obs_norm_window >= 0, f"`obs_norm_window` must be >= 0 (0 = all observations), got {self.obs_norm_window}")
        need(self.obs_clip > 0 and self.reward_clip > 0,
             f"`obs_clip` and `reward_clip` must be > 0, got {self.obs_clip} and {self.reward_clip}")
        need(0 <= self.reset_pool < 2**31, f"`reset_pool` must be in [0, 2**31) (0 = fresh resets), got {self.reset_pool}")
        if self.lr_schedule is not None:
            one_of("lr_schedule", LR_SCHEDULES)
        need(self.desired_kl > 0, f"`desired_kl` must be > 0, got {self.desired_kl}")
        need(self.policy_obs_dim >= 0, f"`policy_obs_dim` must be >= 0, got {self.policy_obs_dim}")
        host_only = [f for f in ("asymmetric_critic", "init_at_random_ep_len", "policy_obs_dim") if getattr(self, f)]
        need(not host_only or self.env.startswith("isaaclab/"),
             f"{', '.join(f'`{f}`' for f in host_only)} applies to isaaclab/ environments only, not {self.env}")
        self.env_kwargs()
        self._check_foreign_fields(algorithm)
        algorithm.validate(self)
        return self

    def _check_algorithm(self, algorithm: algorithms.Algorithm) -> None:
        """Refuse an algorithm whose fields are not Config's (:func:`check_algorithm_fields`),
        and a setting left at None (the algorithm's default) that it has no default for."""
        check_algorithm_fields(algorithm)
        for name in FROM_ALGORITHM:
            if getattr(self, name) is None and algorithm.defaults.get(name) is None:
                raise ConfigError(f"`{name}` is not set and `algo` {algorithm.name} has no default for it: set "
                                  f"`{name}`, or give it in {type(algorithm).__name__}.defaults")

    def _check_foreign_fields(self, algorithm: algorithms.Algorithm) -> None:
        """Refuse a setting that only another algorithm reads (it would be silently ignored)."""
        defaults = {f.name: f.default for f in fields(self)}
        for other in map(algorithms.get, algorithms.names()):
            for name in set(other.own_fields) - set(algorithm.own_fields):
                if getattr(self, name) != defaults[name]:
                    raise ConfigError(f"`{name}` applies only to `algo` {other.name}, not {algorithm.name}; "
                                      f"leave it at its default ({shown(defaults[name])}) or train {other.name}")

    def check_read(self, given: Collection[str], continuous: bool) -> "Config":
        """Refuse a setting in ``given`` (the fields a user set on purpose: a command line's
        flags, not a preset's values) that a run would not read (:data:`READ_WHEN`), in an env
        whose actions are ``continuous`` or not: it would train the same run as without it, while
        config.json says otherwise.  For new runs: a run made before this check still resumes."""
        for name, (what, reads) in READ_WHEN.items():
            if name in given and algorithms.reads(self.algo, name) and not reads(self, frozenset(), lambda: continuous):
                raise ConfigError(f"`{name}` {shown(getattr(self, name))} changes nothing here: it is read only "
                                  f"with {what}; drop it")
        if self.lr_schedule == "linear" and not self.anneal_lr and {"lr_schedule", "anneal_lr"} & set(given):
            raise ConfigError("`lr_schedule` linear anneals the learning rate, which `anneal_lr` off says not to; "
                              "drop one of them")  # the schedule wins: it annealed
        return self

    def validate_env(self, action_space: ActionSpace) -> "Config":
        """Refuse settings that cannot apply to an environment with ``action_space``."""
        if isinstance(action_space, Discrete) and self.action_squash != "clip":
            raise ConfigError(f"`action_squash` {self.action_squash!r} applies to continuous actions only; "
                              f"{self.env} has {action_space.n} discrete actions")
        if self.action_squash == "tanh" and not (np.isfinite(np.asarray(action_space.low, np.float32)).all()
                                                 and np.isfinite(np.asarray(action_space.high, np.float32)).all()):
            raise ConfigError(f"`action_squash` 'tanh' maps onto the action bounds, and {self.env}'s are not all "
                              "finite; use `action_squash` clip")
        return self


# Fields a run reads only when another of its settings turns them on: field -> (what has to
# hold, whether it holds for a Config).  The test takes the fields a sweep's grid sets on top
# of the Config (``later``) and whether the env's actions are continuous (``continuous()``,
# asked only where it matters: a sweep builds the env to know).  A value where it does not hold
# trains the same run as without it: ``Config.check_read`` refuses a flag given so, a sweep
# leaves such runs at their preset.
READ_WHEN: dict[str, tuple[str, Callable[["Config", frozenset, Callable[[], bool]], bool]]] = {
    "obs_clip": ("`normalize_obs` on", lambda c, later, continuous: c.normalize_obs),
    "obs_norm_window": ("`normalize_obs` on", lambda c, later, continuous: c.normalize_obs),
    "reward_clip": ("`normalize_rewards` on", lambda c, later, continuous: c.normalize_rewards),
    "desired_kl": ("`lr_schedule` adaptive", lambda c, later, continuous: c.schedule == "adaptive"),
    "eps": ("`eps_low` or `eps_high` unset (they take `eps`)",
            lambda c, later, continuous: any(getattr(c, b) is None and b not in later for b in ("eps_low", "eps_high"))),
    "init_std": ("continuous actions", lambda c, later, continuous: continuous()),
    "min_std": ("continuous actions", lambda c, later, continuous: continuous()),
    "u_coef": ("`use_median` on", lambda c, later, continuous: c.use_median),
    "tv_loss_coef": ("`loss_type` adv_TV", lambda c, later, continuous: c.loss_type == "adv_TV"),
    # A plug-in algorithm (one that reads neither switch) may normalise with it: never refused there.
    "adv_std_ddof": ("advantages normalised (PPO's `normalize_advantages` on, or BPO's `online_adv` off)",
                     lambda c, later, continuous: _normalises_advantages(c)),
    "normalize_advantages_per_minibatch": ("`normalize_advantages` on",
                                           lambda c, later, continuous: c.normalize_advantages),
    "reshuffle_each_epoch": ("more than one epoch", lambda c, later, continuous: c.num_epochs > 1),
    "median_hidden_sizes": ("`use_median` on and `separate_median` off (its network is `hidden_sizes` wide)",
                            lambda c, later, continuous: c.use_median and not c.separate_median),
}


def _normalises_advantages(c: "Config") -> bool:
    """Whether ``c``'s algorithm normalises advantages (where ``adv_std_ddof`` is read)."""
    ppo_like, bpo_like = (algorithms.reads(c.algo, f) for f in ("normalize_advantages", "online_adv"))
    return (ppo_like and c.normalize_advantages) or (bpo_like and not c.online_adv) or not (ppo_like or bpo_like)


def shown(value: Any) -> str:
    """A setting as typed on the command line: 64,64 for a tuple (none when empty), 0.5, True."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


class _Infinity(ast.NodeTransformer):
    """The name ``inf`` as infinity (a range such as healthy_z_range=(0.7,inf)); ``'inf'`` in
    quotes stays a string."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(math.inf) if node.id == "inf" else node


def _literal(text: str) -> Any:
    """``text`` as a Python literal, with ``inf`` for infinity; ValueError or SyntaxError if it is none."""
    return ast.literal_eval(_Infinity().visit(ast.parse(text, mode="eval")))


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def check_algorithm_fields(algorithm: algorithms.Algorithm) -> None:
    """Refuse an algorithm (a plug-in, as it registers) whose ``defaults`` or ``own_fields``
    name no Config field, or whose defaults are of the wrong type."""
    hints = _hints()
    for kind, names in (("defaults", algorithm.defaults), ("own_fields", algorithm.own_fields)):
        for name in names:
            if name not in hints:
                raise ConfigError(unknown_name(f"Config field in algorithm {algorithm.name}'s {kind}", name,
                                               list(hints)))
    for name, value in algorithm.defaults.items():
        message = type_error(f"algorithm {algorithm.name}'s default for `{name}`", plain(value), hints[name])
        if message:
            raise ConfigError(message)


# Settings whose None means "the algorithm's default" (Algorithm.defaults must give each).
FROM_ALGORITHM = ("lr", "ent_coef", "vf_coef", "value_clip")

# Clipping thresholds, where inf means no clipping; every other float setting must be finite.
_MAY_BE_INFINITE = ("max_grad_norm", "obs_clip", "reward_clip", "value_clip")


def _stack(cls, hparams: list) -> "HParams":
    """Batch several HParams along a new leading axis, for ``vmap`` over configurations."""
    hparams = list(hparams)
    if not hparams or not all(isinstance(h, cls) for h in hparams):
        raise TypeError(f"HParams.stack takes a non-empty list of HParams (Config.hparams()), got {hparams!r}")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hparams)


# The sweepable fields, declared once (``sweep=True`` on a Config field); HParams is derived.
SWEEPABLE: tuple[str, ...] = tuple(f.name for f in fields(Config) if f.metadata["sweep"])

HParams = struct.dataclass(type("HParams", (), {
    "__annotations__": {name: jax.Array for name in SWEEPABLE},
    "stack": classmethod(_stack),
    "__module__": __name__,
    "__doc__": "The traced (sweepable) hyperparameters, float32 scalars (or batched for vmap): "
               + ", ".join(SWEEPABLE) + ".  Derived from the Config fields declared with sweep=True; "
               "see Config for their meaning.",
}))
