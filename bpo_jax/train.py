"""make_train: a whole BPO/PPO training run as one pure, jittable, vmappable function.

    train = make_train(config)                       # static set-up
    state, metrics = jax.jit(train)(key)             # one run, one program
    jax.jit(jax.vmap(train))(keys)                   # N seeds, one program
    jax.jit(jax.vmap(train))(keys, HParams.stack(hs)) # N configurations, one program

The loop reads like the algorithm: collect T steps with the current policy, compute GAE
targets, then epochs x minibatches of gradient steps.  Each level is one ``lax.scan``.
Metrics are reduced to one small row of scalars per update, so memory does not grow with
the run beyond ``num_updates`` rows.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bpo_jax import bootstrap, losses, lr_schedule, normalization as norm, shuffle
from bpo_jax.algorithms import Batch, LossContractError, LossInputs, checked_loss
from bpo_jax.config import Config, HParams
from bpo_jax.envs import Env, EnvState, contract, make as make_env
from bpo_jax.envs.base import Discrete
from bpo_jax.networks import action_to_env, init_params, make_network, policy_noise


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next (one seed)."""

    params: Any
    opt_state: Any  # the optimiser's state for the parameters raveled into one vector
    env_state: EnvState
    key: jax.Array
    update: jax.Array  # int32, updates done so far
    obs_stats: norm.RunningStats | None = None  # observation statistics (normalize_obs)
    return_stats: norm.RunningStats | None = None  # discounted-return statistics (normalize_rewards)
    return_acc: jax.Array | None = None  # [B] running discounted return per env (normalize_rewards)


@struct.dataclass
class Transition:
    """One rollout step for B environments; stacked by the rollout scan to [T, B, ...]."""

    obs: jax.Array  # [B, *O] observation acted on
    action: jax.Array  # [B] or [B, A] sampled action (unclipped)
    log_prob: jax.Array  # [B] log pi_old(a|s)
    reward: jax.Array  # [B]
    terminated: jax.Array  # [B] bool
    truncated: jax.Array  # [B] bool
    final_obs: jax.Array  # [B, *O] observation reached, before auto-reset
    done_return: jax.Array  # [B] return of an episode that ended here (0 otherwise)
    done_length: jax.Array  # [B] its length
    done: jax.Array  # [B] bool


