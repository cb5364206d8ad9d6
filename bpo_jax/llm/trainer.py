"""Fine-tune the small transformer on the addition task: a supervised warm start to partial
accuracy, then GBPO or GRPO with verifiable rewards or test-time RL (TTRL).

One RL step: draw P prompts, sample G responses each (P x N for TTRL, of which the first M are
trained on), score them on the host, compute group advantages (and GBPO target logits), then
run ``epochs`` passes of ``minibatches`` Adam steps over that fixed batch with the sampling
policy's log-probs held fixed.  Sampling, scoring of old/reference log-probs and the whole
multi-epoch update are each one jitted function; the batch is sharded over the devices along
one ``data`` mesh axis (parameters replicated), as in :mod:`bpo_jax.runner`.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import time
import typing
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bpo_jax import shuffle, threefry_cpu
from bpo_jax.config import plain_fields, type_error
from bpo_jax.errors import float_settings_problem, what_stopped
from bpo_jax.llm import groups, losses, rewards, task
from bpo_jax.llm.model import ModelConfig, make_model
from bpo_jax.llm.sampling import LanguageModel, SamplingConfig, generate, token_log_probs

threefry_cpu.install()  # sampling draws a key per prompt: one kernel per draw on XLA:CPU (same bits)

DATA_AXIS = "data"
# Float settings that may be infinite (max_grad_norm = inf: no clipping), as in bpo_jax.config.
_MAY_BE_INFINITE = ("max_grad_norm",)


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(LLMConfig)
# Rollout temperatures below this are refused: float32 rounding of the logits, divided by the
# temperature, moves the log-probs of an unchanged policy (measured on a CPU, 1 layer, d_model 16:
# ratios of a policy to itself up to 1.005 at 1e-5, 1.04 at 1e-6, 1.5 at 1e-7, NaN from about 1e-10).
MIN_TEMPERATURE = 1e-5


class NonFiniteError(FloatingPointError):
    """A loss, gradient or parameter became NaN or Inf: the run stops there (continuing would
    only train on NaN).  The message names the phase, step and seed, and a remedy, with the
    settings in backticks (`lr`) as :meth:`LLMConfig.validate` writes them."""

    def __init__(self, message: str, phase: str, step: int, seed: int):
        super().__init__(message)
        self.phase = phase  # "warm start" or "RL"
        self.step = step  # 1-based step of that phase at whose report the NaN was seen
        self.seed = seed


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    """Everything a run depends on (frozen: the jitted functions close over it).  The command
    line (``bpo-jax llm``) starts from a smaller, CPU-sized setting instead of these defaults:
    ``lr`` 1e-4, ``num_layers`` 1, ``num_eval`` 64, ``num_train`` 2048, ``fast_compile`` on
    (``bpo-jax llm --help`` lists each)."""

    algo: str = "gbpo"
    """'gbpo' or 'grpo'."""
    ttrl: bool = False
    """Test-time RL: train on the evaluation prompts with majority-vote pseudo-labels, no true labels."""
    seed: int = 0
    """Seed of the parameters, the sampling and the RL prompt order (the problem sets use data_seed)."""
    data_seed: int = 1234
    """Seed of the training pool and evaluation problems (shared across seeds, so they compare)."""
    epochs: int = 5
    """Passes over each sampled batch (the paper's ppo_epochs: 1, 5 or 10)."""
    clip: float = 0.2
    """c_low, the box's lower offset: ratios are bounded to [1 - clip, 1 + clip_high]."""
    clip_high: Optional[float] = None
    """c_high; None: the same as clip (the paper's 0.2/0.2 and 0.3/0.3)."""
    minibatches: int = 4
    """Adam steps per epoch; the batch is shuffled and split into this many minibatches."""
    lr: float = 1e-3
    """Adam learning rate of the RL phase."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    rl_steps: int = 30
    """Number of RL steps (sample, score, update)."""
    prompts_per_step: int = 16
    """P: prompts per RL step."""
    group_size: int = 8
    """G: responses per prompt (verifiable-reward mode)."""
    ttrl_votes: int = 16
    """N: responses per prompt sampled for the TTRL vote (the paper: 64)."""
    ttrl_train: int = 8
    """M: the first M of the N are trained on (the paper: 32)."""
    temperature: float = 1.0
    """Rollout temperature (the paper: 1.0); old log-probs use the same temperature."""
    top_p: float = 1.0
    """Rollout nucleus threshold (1: off)."""
    gbpo_temperature: float = 1e-4
    """tau of the GBPO target logit (the paper's TTRL scripts: 1e-4, a near-binary target)."""
    kl_coef: float = 0.001
    """Weight of the KL penalty to the warm-start policy (the paper: 0.001, low_var_kl)."""
    kl_type: str = "low_var_kl"
    """'k1' or 'low_var_kl'."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    agg_mode: str = "token-mean"
    """Loss aggregation: token-mean, seq-mean-token-mean or seq-mean-token-sum."""
    eval_every: int = 5
    """Greedy accuracy on the evaluation set every this many RL steps (and at the start and end)."""
    num_eval: int = 256
    """Evaluation problems (held out from the training pool; the TTRL training prompts)."""
    num_train: int = 4096
    """Training pool of the warm start (and of the RL prompts when rl_on_eval is False)."""
    rl_on_eval: bool = True
    """Verifiable-reward RL draws its prompts from the evaluation problems, as the paper's test-time
    setting does (AIME: the same 30 problems for training and test); False: from the training pool,
    which measures generalisation to unseen problems and needs far more RL steps."""
    warm_target: float = 0.2
    """The warm start stops once greedy accuracy on a dev split of the training pool (problems it
    trains on: held-out accuracy is lower) reaches this, or after ``warm_max_steps``."""
    warm_max_steps: int = 4000
    """Upper limit on warm-start steps."""
    warm_lr: float = 1e-3
    """Adam learning rate of the warm start."""
    warm_batch: int = 64
    """Warm-start minibatch size."""
    warm_check_every: int = 25
    """Warm-start steps between accuracy checks."""
    d_model: int = 64
    """Transformer width."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    fast_compile: bool = False
    """Compile with XLA's cheap settings (:data:`bpo_jax.runner.FAST_COMPILE`): about half the
    compile time on a CPU, slower steps; for tests and short runs."""
    matmul_precision: str = "highest"
    """float32 matmuls on GPUs and TPUs, as the RL runs' ``matmul_precision``: highest, high or
    default (TF32 on NVIDIA GPUs, whose noise in the logits moves the ratios the clip box and GBPO's
    target act on); no effect on CPUs."""

    def jit(self, fn: Callable, **kwargs) -> Callable:
        """``jax.jit`` with this run's compiler options and matmul precision."""
        from bpo_jax.config import at_precision

        if self.fast_compile:
            from bpo_jax.runner import FAST_COMPILE

            kwargs["compiler_options"] = FAST_COMPILE
        return jax.jit(at_precision(self.matmul_precision, fn), **kwargs)

    @property
    def loss_config(self) -> losses.LossConfig:
        return losses.LossConfig(algo=self.algo, clip_low=self.clip,
                                 clip_high=self.clip if self.clip_high is None else self.clip_high,
                                 kl_coef=self.kl_coef, kl_type=self.kl_type, ent_coef=self.ent_coef,
                                 agg_mode=self.agg_mode)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(vocab_size=task.VOCAB_SIZE, max_len=task.PROMPT_LEN + task.MAX_ANSWER_LEN,
                           d_model=self.d_model, num_layers=self.num_layers, num_heads=self.num_heads)

    @property
    def batch_size(self) -> int:
        """Responses trained on per RL step."""
        return self.prompts_per_step * (self.ttrl_train if self.ttrl else self.group_size)

    def __post_init__(self):
        plain_fields(self)  # np.float32(3e-4) is 3e-4 to every check and to config.json

    def validate(self, num_devices: int = 1) -> "LLMConfig":
        """Raise ValueError with a one-line message on a bad setting.  The message names the
        fields in backticks (`rl_steps`), for a front end to reword into its own names
        (:mod:`bpo_jax.llm.cli` writes the flags)."""
        from bpo_jax.config import MATMUL_PRECISIONS
        from bpo_jax.errors import unknown_name

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        hints = _hints()
        for f in dataclasses.fields(self):  # a float where a size goes fails deep inside JAX, after `out` exists
            message = type_error(f"`{f.name}`", getattr(self, f.name), hints[f.name])
            if message is not None:
                raise TypeError(message)
        for name, valid in (("algo", losses.ALGOS), ("kl_type", losses.KL_TYPES), ("agg_mode", losses.AGG_MODES),
                            ("matmul_precision", MATMUL_PRECISIONS)):
            need(getattr(self, name) in valid, unknown_name(f"`{name}`", getattr(self, name), valid))
        problem = float_settings_problem(self, _MAY_BE_INFINITE)  # before the range checks below
        need(problem is None, problem)
        positive = ("epochs", "minibatches", "rl_steps", "prompts_per_step", "group_size", "ttrl_votes",
                    "ttrl_train", "eval_every", "num_eval", "num_train", "warm_batch", "warm_check_every",
                    "d_model", "num_layers", "num_heads")
        for name in positive:
            need(getattr(self, name) >= 1, f"`{name}` must be >= 1, got {getattr(self, name)}")
        need(self.warm_max_steps >= 0, f"`warm_max_steps` must be >= 0, got {self.warm_max_steps}")
        # The advantages are relative to the group's other responses: a group of one learns nothing.
        group = "ttrl_train" if self.ttrl else "group_size"
        need(getattr(self, group) >= 2, f"`{group}` must be >= 2 (the advantages compare a prompt's responses), "
                                        f"got {getattr(self, group)}")
        # Sizes and loop bounds reach JAX as int32 (scan lengths, shapes): from 2**31 on a run fails
        # half-way (`epochs` 3e9: an OverflowError after the warm start), as `bpo-jax train` refuses
        # its sizes.  The host-side counts (rl_steps, warm_max_steps, ...) take the same bound, far
        # past any run: one rule for every count.
        for name in (*positive, "warm_max_steps"):
            need(getattr(self, name) < 2**31, f"`{name}` must be below 2**31, got {getattr(self, name):,}")
        for name in ("seed", "data_seed"):  # numpy's generators take no negative seed, JAX's keys none >= 2**63
            need(0 <= getattr(self, name) < 2**32, f"`{name}` must be in [0, 2**32), got {getattr(self, name)}")
        for name in ("lr", "warm_lr", "gbpo_temperature", "max_grad_norm", "temperature"):
            need(getattr(self, name) > 0, f"`{name}` must be > 0, got {getattr(self, name)}")
        need(0 <= self.clip < 1, f"`clip` must be in [0, 1), got {self.clip}")
        need(self.clip_high is None or self.clip_high >= 0, f"`clip_high` must be >= 0, got {self.clip_high}")
        need(0 < self.top_p <= 1, f"`top_p` must be in (0, 1], got {self.top_p}")
        need(np.float32(self.clip) < 1, f"`clip` must be in [0, 1), got {self.clip}, which float32 (the run's "
                                        f"precision) rounds to 1")
        need(self.temperature >= MIN_TEMPERATURE,
             f"`temperature` must be >= {MIN_TEMPERATURE:g}: below it float32 rounding of the logits, divided by the "
             f"temperature, swamps the log-probs (NaN from about 1e-10), got {self.temperature}")
        for name in ("kl_coef", "ent_coef"):
            need(getattr(self, name) >= 0, f"`{name}` must be >= 0, got {getattr(self, name)}")
        need(0 <= self.warm_target <= 1, f"`warm_target` must be in [0, 1], got {self.warm_target}")
        need(self.d_model % self.num_heads == 0,
             f"`d_model` must be a multiple of {self.num_heads} (the attention heads), got {self.d_model}")
        # A setting the chosen mode never reads is refused, not silently ignored (as Config does).
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        unused = ("group_size",) if self.ttrl else ("ttrl_votes", "ttrl_train")
        for name in unused:
            need(getattr(self, name) == defaults[name],
                 f"`{name}` applies only {'without' if self.ttrl else 'with'} `ttrl`; leave it at its default "
                 f"({defaults[name]})" + (" (TTRL samples `ttrl_votes` responses per prompt)" if self.ttrl else ""))
        need(self.algo == "gbpo" or self.gbpo_temperature == defaults["gbpo_temperature"],
             f"`gbpo_temperature` applies only with `algo` gbpo (its target's temperature), not {self.algo}")
        need(self.kl_coef > 0 or self.kl_type == defaults["kl_type"],
             f"`kl_type` {self.kl_type} has no effect with `kl_coef` 0; set `kl_coef` > 0 or leave `kl_type`")
        need(not self.ttrl or self.ttrl_train <= self.ttrl_votes,
             f"`ttrl_train` ({self.ttrl_train}) must be <= `ttrl_votes` ({self.ttrl_votes}): the responses trained "
             f"on are the first of those voted on")
        need(self.num_eval <= 10000 - self.num_train,
             f"`num_eval` must be <= {10000 - self.num_train}, got {self.num_eval}: the 10000 distinct two-digit "
             f"additions also hold the {self.num_train} training problems")
        need(not (self.ttrl or self.rl_on_eval) or self.prompts_per_step <= self.num_eval,
             f"`prompts_per_step` ({self.prompts_per_step}) must be <= `num_eval` ({self.num_eval}): the RL "
             f"prompts are drawn from the evaluation problems")
        need(self.ttrl or self.rl_on_eval or self.prompts_per_step <= self.num_train,
             f"`prompts_per_step` ({self.prompts_per_step}) must be <= `num_train` ({self.num_train}): the RL "
             f"prompts are drawn from the training pool")
        per_prompt = "ttrl_train" if self.ttrl else "group_size"
        need(self.batch_size % (self.minibatches * num_devices) == 0,
             f"the batch of `prompts_per_step` x `{per_prompt}` = {self.batch_size} responses must divide into "
             f"`minibatches` ({self.minibatches}) x {num_devices} device(s)")
        sampled = self.prompts_per_step * (self.ttrl_votes if self.ttrl else self.group_size)
        need(sampled < 2**31, f"`prompts_per_step` x `{'ttrl_votes' if self.ttrl else 'group_size'}` = {sampled:,} "
             f"sampled responses per step must be below 2**31 (the rows of the step's arrays)")
        need(self.epochs * self.batch_size < 2**31,
             f"`epochs` x the batch of {self.batch_size} responses = {self.epochs * self.batch_size:,} shuffled "
             f"indices per update must be below 2**31 (one int32 array); lower `epochs`")
        need(sampled % num_devices == 0,
             f"`prompts_per_step` x `{'ttrl_votes' if self.ttrl else 'group_size'}` = {sampled} sampled responses "
             f"must divide over {num_devices} device(s)")
        self.loss_config.validate()  # a safety net: the checks above cover it
        return self


# ----------------------------------------------------------------------------------------------
# Data and evaluation


@dataclasses.dataclass
class Problems:
    """The fixed problem sets of a run."""

    train_prompts: np.ndarray  # [num_train, 6]
    train_answers: np.ndarray  # [num_train]
    eval_prompts: np.ndarray  # [num_eval, 6]


def make_problem_sets(cfg: LLMConfig) -> Problems:
    eval_prompts, eval_ops = task.make_problems(cfg.data_seed, cfg.num_eval)
    train_prompts, train_ops = task.make_problems(cfg.data_seed + 1, cfg.num_train, exclude=eval_ops)
    return Problems(train_prompts, train_ops.sum(1).astype(np.int32), eval_prompts)


def make_mesh(devices=None) -> Mesh:
    """1-D mesh over all devices along DATA_AXIS (one device on a CPU)."""
    return Mesh(np.array(list(jax.devices() if devices is None else devices)), (DATA_AXIS,))


@functools.lru_cache(maxsize=8)
def greedy_generator(model_cfg: ModelConfig, fast_compile: bool = False, matmul_precision: str = "highest") -> Callable:
    """Jitted ``(params, prompts) -> greedy response tokens``, one per model size (and compile
    settings, :meth:`LLMConfig.jit`), shared by the warm start and the RL loop so that each
    compiles it once."""
    model, _ = make_model(model_cfg)
    greedy = SamplingConfig(task.MAX_ANSWER_LEN, temperature=0.0, end_token=task.END, pad_token=task.PAD)
    return LLMConfig(fast_compile=fast_compile, matmul_precision=matmul_precision).jit(
        lambda p, x: generate(model, p, x, jax.random.key(0), greedy).tokens)


def greedy_accuracy(cfg: LLMConfig, params, prompts: np.ndarray) -> float:
    """Fraction of prompts whose greedy answer is a + b, under ``cfg``'s model and compile settings."""
    generator = greedy_generator(cfg.model_config, cfg.fast_compile, cfg.matmul_precision)
    responses = np.asarray(generator(params, jnp.asarray(prompts)))
    return float(rewards.score(task.reward, prompts, responses).mean())


# ----------------------------------------------------------------------------------------------
# Supervised warm start


def warm_start(cfg: LLMConfig, problems: Problems, log: Callable[[str], None] = lambda s: None,
               mesh: Optional[Mesh] = None) -> tuple[Any, dict]:
    """Teacher-forced cross-entropy on (prompt, answer) pairs of the training pool until greedy
    accuracy on a 256-problem dev split of the pool reaches ``warm_target`` (checked every
    ``warm_check_every`` steps) or ``warm_max_steps`` pass.

    Returns:
      (params, info) with info = {"steps", "dev_accuracy", "seconds"}.
    """
    model, init = make_model(cfg.model_config)
    key = jax.random.key(cfg.seed)
    replicated = NamedSharding(mesh or make_mesh(), P())
    params = jax.device_put(cfg.jit(init)(jax.random.fold_in(key, 0)), replicated)
    tokens, mask = task.answer_tokens(problems.train_answers)
    prompts = problems.train_prompts
    dev = prompts[:256]
    opt = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.warm_lr))
    opt_state = jax.device_put(opt.init(params), replicated)

    @functools.partial(cfg.jit, out_shardings=replicated)
    def step(params, opt_state, x, y, m):
        def loss_fn(p):
            logp, _ = token_log_probs(model, p, x, y)
            return -(logp * m).sum() / m.sum()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = prompt_stream(cfg.seed, "warm")
    t0, acc, n = time.perf_counter(), greedy_accuracy(cfg, params, dev), 0
    while acc < cfg.warm_target and n < cfg.warm_max_steps:
        for _ in range(cfg.warm_check_every):
            idx = rng.integers(0, len(prompts), cfg.warm_batch)
            params, opt_state, loss = step(params, opt_state, prompts[idx], tokens[idx], mask[idx])
            n += 1
        loss = float(loss)  # the one value fetched per check: NaN parameters keep the last loss NaN
        if not math.isfinite(loss):
            raise NonFiniteError(f"non-finite loss in the warm start by step {n} (seed {cfg.seed}); lower "
                                 f"`max_grad_norm` (clip harder) or `warm_lr`", "warm start", n, cfg.seed)
        acc = greedy_accuracy(cfg, params, dev)
        log(f"warm start step {n}: loss {loss:.3f}, dev accuracy {acc:.3f}")
    if acc < cfg.warm_target:
        log(f"note: the warm start reached dev accuracy {acc:.3f}, not `warm_target` {cfg.warm_target:g}, in its "
            f"`warm_max_steps` {cfg.warm_max_steps} steps; RL goes on from there")
    return params, {"steps": n, "dev_accuracy": acc, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------
# RL


def make_rl_functions(cfg: LLMConfig, model: LanguageModel, mesh: Mesh):
    """The jitted pieces of an RL step, for any ``model``: (sample, score, advantages, update,
    opt, place, replicated): the optax optimiser, a function that puts a host batch's rows on
    the mesh, and the replicated sharding."""
    lcfg = cfg.loss_config
    rows = P(DATA_AXIS)
    data = NamedSharding(mesh, rows)
    replicated = NamedSharding(mesh, P())
    samp = SamplingConfig(task.MAX_ANSWER_LEN, temperature=cfg.temperature, top_p=cfg.top_p,
                          end_token=task.END, pad_token=task.PAD)
    opt = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr))

    @cfg.jit
    def sample(params, prompts, key):
        """[n, 6] prompts (already repeated per response) -> tokens [n, R], mask [n, R]."""
        prompts = jax.lax.with_sharding_constraint(prompts, data)
        g = generate(model, params, prompts, key, samp)
        return g.tokens, g.mask

    @cfg.jit
    def score(params, prompts, responses):
        """Teacher-forced log-probs under ``params`` (old or reference policy): [n, R]."""
        return token_log_probs(model, params, prompts, responses, cfg.temperature)[0]

    @cfg.jit
    def advantages(r, group_ids):
        return groups.grpo_advantages(r, group_ids), groups.gbpo_target_logits(r, group_ids, cfg.gbpo_temperature)

    def loss_fn(params, mb):
        logp, ent = token_log_probs(model, params, mb["prompts"], mb["tokens"], cfg.temperature)
        inputs = losses.LossInputs(logp, mb["old_logp"], mb["ref_logp"], ent, mb["mask"], mb["adv"], mb["target"])
        return losses.policy_loss(inputs, lcfg)

    # Pinned output shardings: the parameters come back exactly as they went in (replicated),
    # so the next step's calls hit the compiled programs instead of recompiling for a new layout.
    @functools.partial(cfg.jit, out_shardings=(replicated, replicated, replicated, replicated))
    def update(params, opt_state, batch, key):
        """``epochs`` x ``minibatches`` Adam steps on one batch; old log-probs stay fixed.

        Returns (params, opt_state, metrics [epochs, minibatches], final ratio bound fractions)."""
        batch = jax.lax.with_sharding_constraint(batch, jax.tree.map(lambda _: data, batch))
        n = batch["tokens"].shape[0]

        def minibatch(carry, mb):
            params, opt_state = carry
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb)
            updates, opt_state = opt.update(grads, opt_state, params)
            metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry, perm):
            mbs = jax.tree.map(lambda x: x[perm].reshape(cfg.minibatches, n // cfg.minibatches, *x.shape[1:]), batch)
            return jax.lax.scan(minibatch, carry, mbs)

        (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), shuffle.permutations(key, cfg.epochs, n))
        # Where the whole batch's ratio ended up after all epochs: the drift the box should limit.
        new_logp, _ = token_log_probs(model, params, batch["prompts"], batch["tokens"], cfg.temperature)
        final = losses.ratio_bound_fractions(new_logp, batch["old_logp"], batch["mask"], lcfg.clip_low, lcfg.clip_high)
        return params, opt_state, metrics, final

    place = lambda tree: jax.device_put(tree, jax.tree.map(lambda _: data, tree))
    return sample, score, advantages, update, opt, place, replicated


CSV_FIELDS = ("step", "accuracy", "sample_reward", "sample_accuracy", "label_accuracy", "ratio_out_frac",
              "ratio_out_frac_final", "ratio_out_low_frac_final", "ratio_out_high_frac_final", "ratio_max",
              "kl", "entropy", "pg_loss", "grad_norm", "seconds")


def prompt_stream(seed: int, phase: str) -> np.random.Generator:
    """The generator of a seed's warm-start batches (``phase`` "warm") or RL prompts ("rl"),
    each its own stream: the RL phase's default_rng(seed + 1) was the next seed's warm start."""
    return np.random.default_rng(seed) if phase == "warm" else np.random.default_rng([seed, 1])


def rl_train(cfg: LLMConfig, params, problems: Problems, log: Callable[[str], None] = lambda s: None,
             mesh: Optional[Mesh] = None) -> tuple[Any, list[dict]]:
    """The RL phase from ``params`` (also the KL reference).  Returns (params, history rows)."""
    mesh = mesh or make_mesh()
    cfg.validate(mesh.size)
    model, _ = make_model(cfg.model_config)
    sample, score, advantages, update, opt, place, replicated = make_rl_functions(cfg, model, mesh)
    params = jax.device_put(params, replicated)
    ref_params = params
    opt_state = jax.device_put(opt.init(params), replicated)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    rng = prompt_stream(cfg.seed, "rl")
    pool = problems.eval_prompts if cfg.ttrl or cfg.rl_on_eval else problems.train_prompts
    per_prompt = cfg.ttrl_votes if cfg.ttrl else cfg.group_size
    history = []
    t0 = time.perf_counter()
    row = {"step": 0, "accuracy": greedy_accuracy(cfg, params, problems.eval_prompts)}
    history.append(row)
    log(f"step 0: accuracy {row['accuracy']:.3f}")
    for step in range(1, cfg.rl_steps + 1):
        key, k_sample, k_update = jax.random.split(key, 3)
        prompts = pool[rng.choice(len(pool), cfg.prompts_per_step, replace=False)]
        rep = np.repeat(prompts, per_prompt, axis=0)  # prompt-major: the responses of prompt i are rows i*G..
        tokens, mask = jax.device_get(sample(params, place(jnp.asarray(rep)), k_sample))
        true_r = rewards.score(task.reward, rep, tokens)
        row = {"step": step, "sample_accuracy": float(true_r.mean())}
        if cfg.ttrl:
            answers = [task.extract_answer(t) for t in tokens]
            tb = rewards.ttrl_rewards(answers, cfg.prompts_per_step, cfg.ttrl_votes, cfg.ttrl_train)
            rep, tokens, mask, r, gid = rep[tb.index], tokens[tb.index], mask[tb.index], tb.rewards, tb.group_ids
            truth = [task.true_answer(p) for p in prompts]
            row["label_accuracy"] = float(np.mean([l == t for l, t in zip(tb.labels, truth)]))
        else:
            r, gid = true_r, np.arange(len(rep)) // per_prompt
        adv, target = advantages(jnp.asarray(r), jnp.asarray(gid))
        batch = place({"prompts": jnp.asarray(rep), "tokens": jnp.asarray(tokens), "mask": jnp.asarray(mask),
                       "adv": adv, "target": target})
        batch["old_logp"] = score(params, batch["prompts"], batch["tokens"])
        batch["ref_logp"] = score(ref_params, batch["prompts"], batch["tokens"]) if cfg.kl_coef else batch["old_logp"]
        params, opt_state, metrics, final = update(params, opt_state, batch, k_update)
        # The update's metrics are of the parameters before each minibatch's Adam step, so the
        # last one's result is seen only here: the new policy's log-probs of this batch (finite
        # parameters can still give NaN log-probs, e.g. after a step of `lr` 1e30).  `score` is
        # already compiled for this batch; the update program stays as it is.
        new_logp = score(params, batch["prompts"], batch["tokens"])
        metrics, final, new_logp = jax.device_get((metrics, final, new_logp))
        check_finite({**metrics, "new_log_probs": new_logp}, step, cfg.seed)
        row.update(sample_reward=float(r.mean()), ratio_out_frac=float(metrics["ratio_out_frac"].mean()),
                   ratio_out_frac_final=float(final["ratio_out_frac"]),
                   ratio_out_low_frac_final=float(final["ratio_out_low_frac"]),
                   ratio_out_high_frac_final=float(final["ratio_out_high_frac"]),
                   ratio_max=float(metrics["ratio_max"].max()), kl=float(metrics["kl"][-1].mean()),
                   entropy=float(metrics["entropy"][-1].mean()), pg_loss=float(metrics["pg_loss"][-1].mean()),
                   grad_norm=float(metrics["grad_norm"].mean()))
        if step % cfg.eval_every == 0 or step == cfg.rl_steps:
            row["accuracy"] = greedy_accuracy(cfg, params, problems.eval_prompts)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if "accuracy" in row:
            log(f"step {step}: accuracy {row['accuracy']:.3f}, sample reward {row['sample_reward']:.3f}, "
                f"ratio out of box {row['ratio_out_frac_final']:.3f}")
    return params, history


def check_finite(metrics: dict, step: int, seed: int) -> None:
    """Raise :class:`NonFiniteError` if RL step ``step``'s update met a NaN or Inf, from the host
    copies of its logged ``metrics`` ([epochs, minibatches] per name: the loss and gradient norm
    of every minibatch, KL, entropy, ratios), which are fetched for the CSV anyway, and of the
    log-probs the updated policy gives the batch (:func:`rl_train` adds them): parameters that
    turned NaN in a minibatch show up in the next one's loss, those of the last minibatch only
    there.  (Any further output of the update program, e.g. a finite flag over the parameters,
    changes how XLA compiles the update, and with it the run's rounding.)"""
    if not all(np.isfinite(v).all() for v in metrics.values()):
        raise NonFiniteError(f"non-finite loss, gradient or parameters at RL step {step} (seed {seed}); lower "
                             f"`lr` or `max_grad_norm` (clip harder), or the loss weights `ent_coef` and `kl_coef`",
                             "RL", step, seed)


# ----------------------------------------------------------------------------------------------
# Output


def write_csv(path: str, history: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row.get(k, "")) for k in CSV_FIELDS})


