"""Drive a run from the host: N seeds as one vmapped program, in chunks of K updates.

The whole-run ``train`` function (see :mod:`bpo_jax.train`) is the right tool for sweeps
inside a bigger program.  A user at a terminal also wants progress, NaN checks and a
compile cache, and a host callback inside the program would rule the cache out (JAX does
not persist executables that call back into Python).  So this driver compiles two
programs, ``init`` and ``K updates``, and calls the second ``num_updates / K`` times with
donated state: no recompilation, one host round-trip per chunk, and the chunk boundaries
are where progress, NaN checks (and later checkpoints) happen.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax.config import Config
from bpo_jax.train import TrainState, make_trainer

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "bpo-jax", "xla")


class NonFiniteError(RuntimeError):
    """A loss, gradient or parameter became NaN or Inf; the message names the update and seed."""


@dataclass
class RunResult:
    """Host-side outcome of :func:`run`.  Metric arrays are [num_seeds, num_updates]."""

    config: Config
    num_seeds: int
    metrics: dict[str, np.ndarray]
    env_steps: np.ndarray  # [num_updates] environment steps per seed after each update
    steps_per_second: np.ndarray  # [num_updates] env steps of all seeds per second, per chunk
    compile_seconds: float
    train_seconds: float
    state: TrainState  # final state, leaves batched over seeds

    @property
    def total_env_steps(self) -> int:
        return int(self.env_steps[-1]) * self.num_seeds


def enable_compilation_cache(path: Optional[str] = None) -> str:
    """Turn on JAX's persistent compilation cache (default ``~/.cache/bpo-jax/xla``, or
    ``$BPO_JAX_CACHE_DIR``), so an identical second run skips most of its compile time."""
    path = path or os.environ.get("BPO_JAX_CACHE_DIR") or DEFAULT_CACHE_DIR
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Seed i's key is fold_in(key(seed), i): it does not depend on how many seeds run."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_seeds))


def chunk_size(num_updates: int, reports: int) -> int:
    """Largest divisor of num_updates that gives at least ``reports`` chunks (so every
    chunk is the same compiled program)."""
    target = max(1, num_updates // max(1, reports))
    return max(d for d in range(1, target + 1) if num_updates % d == 0)


ProgressFn = Callable[[dict], None]


def run(
    config: Config,
    num_seeds: int = 1,
    progress: Optional[ProgressFn] = None,
    reports: int = 20,
) -> RunResult:
    """Train ``num_seeds`` seeds of ``config`` as one vmapped program, chunk by chunk.

    ``progress`` (if given) is called on the host after every chunk with a dict of
    update, num_updates, env_steps, total_steps, episode_return, steps_per_second, eta.
    Raises :class:`NonFiniteError` as soon as a chunk produced a NaN or Inf.
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    trainer = make_trainer(config)
    hp = config.hparams()
    keys = seed_keys(config.seed, num_seeds)
    k = chunk_size(trainer.num_updates, reports)

    init = jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))
    chunk = jax.jit(
        jax.vmap(lambda s, h: trainer.update_chunk(s, h, k), in_axes=(0, None)), donate_argnums=0
    )
    t0 = time.perf_counter()
    init_c = init.lower(keys, hp).compile()
    state_shape = jax.eval_shape(init, keys, hp)
    chunk_c = chunk.lower(state_shape, hp).compile()
    compile_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    state = init_c(keys, hp)
    rows: list[dict[str, np.ndarray]] = []
    sps: list[np.ndarray] = []
    last_return = float("nan")
    for c in range(trainer.num_updates // k):
        t_chunk = time.perf_counter()
        state, metrics = chunk_c(state, hp)
        metrics = jax.device_get(metrics)  # the one host round-trip of the chunk
        now = time.perf_counter()
        rows.append(metrics)
        chunk_sps = k * config.batch_size * num_seeds / max(now - t_chunk, 1e-9)
        sps.append(np.full(k, chunk_sps))
        _check_finite(metrics, first_update=c * k)
        done_updates = (c + 1) * k
        chunk_return = _weighted_return(metrics)
        last_return = chunk_return if np.isfinite(chunk_return) else last_return
        if progress is not None:
            elapsed = now - t0
            progress({
                "update": done_updates,
                "num_updates": trainer.num_updates,
                "env_steps": done_updates * config.batch_size,
                "total_steps": trainer.num_updates * config.batch_size,
                "episode_return": last_return,
                "steps_per_second": done_updates * config.batch_size * num_seeds / max(elapsed, 1e-9),
                "eta": elapsed / done_updates * (trainer.num_updates - done_updates),
            })
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - t0

    metrics = {name: np.concatenate([r[name] for r in rows], axis=1) for name in rows[0]}
    env_steps = np.arange(1, trainer.num_updates + 1) * config.batch_size
    return RunResult(config, num_seeds, metrics, env_steps, np.concatenate(sps),
                     compile_seconds, train_seconds, state)


def _weighted_return(metrics: dict) -> float:
    """Mean return of all episodes that ended in these updates, over all seeds."""
    counts = np.asarray(metrics["episodes"], np.float64)
    returns = np.nan_to_num(np.asarray(metrics["episode_return_mean"], np.float64))
    total = counts.sum()
    return float((returns * counts).sum() / total) if total > 0 else float("nan")


def _check_finite(metrics: dict, first_update: int) -> None:
    bad = np.asarray(metrics["nonfinite"]).astype(bool)  # [seeds, K]
    if bad.any():
        seed, offset = np.argwhere(bad)[0]
        raise NonFiniteError(
            f"non-finite loss, gradient or parameters at update {first_update + offset + 1} "
            f"(seed index {seed}); lower lr, raise max_grad_norm clipping or check the env's rewards"
        )