class Trainer(NamedTuple):
    """The pieces of a run.  ``train`` is ``init`` followed by ``num_updates`` ``update`` calls;
    a chunked driver calls ``update_chunk`` (K updates per compiled call) instead.

    ``update`` is ``learn(state, *collect(state, hp), hp)``.  A driver whose simulator is not
    JAX (its steps happen on the host) builds the :class:`Transition` rollout itself, sampling
    with ``act``, and calls ``learn``: the same update, compiled once."""

    init: Callable[[jax.Array, HParams], TrainState]
    restart_envs: Callable[[TrainState], TrainState]
    act: Callable[[TrainState, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    collect: Callable[[TrainState, HParams], tuple[Transition, EnvState, jax.Array]]
    learn: Callable[[TrainState, Transition, EnvState, jax.Array, HParams], tuple[TrainState, dict]]
    update: Callable[[TrainState, HParams], tuple[TrainState, dict]]
    update_chunk: Callable[[TrainState, HParams, int], tuple[TrainState, dict]]
    train: Callable[..., tuple[TrainState, dict]]
    num_updates: int
    config: Config
    env: Env


DATA_AXIS = "data"  # the mesh axis the environment batch is split along


def _flat(x: jax.Array) -> jax.Array:
    """[T, B, ...] -> [T * B, ...]."""
    return x.reshape((-1,) + x.shape[2:])


def env_partition(env_state: EnvState, num_envs: int) -> EnvState:
    """PartitionSpec per EnvState leaf (one seed): leaves with a leading [num_envs] axis
    (observations, per-env keys, simulator state) are split along DATA_AXIS, everything else
    (the reset pool [P, ...], scalars) is replicated."""
    split = lambda x: P(DATA_AXIS) if x.ndim >= 1 and x.shape[0] == num_envs else P()
    specs = jax.tree.map(split, env_state.replace(reset_pool=None))
    return specs.replace(reset_pool=jax.tree.map(lambda _: P(), env_state.reset_pool))


def make_trainer(config: Config, env: Env | None = None, mesh: Mesh | None = None) -> Trainer:
    """The pieces of a run.  ``mesh``: a 1-D device mesh whose axis DATA_AXIS splits the env
    batch; the rollout then stays split per device (XLA inserts the collectives for the
    global means: loss, gradients, normaliser statistics, metrics).  None: no constraint."""
    if not isinstance(config, Config):
        raise TypeError(f"make_train takes a Config, got {type(config).__name__} (Config(**values) makes one)")
    config.validate()
    # A plug-in's mistakes in one line, not from deep inside the loop.
    if env is None:
        env = make_env(config.env, num_envs=config.num_envs, reset_pool=config.reset_pool, **config.env_kwargs())
        if contract.is_users(env):
            contract.check_once(env, contract.made_from(config.env, config.num_envs, config.reset_pool,
                                                        config.env_kwargs()))
    elif contract.is_users(env):
        contract.check(env)
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has {env.num_envs} copies but config.num_envs = {config.num_envs}")
    config.validate_env(env.action_space)
    algorithm = config.algorithm
    value_clip = config.resolved().value_clip or None  # 0 = off
    network = make_network(config, env.action_space, env.obs_spec)
    num_updates = config.num_updates
    grad_steps_per_update = config.num_epochs * config.num_minibatches

    def shard_envs(env_state: EnvState) -> EnvState:
        """Pin the env batch to its devices, so sharding propagation cannot choose to gather
        the rollout (a no-op without a mesh; under vmap over seeds the seed axis stays whole)."""
        if mesh is None:
            return env_state
        specs = env_partition(env_state, config.num_envs)
        return jax.tree.map(lambda x, s: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, s)),
                            env_state, specs)

    adaptive_lr = config.schedule == "adaptive"

    def make_optimizer(hp: HParams):
        if adaptive_lr:  # rsl_rl's adaptive KL: the lr lives in the optimiser state (bpo_jax.lr_schedule)
            return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), lr_schedule.adaptive_adam(hp.lr, hp.adam_eps))
        if config.schedule == "linear":
            lr = lambda count: hp.lr * (1.0 - (count // grad_steps_per_update) / num_updates)
        else:
            lr = hp.lr
        return optax.chain(
            optax.clip_by_global_norm(hp.max_grad_norm),
            optax.adam(lr, eps=hp.adam_eps),
        )

    # ------------------------------------------------------------------ INIT
    def init(key: jax.Array, hp: HParams) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        env_state = shard_envs(env.reset(env_key))
        params = init_params(network, net_key, env_state.obs)
        opt_state = make_optimizer(hp).init(ravel_pytree(params)[0])
        state = TrainState(params, opt_state, env_state, key, jnp.zeros((), jnp.int32))
        if config.normalize_obs:
            state = state.replace(obs_stats=norm.init_stats(env.obs_spec.shape))
        if config.normalize_rewards:
            state = state.replace(return_stats=norm.init_stats(()), return_acc=jnp.zeros(env.num_envs))
        return state

    def restart_envs(state: TrainState) -> TrainState:
        """Every episode started again (``env.reset``), all else kept: what a resumed run does
        first where the suite's simulators live outside the state, so that no checkpoint holds
        them (``host_state``, :func:`bpo_jax.envs.registry.host_state`)."""
        key, env_key = jax.random.split(state.key)
        state = state.replace(env_state=shard_envs(env.reset(env_key)), key=key)
        if state.return_acc is not None:  # the discounted returns of the episodes cut short
            state = state.replace(return_acc=jnp.zeros_like(state.return_acc))
        return state

    def observe(state: TrainState, obs: jax.Array) -> jax.Array:
        """What the networks see: obs normalised by the statistics frozen for this update."""
        if state.obs_stats is None:
            return obs
        return norm.normalize(state.obs_stats, obs, config.obs_clip)

    # ------------------------------------------------------------------ LOSS
    def loss_fn(params, mb: Batch, hp: HParams):
        # One call, so a network with a shared torso (the Nature CNN) runs it once per minibatch.
        dist, (value, u) = network.apply(params, mb.obs)
        log_ratio = dist.log_prob(mb.action) - mb.log_prob
        ratio = jnp.exp(log_ratio)
        entropy = dist.entropy().mean()
        v_loss = losses.value_loss(value, mb.value, mb.q_hat, value_clip).mean()
        pi_loss, head_loss, metrics = checked_loss(algorithm, algorithm.loss(config, hp, LossInputs(
            mb, log_ratio, ratio, value, u)))
        total = pi_loss + hp.vf_coef * v_loss + head_loss - hp.ent_coef * entropy
        metrics.update(
            policy_loss=pi_loss,
            approx_kl=jnp.mean((ratio - 1.0) - log_ratio),
            clip_fraction=jnp.mean((ratio < 1.0 - hp.eps_low) | (ratio > 1.0 + hp.eps_high)),
            entropy=entropy,
            value_loss=v_loss,
            loss=total,
        )
        return total, metrics

    # --------------------------------------------------------------- COLLECT
    def act(state: TrainState, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Sample from the current policy: obs [B, *O] -> (action [B] or [B, A], log_prob [B]).
        The action is the unclipped sample; the env gets ``action_to_env`` of it."""
        return act_with(state, obs, policy_noise(env.action_space, key, obs.shape[:1]))

    def act_with(state: TrainState, obs: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``act`` with the sampling noise given: noise [B, n] or [B, A] (``policy_noise``)."""
        dist = network.apply(state.params, observe(state, obs), method="policy")
        action = dist.sample_with(noise)
        return action, dist.log_prob(action)

    def collect(state: TrainState, hp: HParams) -> tuple[Transition, EnvState, jax.Array]:
        """``num_steps`` env steps with the current policy: (rollout [T, B], env state, key)."""
        def env_step(env_state, noise):
            action, log_prob = act_with(state, env_state.obs, noise)
            next_state = shard_envs(env.step(env_state, action_to_env(env.action_space, action, config.action_squash)))
            transition = Transition(
                obs=env_state.obs, action=action, log_prob=log_prob,
                reward=next_state.reward, terminated=next_state.terminated,
                truncated=next_state.truncated, final_obs=next_state.final_obs,
                done_return=next_state.done_return, done_length=next_state.done_length,
                done=next_state.done,
            )
            return next_state, transition

        # The whole rollout's sampling noise in one draw, not one small random call per step.
        key, noise_key = jax.random.split(state.key)
        noise = policy_noise(env.action_space, noise_key, (config.num_steps, env.num_envs))
        env_state, traj = jax.lax.scan(env_step, state.env_state, noise)
        return traj, env_state, key

    # ----------------------------------------------------------------- LEARN
    slots = bootstrap.truncation_slots(config.num_steps, getattr(env, "time_limit", None))

    def critic_pass(obs: jax.Array, final_obs: jax.Array, truncated: jax.Array):
        """params -> (V(obs) [T, B], V(final_obs) [T, B]) for obs, final_obs [T, B, *O]: one
        batched critic call, over the rows GAE needs (bpo_jax.bootstrap) where the env declares
        a time limit, else over every obs and final_obs."""
        shape = truncated.shape
        if slots is None:
            rows = jnp.concatenate([_flat(obs), _flat(final_obs)])
            return lambda params: network.apply(params, rows, method="values")[0].reshape((2,) + shape)
        times = bootstrap.truncation_times(truncated, slots)
        rows = _flat(bootstrap.critic_inputs(obs, final_obs, times))
        return lambda params: bootstrap.split_values(
            network.apply(params, rows, method="values")[0].reshape((-1, shape[1])), truncated)

    def learn(state: TrainState, traj: Transition, env_state: EnvState, key: jax.Array,
              hp: HParams) -> tuple[TrainState, dict]:
        """One update from a rollout ``traj`` [T, B] collected by ``state``'s policy;
        ``env_state`` and ``key`` are carried to the next update."""
        optimizer = make_optimizer(hp)

        # NORMALISE with the statistics the policy acted under; refresh them for the next update
        obs, final_obs = observe(state, traj.obs), observe(state, traj.final_obs)
        rewards = traj.reward * hp.reward_scale
        stats = {}
        if config.normalize_obs:
            stats["obs_stats"] = norm.update(state.obs_stats, _flat(traj.obs), config.obs_norm_window)
        if config.normalize_rewards:
            returns, stats["return_acc"] = norm.discounted_returns(rewards, traj.done, state.return_acc, hp.gamma)
            stats["return_stats"] = norm.update(state.return_stats, _flat(returns))
            rewards = norm.scale_rewards(stats["return_stats"], rewards, config.reward_clip)

        # CALCULATE ADVANTAGES (critic batched over the whole rollout, once)
        critic_values = critic_pass(obs, final_obs, traj.truncated)
        values, next_values = critic_values(state.params)
        advantages, q_hat = losses.gae(
            rewards, values, next_values, traj.terminated, traj.truncated, hp.gamma, hp.gae_lambda,
        )
        batch = algorithm.prepare(config, Batch(
            obs=_flat(obs), action=_flat(traj.action), log_prob=_flat(traj.log_prob),
            value=_flat(values), advantage=_flat(advantages), q_hat=_flat(q_hat),
        ))

        def recompute(flat_params) -> tuple[jax.Array, jax.Array]:
            """rsl_rl BPO's per-epoch refresh: (value [N], q_hat [N]), values and GAE returns
            from the critic at ``flat_params`` [P].  The advantages stay the rollout's, and so do
            the time-out bootstraps (rsl_rl adds gamma V_old to a time-out's reward as it collects)."""
            v, nv = critic_values(unravel(flat_params))
            nv = jnp.where(traj.truncated, next_values, nv)
            _, q = losses.gae(rewards, v, nv, traj.terminated, traj.truncated, hp.gamma, hp.gae_lambda)
            return _flat(v), _flat(q)

        # UPDATE NETWORK: epochs x minibatches.  The optimiser works on the parameters raveled
        # into one vector [P]: clipping and Adam are then a few kernels over one array instead of
        # a few per layer, which is most of a small network's step time on a CPU
        # (benchmarks/where_time_goes.py).  The gradient is the same; its global norm is summed
        # in another order (float rounding).
        flat_params, unravel = ravel_pytree(state.params)
        flat_loss = lambda p, mb: loss_fn(unravel(p), mb, hp)

        def minibatch_step(carry, mb):
            params, opt_state = carry  # params: [P]
            if adaptive_lr:  # set this step's lr from KL(pi_old || pi_current) on the minibatch, as rsl_rl
                kl = lr_schedule.policy_kl(network.apply(state.params, mb.obs, method="policy"),
                                           network.apply(unravel(params), mb.obs, method="policy")).mean()
                lr = lr_schedule.adapt_lr(lr_schedule.get_lr(opt_state), kl, config.desired_kl)
                opt_state = lr_schedule.set_lr(opt_state, lr)
            (_, metrics), grads = jax.value_and_grad(flat_loss, has_aux=True)(params, mb)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            metrics["grad_norm"] = jnp.linalg.norm(grads)
            if adaptive_lr:
                metrics.update(policy_kl=kl, lr=lr)
            return (params + updates, opt_state), metrics

        def minibatches(b: Batch, perm: jax.Array) -> Batch:
            """``b`` [N] in the order ``perm`` [N], as [M, N/M] minibatches.  A global permutation
            of the flat batch, as on one device: with the batch split over devices, ``x[perm]``
            makes XLA move the rollout between devices (a gather of the whole batch, once per
            epoch).  Correct and identical to the 1-device run; a per-device shuffle would avoid
            the traffic but change which samples meet."""
            return jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:]), b)

        def epoch(carry, perm):
            return jax.lax.scan(minibatch_step, carry, minibatches(batch, perm))

        def epoch_recomputing(carry, perm):
            """An epoch as rsl_rl BPO's: on the last minibatch, already sliced, values and
            returns are recomputed before its step (the critic M-1 steps into the epoch), and
            reach the next epoch's minibatches.  ``carry``: (params and optimiser state, the
            epoch's (value [N], q_hat [N]))."""
            optimised, (value, q_hat) = carry

            def step(c, xs):
                (optimised, targets), (i, mb) = c, xs
                targets = jax.lax.cond(i == config.num_minibatches - 1, lambda: recompute(optimised[0]),
                                       lambda: targets)
                optimised, metrics = minibatch_step(optimised, mb)
                return (optimised, targets), metrics

            shuffled = minibatches(batch.replace(value=value, q_hat=q_hat), perm)
            return jax.lax.scan(step, (optimised, (value, q_hat)), (jnp.arange(config.num_minibatches), shuffled))

        key, shuffle_key = jax.random.split(key)
        perms = shuffle.epoch_permutations(shuffle_key, config.num_epochs, config.batch_size,
                                           config.reshuffle_each_epoch)  # [E, N]
        if config.recompute_returns:
            ((flat_params, opt_state), _), loss_metrics = jax.lax.scan(
                epoch_recomputing, ((flat_params, state.opt_state), (batch.value, batch.q_hat)), perms)
        else:
            (flat_params, opt_state), loss_metrics = jax.lax.scan(epoch, (flat_params, state.opt_state), perms)
        params = unravel(flat_params)

        # METRICS: one small row per update
        # An episode's statistics are reported where done_length > 0: for every suite that is where
        # done is true, except Atari, whose life losses end the learner's episode but not the game.
        ended = traj.done_length > 0
        episodes = ended.sum()
        metrics = jax.tree.map(jnp.mean, loss_metrics)
        if adaptive_lr:
            metrics["lr"] = lr_schedule.get_lr(opt_state)  # the lr the next update starts from
        metrics.update(
            episodes=episodes,
            episode_return_mean=_masked_mean(traj.done_return, ended, episodes),
            episode_length_mean=_masked_mean(traj.done_length.astype(jnp.float32), ended, episodes),
            value_mean=values.mean(),
            # A NaN/Inf anywhere in a loss or gradient reaches these means; parameters can only
            # turn non-finite through a non-finite gradient.
            nonfinite=~(jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])),
            # The env's own output, so that a NaN it returned is named as its, not the learner's.
            env_nonfinite=~(jnp.isfinite(traj.reward).all() & _finite(traj.obs) & _finite(traj.final_obs)),
        )
        if slots is not None:  # the env's declared time limit was broken: a bootstrap value is missing
            metrics["bootstrap_overflow"] = bootstrap.overflow(traj.truncated, slots)
        new_state = state.replace(
            params=params, opt_state=opt_state, env_state=env_state, key=key, update=state.update + 1, **stats
        )
        return new_state, metrics

    def update(state: TrainState, hp: HParams) -> tuple[TrainState, dict]:
        """Collect a rollout, then learn from it."""
        return learn(state, *collect(state, hp), hp)

    def update_chunk(state: TrainState, hp: HParams, num: int) -> tuple[TrainState, dict]:
        """``num`` updates in one scan; metrics stacked to [num]."""
        return jax.lax.scan(lambda s, _: update(s, hp), state, None, length=num)

    # ----------------------------------------------------------------- TRAIN
    def train(key: jax.Array, hp: HParams | None = None) -> tuple[TrainState, dict]:
        """The whole run: returns the final state and metrics of shape [num_updates]."""
        if not isinstance(key, jax.Array):
            raise TypeError(f"train takes a PRNG key (jax.random.key(seed)), got {type(key).__name__}")
        if hp is not None and not isinstance(hp, HParams):
            raise TypeError(f"train's hp must be HParams (Config.hparams(), HParams.stack), got {type(hp).__name__}")
        shapes = {jnp.shape(x) for x in jax.tree.leaves(hp)}
        if hp is not None and shapes != {()}:  # traced under jax.vmap, a stacked grid's leaves are scalars
            raise ValueError(f"train's hp must hold one scalar per field, got shapes {sorted(shapes)}: train a "
                             "stacked grid (HParams.stack) under jax.vmap(train, in_axes=(None, 0))")
        hp = config.hparams() if hp is None else hp
        return update_chunk(init(key, hp), hp, num_updates)

    at = config.with_precision  # every program built from these traces at the run's matmul precision
    return Trainer(init=at(init), restart_envs=at(restart_envs), act=at(act), collect=at(collect), learn=at(learn),
                   update=at(update), update_chunk=at(update_chunk), train=at(train), num_updates=num_updates,
                   config=config, env=env)