def plot(path: str, histories: dict[str, list[dict]], title: str = "", format: Optional[str] = None) -> None:
    """Accuracy and the end-of-update fraction of tokens outside the ratio box, per run."""
    from bpo_jax import reporting

    plt = reporting.pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, hist in histories.items():
        acc = [(h["step"], h["accuracy"]) for h in hist if h.get("accuracy") is not None]
        ax1.plot(*zip(*acc), marker="o", ms=3, label=label)
        frac = [(h["step"], h["ratio_out_frac_final"]) for h in hist if h.get("ratio_out_frac_final") is not None]
        if frac:
            ax2.plot(*zip(*frac), label=label)
    ax1.set(xlabel="RL step", ylabel="greedy accuracy (eval set)")
    ax2.set(xlabel="RL step", ylabel="tokens with ratio outside box")
    ax1.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format=format)
    plt.close(fig)


RUNNING_NOTE = ("the run has not finished (still running, or killed); an llm run cannot resume: start it again "
                "with `overwrite`")


def run(cfg: LLMConfig, seeds: int, out: str, log: Callable[[str], None] = print, *, overwrite: bool = False,
        words: Callable[[str], str] = lambda text: text.replace("`", "")) -> dict:
    """Warm start and RL for seeds cfg.seed .. cfg.seed + seeds - 1; writes ``config.json``, per
    seed ``seed{S}/curve.csv`` as each seed finishes, then ``summary.json`` and ``curves.png``
    into ``out``.

    Every input check comes first; then ``out`` is created (emptied first with ``overwrite``; a
    non-empty one is refused without it) and marked unfinished by an ``INCOMPLETE`` file, as
    :func:`bpo_jax.reporting.open_run_dir` does for an RL run, which is removed once the final
    files are in place; each file is written atomically.  When anything stops the run (a
    :class:`NonFiniteError`, Ctrl-C), INCOMPLETE says why (:func:`stop_note`, through
    ``words``, which rewords the settings named in backticks; default: their field names) and
    the exception propagates: the curves of the seeds that finished stay, nothing else is
    written."""
    from bpo_jax import reporting

    mesh = make_mesh()
    cfg.validate(mesh.size)
    check_seeds(cfg, seeds)
    check_memory(cfg)
    reporting.open_run_dir(out, overwrite, words(RUNNING_NOTE))
    try:
        # First: what made the run, also for a stopped one's kept curves (and so that `overwrite`
        # elsewhere knows this folder for a run's).
        reporting.write_json(os.path.join(out, "config.json"), {"kind": reporting.LLM_KIND, **dataclasses.asdict(cfg),
                                                                "seeds": seeds})
        problems = make_problem_sets(cfg)
        summary, histories = {"config": dataclasses.asdict(cfg), "seeds": []}, {}
        for s in range(cfg.seed, cfg.seed + seeds):
            c = dataclasses.replace(cfg, seed=s)
            params, warm = warm_start(c, problems, log=lambda m: log(f"[seed {s}] {m}"), mesh=mesh)
            _, hist = rl_train(c, params, problems, log=lambda m: log(f"[seed {s}] {m}"), mesh=mesh)
            os.makedirs(os.path.join(out, f"seed{s}"), exist_ok=True)
            reporting.write_atomic(os.path.join(out, f"seed{s}", "curve.csv"), lambda tmp: write_csv(tmp, hist))
            histories[f"seed {s}"] = hist
            summary["seeds"].append({"seed": s, "warm_start": warm, "accuracy_before": hist[0]["accuracy"],
                                     "accuracy_after": hist[-1]["accuracy"],
                                     "ratio_out_frac_final_mean": float(np.mean([h["ratio_out_frac_final"]
                                                                                 for h in hist[1:]]))})
        before = [x["accuracy_before"] for x in summary["seeds"]]
        after = [x["accuracy_after"] for x in summary["seeds"]]
        summary.update(accuracy_before_mean=float(np.mean(before)), accuracy_after_mean=float(np.mean(after)))
        mode = "TTRL" if cfg.ttrl else "verifiable reward"
        title = f"{cfg.algo.upper()} ({mode}), {cfg.epochs} epochs, clip {cfg.clip}"
        reporting.write_atomic(os.path.join(out, "curves.png"),
                               lambda tmp: plot(tmp, histories, title, format="png"))
        reporting.write_json(os.path.join(out, "summary.json"), summary)  # last: the finished run's result
    except BaseException as e:
        reporting.mark_incomplete(out, words(stop_note(e, out, cfg)))
        raise
    reporting.mark_complete(out)
    return summary


def check_memory(cfg: LLMConfig) -> None:
    """Refuse, before anything is written, settings whose arrays cannot fit in memory: a lower
    bound, the parameters (about 12 d_model^2 floats a layer) and Adam's two moments, alive
    throughout, and the largest of what each phase adds to them: the gradients, the key-value
    cache of the responses sampled a step (2 x num_layers x length x d_model floats each; TTRL
    samples ttrl_votes a prompt), the [N, N] float32 matrix that the group statistics of
    N = P x G responses build (a group size of 30 million, or 50 million votes, ran out of
    memory after the folder was made, with advice to start it again).  Names in backticks."""
    from bpo_jax.runner import memory_bytes

    n = cfg.batch_size
    sampled = cfg.prompts_per_step * (cfg.ttrl_votes if cfg.ttrl else cfg.group_size)
    params = 4 * 12 * cfg.d_model ** 2 * cfg.num_layers
    cache = 4 * 2 * cfg.num_layers * cfg.model_config.max_len * cfg.d_model * sampled
    need = 3 * params + max(params, cache, 4 * n * n)
    have = memory_bytes()
    if have and need > have:
        raise ValueError(f"these settings need more than {need / 2**30:,.1f} GiB (the training state of `d_model` "
                         f"{cfg.d_model} x `num_layers` {cfg.num_layers}, the key-value cache of {sampled:,} responses "
                         f"sampled a step and the group statistics of {n:,} trained), more than the "
                         f"{have / 2**30:,.1f} GiB of memory here; {_lower_sizes(cfg)}")