def check_loss(config: Config, env: Env) -> None:
    """Trace ``config``'s algorithm's loss once on a minibatch of ``env``'s shapes (nothing is
    computed): a loss that breaks the contract (:func:`bpo_jax.algorithms.checked_loss`)
    raises its one-line error here, before a run directory exists."""
    n, space = config.minibatch_size, env.action_space
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    action = jax.ShapeDtypeStruct((n,), jnp.int32) if isinstance(space, Discrete) else f32(n, *space.shape)
    batch = Batch(obs=f32(n, *env.obs_spec.shape), action=action, log_prob=f32(n), value=f32(n), advantage=f32(n),
                  q_hat=f32(n))
    algorithm = config.algorithm
    try:
        jax.eval_shape(lambda x, hp: checked_loss(algorithm, algorithm.loss(config, hp, x)),
                       LossInputs(batch, f32(n), f32(n), f32(n), f32(n)), config.hparams())
    except LossContractError:
        raise
    except Exception as e:  # a plug-in's own error while tracing: a full traceback said no more than this
        raise LossContractError(f"algorithm {algorithm.name}'s loss failed while traced on the minibatch's "
                                f"shapes{contract.raised_in(e, type(algorithm).loss)}") from None


def make_train(config: Config, env: Env | None = None) -> Callable[..., tuple[TrainState, dict]]:
    """``train(key, hp=None) -> (final TrainState, metrics [num_updates])``, pure and jittable."""
    return make_trainer(config, env).train


def _finite(x: jax.Array) -> jax.Array:
    """Whether every element of ``x`` is finite (integer frames always are)."""
    return jnp.isfinite(x).all() if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)


def _masked_mean(x: jax.Array, mask: jax.Array, count: jax.Array) -> jax.Array:
    """Mean of x where mask, NaN when nothing is masked in (no episode ended)."""
    return jnp.where(count > 0, jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(count, 1), jnp.nan)