def _lower_sizes(cfg: LLMConfig) -> str:
    """What to lower where the arrays do not fit, in the run's mode."""
    group = "`ttrl_votes`, `ttrl_train`" if cfg.ttrl else "`group_size`"
    return f"lower `prompts_per_step`, {group}, `d_model` or `num_layers`"


def check_seeds(cfg: LLMConfig, seeds: int) -> None:
    """Raise ValueError unless ``seeds`` runs from ``cfg.seed`` are valid seeds each (the check
    :meth:`LLMConfig.validate` makes of one), names in backticks as it writes them."""
    if not isinstance(seeds, int) or isinstance(seeds, bool):
        raise TypeError(f"`seeds` must be an integer, got {seeds!r}")
    if seeds < 1:
        raise ValueError(f"`seeds` must be >= 1, got {seeds}")
    if cfg.seed + seeds > 2**32:
        raise ValueError(f"`seed` + `seeds` must be <= 2**32 (seeds {cfg.seed}..{cfg.seed + seeds - 1}), got "
                         f"{cfg.seed + seeds}")


def finished_seeds(out: str) -> list[str]:
    """The seed folders of ``out`` whose curve.csv is written (their seeds finished)."""
    try:
        names = os.listdir(out)
    except OSError:
        return []
    return sorted((n for n in names if n.startswith("seed") and os.path.isfile(os.path.join(out, n, "curve.csv"))),
                  key=lambda n: int(n[4:]) if n[4:].isdigit() else -1)


def stop_note(e: BaseException, out: str, cfg: Optional[LLMConfig] = None) -> str:
    """What stopped the run in ``out`` (of ``cfg``) and how to go on, in one line (settings in backticks)."""
    what = what_stopped(e, (NonFiniteError,))
    kept = finished_seeds(out)
    kept = f"; kept the curves of the finished seeds ({', '.join(kept)})" if kept else ""
    # Out of memory, the same settings fail again (XLA says RESOURCE_EXHAUSTED).
    memory = isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)
    again = f"{_lower_sizes(cfg or LLMConfig())} and start it" if memory else "start it"
    return f"{what}{kept}; an llm run cannot resume: {again} again with `overwrite` to replace {out}"
