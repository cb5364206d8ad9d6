"""Drive a run from the host: N seeds as one vmapped program, in chunks of K updates.

The whole-run ``train`` function (see :mod:`bpo_jax.train`) is the right tool for sweeps
inside a bigger program.  A user at a terminal also wants progress, NaN checks, checkpoints
and a compile cache, and a host callback inside the program would rule the cache out (JAX
does not persist executables that call back into Python).  So this driver compiles two
programs, ``init`` and ``K updates`` (plus a shorter tail chunk when K does not divide the
run), and calls the chunk program ``num_updates / K`` times with donated state: no
recompilation, one host round-trip per chunk, and the chunk boundaries are where progress,
NaN checks, logging and checkpoints happen.  Unless a checkpoint is due, the next chunk starts
before the host logs the last one, so logging costs the devices no time.

The env batch is split over devices (``devices``, default all of ``jax.devices()``, every
process's in a multi-host run): a 1-D mesh with axis ``data`` splits axis 1 of every env-state
leaf (axis 0 is the seed axis, which stays whole on every device, so any number of seeds
runs on any number of devices) and of the rollout; parameters, optimiser state, normaliser
statistics and keys are replicated.  XLA's partitioner inserts the collectives, so a
4-device run computes the 1-device run's numbers up to float rounding.

A run can start from a saved state (:class:`Start`, see :mod:`bpo_jax.checkpoint`): on CPU,
resuming at a chunk boundary with the same K runs the very same compiled program on the very
same numbers, so the result is bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bpo_jax.config import Config, ConfigError, HParams
from bpo_jax.envs import registry
from bpo_jax.train import DATA_AXIS, Trainer, TrainState, env_partition, make_trainer

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "bpo-jax", "xla")

# XLA options for runs that are short enough for compile time to dominate (debugging, smoke
# tests, CPU): LLVM's lowest optimisation level and XLA's older CPU fusion emitters.  Measured on a
# 2-core CPU (2026-11-27): a tiny CartPole CLI run 17.1 s -> 10.4 s wall, an mjx/Hopper-v4 update
# program 22 s -> 15 s to compile; the compiled steps run up to 2x slower on CPU.  Same
# computation, different float rounding.  Options a backend does not use are ignored.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
                "xla_cpu_use_fusion_emitters": False}


class BadUpdateError(RuntimeError):
    """An update went wrong in a way that resuming would only repeat; the message names the
    update and seed."""

    def __init__(self, message: str, update: int = 0, seed: int = 0):
        super().__init__(message)
        self.update = update  # 1-based index of the first bad update
        self.seed = seed  # seed index
        self.before: Optional[History] = None  # the run's rows of the updates before it (set by run)


class NonFiniteError(BadUpdateError):
    """A loss, gradient or parameter became NaN or Inf."""


class TimeLimitError(BadUpdateError):
    """The env truncated episodes sooner than its declared ``time_limit`` (bpo_jax.bootstrap)."""


def throughput(env_steps_all_seeds: float, train_seconds: float) -> float:
    """The one steps/s figure of a run: environment steps of all seeds per second of training
    time (the compiled chunks; compile time and host work between chunks left out)."""
    return env_steps_all_seeds / max(train_seconds, 1e-9)


@dataclass
class RunResult:
    """Host-side outcome of :func:`run`.  Metric arrays are [num_seeds, num_updates]."""

    config: Config
    num_seeds: int
    metrics: dict[str, np.ndarray]
    env_steps: np.ndarray  # [num_updates] environment steps per seed after each update
    steps_per_second: np.ndarray  # [num_updates] :func:`throughput` of the chunk each update ran in
    compile_seconds: float
    train_seconds: float  # compiled chunks and their metric transfers (all sessions of a resumed run)
    state: TrainState  # final state, leaves batched over seeds
    io_seconds: float  # host work between chunks in this session: checkpoints, logs, progress
    chunk_updates: int  # K, updates per compiled chunk
    cached_programs: int  # programs this session loaded from the persistent compilation cache

    @property
    def total_env_steps(self) -> int:
        return int(self.env_steps[-1]) * self.num_seeds

    @property
    def throughput(self) -> float:
        """Environment steps of all seeds per second of training time, over the whole run."""
        return throughput(self.total_env_steps, self.train_seconds)


@dataclass
class History:
    """Metric rows so far, one [seeds, K] block per chunk (concatenated only when asked)."""

    blocks: list[dict[str, np.ndarray]] = field(default_factory=list)
    sps: list[np.ndarray] = field(default_factory=list)  # [K] per block

    @classmethod
    def since(cls, start: Optional["Start"]) -> "History":
        """The rows a run resumed at ``start`` had already (none for a fresh run)."""
        return cls() if start is None else cls([dict(start.metrics)], [np.asarray(start.steps_per_second)])

    def metrics(self) -> dict[str, np.ndarray]:
        """[seeds, updates so far] per metric."""
        return {name: np.concatenate([b[name] for b in self.blocks], axis=1) for name in self.blocks[0]}

    def steps_per_second(self) -> np.ndarray:
        return np.concatenate(self.sps)


@dataclass
class Start:
    """Where a resumed run picks up: the state after ``update`` updates and what came before."""

    state: TrainState  # leaves batched over seeds (host or device arrays)
    update: int
    metrics: dict[str, np.ndarray]  # [seeds, update]
    steps_per_second: np.ndarray  # [update]
    train_seconds: float


@dataclass
class Chunk:
    """What the host sees after one finite compiled chunk (passed to ``on_chunk``), or of the
    chunk a bad update stopped: its updates before the bad one (fewer than ``chunk_updates``
    rows, ``state`` None), the last call before :class:`NonFiniteError` is raised.

    ``state`` is only valid during the callback: the next chunk donates (reuses) its buffers;
    None where the run's ``wants_state`` said the callback does not need it (the next chunk is
    already running on those buffers).
    """

    state: Optional[TrainState]
    update: int  # updates done after this chunk
    num_updates: int
    chunk_updates: int  # K
    metrics: dict[str, np.ndarray]  # this chunk's rows, [seeds, k]
    history: History  # every row so far
    steps_per_second: float  # this chunk's :func:`throughput`
    train_seconds: float  # so far, all sessions
    compile_seconds: float  # this session
    first: bool  # the first chunk of this session


@dataclass(frozen=True)
class Progress:
    """What a progress display gets after each finite chunk."""

    update: int  # updates done
    num_updates: int
    env_steps: int  # per seed, done
    total_steps: int  # per seed, at the end of the run
    num_seeds: int
    episode_return: float  # mean return of the episodes that ended in the last chunk with any; NaN before
    steps_per_second: float  # :func:`throughput` so far, over all sessions (the final summary's figure)
    eta: float  # seconds left, from this session's wall-clock pace (host work included)


CACHE_MIN_SECONDS_VAR = "BPO_JAX_CACHE_MIN_COMPILE_SECONDS"


def cache_min_compile_seconds() -> float:
    """Programs that compile faster than this are not stored in the persistent cache (reading one
    back would cost about as much): ``$BPO_JAX_CACHE_MIN_COMPILE_SECONDS``, default 0.5."""
    raw = os.environ.get(CACHE_MIN_SECONDS_VAR, "0.5")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"{CACHE_MIN_SECONDS_VAR} must be a number of seconds >= 0, got {raw!r}")
    return seconds


def cache_dir() -> str:
    """The persistent compilation cache's folder: ``$BPO_JAX_CACHE_DIR``, else ``~/.cache/bpo-jax/xla``."""
    return os.environ.get("BPO_JAX_CACHE_DIR") or DEFAULT_CACHE_DIR


def enable_compilation_cache(path: Optional[str] = None) -> str:
    """Turn on JAX's persistent compilation cache (default ``~/.cache/bpo-jax/xla``, or
    ``$BPO_JAX_CACHE_DIR``), so an identical second run skips most of its compile time."""
    min_seconds = cache_min_compile_seconds()
    path = path or cache_dir()
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
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
    small = [d for d in range(1, math.isqrt(num_updates) + 1) if num_updates % d == 0]  # O(sqrt n), not O(n)
    return max(d for d in small + [num_updates // d for d in small] if d <= target)


def chunk_plan(num_updates: int, k: int) -> list[int]:
    """Updates done after each chunk: multiples of K, then ``num_updates`` (a shorter tail
    chunk, the one extra compiled program, when K does not divide the run)."""
    ends = list(range(k, num_updates + 1, k))
    if not ends or ends[-1] != num_updates:
        ends.append(num_updates)
    return ends


def state_template(config: Config, num_seeds: int) -> TrainState:
    """Shapes and dtypes of the vmapped TrainState of a run (nothing is computed)."""
    trainer = make_trainer(config)
    init = jax.vmap(trainer.init, in_axes=(0, None))
    return jax.eval_shape(lambda hp: init(seed_keys(config.seed, num_seeds), hp), config.hparams())


SPLITS = ("auto", "envs", "seeds")


def resolve_split(split: str, num_seeds: int, devices: Optional[Sequence[jax.Device]] = None) -> str:
    """``"auto"`` -> ``"seeds"`` where ``devices`` (default all) are several CPU devices of one
    process and the seeds divide over them, else ``"envs"``; any other value as it is.

    On a CPU every device is a core (:func:`use_cpu_cores`): whole seeds per core need no
    communication, where split envs would add partitioning costs to every step."""
    if split != "auto":
        return split
    devices = list(jax.devices() if devices is None else devices)
    cpu = all(d.platform == "cpu" for d in devices) and jax.process_count() == 1
    return "seeds" if cpu and len(devices) > 1 and num_seeds % len(devices) == 0 else "envs"


def cpu_devices_for(num_seeds: int, cores: int) -> int:
    """Host devices for ``num_seeds`` seeds on ``cores`` cores: the smallest divisor of num_seeds
    that is at least ``cores`` (num_seeds itself when there are fewer seeds than cores).  One
    device per core at most where the seeds divide so; otherwise a few more devices than cores
    (3 seeds on 2 cores: 3), still far faster than one device for all of them."""
    return next(d for d in range(min(cores, num_seeds), num_seeds + 1) if num_seeds % d == 0)


def use_cpu_cores(num_seeds: int, devices: Optional[int] = None) -> Optional[int]:
    """Expose this machine's cores as CPU devices (``jax_num_cpu_devices``, :func:`cpu_devices_for`)
    so that a ``split="auto"`` run of ``num_seeds`` seeds puts whole seeds on every core.

    Why: XLA runs one program on one CPU device, spreading each kernel over the cores with
    intra-op threads, which do not pay on small kernels: 10 vmapped CartPole seeds train about
    1.6x faster on two host devices of one core each than on one device with both (2-core VM,
    benchmarks/RESULTS.md), and the per-seed numbers are the same.  Call it before anything
    starts JAX's backends (the device count is fixed then); on a GPU or TPU machine it only
    shapes the unused CPU backend.  Returns the device count it set, or None where it leaves
    things as they are: fewer than 2 seeds or cores, the backends already started, or a count
    the user chose (``--xla_force_host_platform_device_count`` in XLA_FLAGS, or
    ``jax_num_cpu_devices`` / $JAX_NUM_CPU_DEVICES).

    ``devices``: that many, whatever the cores (a resumed run's, recorded in its checkpoint: the
    same per-device programs, the same float rounding, on a machine with another core count)."""
    from jax._src import xla_bridge

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if devices is None:
        devices = cpu_devices_for(num_seeds, cores) if num_seeds >= 2 and cores >= 2 else 1
    if cpu_device_count_chosen() or xla_bridge.backends_are_initialized() or devices == 1:
        return None
    jax.config.update("jax_num_cpu_devices", devices)
    return devices


# Where a user-set CPU device count comes from, for the notes that ask to unset it.
CHOSEN_COUNT = ("XLA_FLAGS' --xla_force_host_platform_device_count or jax_num_cpu_devices ($JAX_NUM_CPU_DEVICES) "
                "sets this process's count")


def cpu_device_count_chosen() -> bool:
    """Whether the user set this process's CPU device count (XLA_FLAGS'
    ``--xla_force_host_platform_device_count``, or ``jax_num_cpu_devices`` / $JAX_NUM_CPU_DEVICES),
    which :func:`use_cpu_cores` leaves as it is."""
    return ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or jax.config.jax_num_cpu_devices != -1)


def fitting_devices(devices: Optional[Sequence[jax.Device]], split: str, num_seeds: int,
                    config: Config) -> Optional[Sequence[jax.Device]]:
    """``devices`` as given, except:

    * an env whose suite keeps its simulators outside JAX (``registry.host_state``: Atari's
      emulators, stepped by custom calls or callbacks that XLA cannot partition) trains on one
      device; with ``split="auto"`` in one process, the first, else several are refused;
    * where ``split="auto"`` on this process's CPU devices could split neither the seeds nor the
      envs (3 runs of a sweep's grid, one seed and one env each, on 2 devices): as many of them
      as divide the seeds, rather than an error."""
    if registry.host_state(config.env):
        chosen = list(jax.devices() if devices is None else devices)
        if len(chosen) > 1 and (devices is not None or split != "auto" or jax.process_count() > 1):
            raise ConfigError(f"{config.env} steps its simulators outside XLA, which cannot split them over "
                              f"devices: train it on one device (`split` auto, one process), not {len(chosen)}")
        return chosen[:1]
    if devices is not None or split != "auto" or jax.process_count() > 1:
        return devices
    every = jax.devices()
    num_envs = config.num_envs
    if not all(d.platform == "cpu" for d in every) or num_seeds % len(every) == 0 or num_envs % len(every) == 0:
        return devices
    return every[:max(d for d in range(1, len(every) + 1) if num_seeds % d == 0)]


def memory_bytes() -> Optional[int]:
    """The memory the run's arrays live in: the accelerators' (summed), else this machine's RAM;
    None where it cannot be read."""
    devices = jax.devices()
    if devices[0].platform != "cpu":
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in devices]
        return sum(limits) if all(limits) else None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def layout(config: Config, members: int, split: str) -> dict:
    """How :func:`run` spreads a program of ``members`` seeds (of every run in it)
    over this process's devices: ``{"split": "seeds" or "envs", "devices": n, "members": m}``,
    which sets each device's program and so its float rounding (checkpoints record it for a
    resume: :func:`resumed_devices`)."""
    devices = fitting_devices(None, split, members, config)
    devices = jax.devices() if devices is None else devices
    return {"split": resolve_split(split, members, devices), "devices": len(devices), "members": members}


def resumed_devices(layout: Optional[dict], num_seeds: int) -> Optional[int]:
    """The device count on which a run of ``num_seeds`` seeds, trained with checkpoint
    ``layout`` (:func:`layout`), resumes with the programs it ran: as many devices as give each
    the seeds one had (a grid member resumed alone: its share), or one where it trained on one;
    as many as it split its env batch over; None where no count does (no layout recorded)."""
    if layout is None:
        return None
    if layout["devices"] == 1:  # a grid member too: one device's program is its run's alone
        return 1
    if layout["split"] == "seeds":
        per_device = layout["members"] // layout["devices"]
        return num_seeds // per_device if num_seeds % per_device == 0 else None
    return layout["devices"]


def program_shape(layout: dict) -> tuple[str, int]:
    """What sets a device's program in ``layout`` (:func:`layout`): the seeds each device
    trains, or how many devices share the env batch (one device: its whole batch)."""
    if layout["devices"] == 1:
        return "one", 1
    if layout["split"] == "seeds":
        return "seeds", layout["members"] // layout["devices"]
    return "envs", layout["devices"]


def devices_word() -> str:
    """What this process's devices are, as a run's first line names them: "CPU devices"."""
    return f"{jax.devices()[0].platform.upper()} devices"


def layout_words(layout: dict, devices: str = "devices") -> str:
    """``layout`` as the first line of a run says it: "seeds split over 3 devices" (``devices``:
    what to call them, e.g. :func:`devices_word`'s "CPU devices")."""
    if layout["devices"] == 1:
        return "one device"
    what = "seeds" if layout["split"] == "seeds" else "env batch"
    return f"{what} split over {layout['devices']} {devices}"


def make_mesh(devices: Optional[Sequence[jax.Device]], num_envs: int, num_seeds: int = 1,
              split: str = "auto") -> Mesh:
    """1-D mesh over ``devices`` (default: all devices of all processes) along DATA_AXIS, which
    splits the env batch (``split="envs"``) or the seeds (``"seeds"``; ``"auto"``:
    :func:`resolve_split`)."""
    devices = list(jax.devices() if devices is None else devices)
    if split not in SPLITS:
        raise ConfigError(f"`split` must be one of {', '.join(SPLITS)}, got {split!r}")
    split = resolve_split(split, num_seeds, devices)
    size, what = (num_envs, "num_envs") if split == "envs" else (num_seeds, "num_seeds")
    if size % len(devices):
        other = "seeds" if split == "envs" else "envs"
        other_size = num_seeds if split == "envs" else num_envs
        hint = f", or give `split` {other}" if other_size % len(devices) == 0 else ""  # no dead end offered
        raise ConfigError(f"`{what}` {size} must be divisible by the number of devices ({len(devices)}) to split "
                          f"the {split} over them; change it{hint}")
    return Mesh(np.array(devices), (DATA_AXIS,))


def state_shardings(trainer: Trainer, mesh: Mesh, split: str = "envs") -> TrainState:
    """NamedSharding per leaf of the seed-batched TrainState.  ``split="envs"``: env-state
    leaves (and the per-env return accumulator) split along their env axis 1, everything else
    replicated; ``"seeds"``: every leaf split along its seed axis 0."""
    config = trainer.config
    one = jax.eval_shape(trainer.init, jax.random.key(0), config.hparams())  # one seed, shapes only
    if split == "seeds":
        return jax.tree.map(lambda _: NamedSharding(mesh, P(DATA_AXIS)), one)
    env_specs = env_partition(one.env_state, config.num_envs)
    specs = jax.tree.map(lambda _: P(), one).replace(
        env_state=jax.tree.map(lambda s: P(None, *s), env_specs),  # seed axis first, whole
        return_acc=None if one.return_acc is None else P(None, DATA_AXIS),
    )
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs)


def _barrier(name: str) -> None:
    """Multi-process: wait (via the coordination service, 10 min) until every process gets
    here, so that compile-time skew never runs into gloo's 30 s rendezvous timeout."""
    if jax.process_count() > 1:
        from jax._src import distributed

        distributed.global_state.client.wait_at_barrier(f"bpo_jax_{name}", 600_000)


def is_key(x) -> bool:
    """``x`` is a typed PRNG key array (saved and sharded through its raw key data)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def place(tree: Any, shardings: Any) -> Any:
    """Host values (the same on every process) -> global arrays with ``shardings``; each
    process fills only its own devices' shards, so this works across hosts too."""
    def put(x, sharding):
        if is_key(x):
            impl = str(jax.random.key_impl(x))
            return jax.random.wrap_key_data(put(jax.random.key_data(x), sharding), impl=impl)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree.map(put, tree, shardings)


def to_host(tree: Any) -> Any:
    """Global arrays -> numpy (keys stay key arrays, on the default device).  A leaf split
    over other processes' devices is all-gathered, a collective: in a multi-process run every
    process must call this at the same point."""
    def get(x):
        if is_key(x):
            return jax.random.wrap_key_data(get(jax.random.key_data(x)), impl=str(jax.random.key_impl(x)))
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(get, tree)


ProgressFn = Callable[[Progress], None]


def run(
    config: Config,
    num_seeds: int = 1,
    progress: Optional[ProgressFn] = None,
    reports: int = 20,
    *,
    chunk_updates: Optional[int] = None,
    start: Optional[Start] = None,
    on_chunk: Optional[Callable[[Chunk], Any]] = None,
    wants_state: Optional[Callable[[int], bool]] = None,
    devices: Optional[Sequence[jax.Device]] = None,
    split: str = "auto",
    compiler_options: Optional[dict[str, Any]] = None,
    variants: Optional[Sequence[Config]] = None,
) -> RunResult:
    """Train ``num_seeds`` seeds of ``config`` as one vmapped program, chunk by chunk.

    ``chunk_updates`` is K, the updates per compiled call (default: the largest divisor of
    num_updates giving at least ``reports`` chunks).  ``start`` resumes from a saved state
    after any number of updates (from a chunk boundary, with the same K, the rest of the run
    is the very program an uninterrupted run runs).  After every chunk whose metrics are
    finite, ``on_chunk`` (e.g. checkpoints and loggers) and then ``progress`` (with a :class:`Progress`) are called on
    the host.  Raises :class:`NonFiniteError` as soon as a chunk produced a NaN or Inf, after
    ``on_chunk`` saw that chunk's updates before the bad one, without a state (so the last
    checkpoint on disk is the last good chunk's; errors of that call are dropped).

    ``wants_state(updates_done)``: whether ``on_chunk`` needs the state after that chunk (e.g. a
    checkpoint is due).  Where it says no, the next chunk starts before ``on_chunk`` and
    ``progress`` run, so the host's logging overlaps the training, and ``on_chunk`` gets
    ``Chunk.state`` None (the next chunk has taken over its buffers).  Without it, every chunk's
    state is handed over and the host work waits between chunks; without ``on_chunk``, no chunk
    waits.  Numbers are the same either way.

    ``devices`` (default: ``jax.devices()``, all processes' devices) split the env batch
    (``split="envs"``; num_envs must be divisible by their number) or the seeds (``"seeds"``;
    num_seeds must be: every device trains its own seeds, no collectives, the way to use every
    core of a CPU through host devices, :func:`use_cpu_cores`); ``"auto"`` (default): seeds
    where the devices are CPUs of one process and the seeds divide over them, else envs.  In a multi-process run every process calls
    ``run`` with the same arguments (give ``on_chunk``/``progress`` only where wanted, e.g.
    process 0); chunk states are then gathered to host numpy before ``on_chunk``.

    ``compiler_options`` (e.g. :data:`FAST_COMPILE`) are XLA options for both programs.

    ``variants``: configurations that differ from ``config`` in sweepable fields only
    (:meth:`Config.program_difference`), trained instead of ``config``, ``num_seeds`` seeds each,
    as one program whose hyperparameters are traced per member.  Member ``v * num_seeds + i`` is
    seed ``i`` of ``variants[v]`` with the key a run of that variant alone gives its seed ``i``;
    every [seeds, ...] array above (state, metrics, ``start``) is then [members, ...].
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    variants = list(variants) if variants is not None else None
    for other in variants or ():
        difference = config.program_difference(other)
        if difference:
            raise ValueError(f"variants train as one program, so they may differ in sweepable fields only; {difference}")
    num_variants = 1 if variants is None else len(variants)
    members = num_variants * num_seeds
    devices = fitting_devices(devices, split, members, config)
    split = resolve_split(split, members, devices)
    mesh = make_mesh(devices, config.num_envs, members, split)
    # Split seeds: each device runs whole programs of its own seeds, so nothing in the
    # trainer is partitioned (no env-axis constraints); the seed axis is split by the jit.
    trainer = make_trainer(config, mesh=mesh if split == "envs" else None)
    n = trainer.num_updates
    k = chunk_updates if chunk_updates is not None else chunk_size(n, reports)
    if not 1 <= k <= n:
        raise ValueError(f"chunk_updates must be in [1, num_updates = {n}], got {k}")
    ends = chunk_plan(n, k)
    done = 0 if start is None else start.update
    if done > n:
        raise ValueError(f"cannot resume at update {done}: the run has {n} updates")
    # A start between chunk boundaries (a run gone on to a larger budget, whose old end was a
    # tail chunk) first runs up to the next boundary: one more compiled program size.
    todo = [e for e in ends if e > done]
    replicated = NamedSharding(mesh, P())
    shardings = state_shardings(trainer, mesh, split)
    if variants is None:  # one configuration: its hyperparameters are the same for every seed
        hp_axis, hp_sharding, host_hp = None, replicated, config.hparams()
    else:  # one row per member, split like the members' states
        hp_axis = 0
        hp_sharding = NamedSharding(mesh, P(DATA_AXIS)) if split == "seeds" else replicated
        host_hp = jax.tree.map(lambda x: jnp.repeat(x, num_seeds, axis=0), HParams.stack([v.hparams() for v in variants]))
    hp = place(host_hp, jax.tree.map(lambda _: hp_sharding, host_hp))
    multi = jax.process_count() > 1

    # The seed keys are made inside the program, so no host-local array enters it.
    def member_keys():
        return jnp.tile(seed_keys(config.seed, num_seeds), num_variants)

    init = jax.jit(lambda h: jax.vmap(trainer.init, in_axes=(0, hp_axis))(member_keys(), h),
                   in_shardings=hp_sharding, out_shardings=shardings)

    def chunk_program(size):
        fn = jax.vmap(lambda s, h: trainer.update_chunk(s, h, size), in_axes=(0, hp_axis))
        return jax.jit(fn, in_shardings=(shardings, hp_sharding), out_shardings=(shardings, replicated),
                       donate_argnums=0)

    t0 = time.perf_counter()
    state_shape = jax.eval_shape(init, hp)
    # Compile everything up front (and only what this session runs), so compile time is
    # reported apart from training time and nothing compiles between chunks.
    with _counting(CACHE_HIT_EVENT) as cache_hits:
        lowered = {size: chunk_program(size).lower(state_shape, hp)
                   for size in sorted({b - a for a, b in zip([done] + todo, todo)})}
        if start is None:
            lowered["init"] = init.lower(hp)
        elif registry.host_state(config.env):  # no checkpoint holds the simulators: every episode starts again
            restart = jax.jit(jax.vmap(trainer.restart_envs), in_shardings=(shardings,), out_shardings=shardings,
                              donate_argnums=0)
            lowered["restart"] = restart.lower(state_shape)
        # XLA compiles without holding the GIL, so the programs compile side by side: the init
        # program beside the chunk's (CartPole, 2 cores: 3.3-3.8 s instead of 4.6-4.9 s).
        # (Nothing at all where a resumed run had trained its last update but not written its files.)
        with concurrent.futures.ThreadPoolExecutor(max(1, len(lowered))) as pool:
            compiled = dict(zip(lowered, pool.map(lambda low: low.compile(compiler_options), lowered.values())))
        init_c, restart_c = compiled.pop("init", None), compiled.pop("restart", None)
        programs = compiled
    compile_seconds = time.perf_counter() - t0
    _barrier("compiled")

    t_init = time.perf_counter()
    if start is None:
        state = init_c(hp)
        history, previous_seconds = History(), 0.0
    else:
        state = place(start.state, shardings)
        if restart_c is not None:
            state = restart_c(state)
        history = History.since(start)
        previous_seconds = start.train_seconds
    jax.block_until_ready(state)
    train_seconds, io_seconds = time.perf_counter() - t_init, 0.0  # init (or the upload) counts as training
    last_return = float("nan")
    session_start, t_session = done, time.perf_counter()
    running = None  # the next chunk's outputs and start time, when it started before the host work
    for i, end in enumerate(todo):
        size = end - done
        if running is None:
            _barrier(f"chunk_{end}")  # process 0 may have spent a while writing a checkpoint
            t_chunk = time.perf_counter()
            state, metrics = programs[size](state, hp)
        else:
            (state, metrics), t_chunk = running
            running = None
        metrics = to_host(metrics)  # the one host round-trip of the chunk (replicated: no gather)
        now = time.perf_counter()
        train_seconds += now - t_chunk
        chunk_sps = throughput(size * config.batch_size * members, now - t_chunk)
        try:
            _check_updates(metrics, first_update=done, env=config.env)
        except BadUpdateError as e:  # keep the curve up to the failure, for the front end to write
            good = e.update - 1 - done
            finite = {name: m[:, :good] for name, m in metrics.items()}
            history.blocks.append(finite)
            history.sps.append(np.full(good, chunk_sps))
            e.before = history
            if on_chunk is not None and good > 0:
                # The chunk's updates before the bad one are logged as every chunk's are (no state:
                # nothing to checkpoint), so TensorBoard holds what metrics.csv does.
                with contextlib.suppress(Exception):  # the bad update is what stops the run
                    on_chunk(Chunk(state=None, update=done + good, num_updates=n, chunk_updates=k, metrics=finite,
                                   history=history, steps_per_second=chunk_sps,
                                   train_seconds=previous_seconds + train_seconds, compile_seconds=compile_seconds,
                                   first=i == 0))
            raise
        history.blocks.append(metrics)
        history.sps.append(np.full(size, chunk_sps))
        chunk_return = _weighted_return(metrics)
        last_return = chunk_return if np.isfinite(chunk_return) else last_return
        done = end
        # The next chunk starts now unless the callback needs this chunk's state: the host's
        # logging then overlaps the training instead of keeping the devices waiting.  (Never in a
        # multi-process run, whose processes meet at every chunk.)
        if i + 1 < len(todo) and not multi and (on_chunk is None or (wants_state is not None
                                                                     and not wants_state(done))):
            running = programs[todo[i + 1] - done](state, hp), time.perf_counter()
            chunk_state = None
        else:
            # Multi-process: gather the split env state to every host, collectively (all processes
            # reach this line), so process 0 can checkpoint it; one all-gather per chunk.
            chunk_state = to_host(state) if multi else state
        if on_chunk is not None:
            on_chunk(Chunk(state=chunk_state, update=done, num_updates=n, chunk_updates=k, metrics=metrics,
                           history=history, steps_per_second=chunk_sps,
                           train_seconds=previous_seconds + train_seconds, compile_seconds=compile_seconds,
                           first=i == 0))
        if progress is not None:
            elapsed = time.perf_counter() - t_session  # wall time, host work included, for an honest ETA
            progress(Progress(
                update=done, num_updates=n, env_steps=done * config.batch_size, total_steps=n * config.batch_size,
                num_seeds=members, episode_return=last_return,
                steps_per_second=throughput(done * config.batch_size * members, previous_seconds + train_seconds),
                eta=elapsed / (done - session_start) * (n - done),
            ))
        if running is None:  # host work that overlapped the next chunk is in that chunk's time
            io_seconds += time.perf_counter() - now
    jax.block_until_ready(state)
    if multi:
        state = to_host(state)

    env_steps = np.arange(1, n + 1) * config.batch_size
    return RunResult(config=config, num_seeds=members, metrics=history.metrics(), env_steps=env_steps,
                     steps_per_second=history.steps_per_second(), compile_seconds=compile_seconds,
                     train_seconds=previous_seconds + train_seconds, state=state, io_seconds=io_seconds,
                     chunk_updates=k, cached_programs=len(cache_hits))


CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"  # jax.monitoring event of a persistent-cache hit


@contextlib.contextmanager
def _counting(event: str):
    """A list that collects one entry per ``jax.monitoring`` ``event`` recorded in the block."""
    seen: list[str] = []

    def listener(name, **_):
        if name == event:
            seen.append(name)

    jax.monitoring.register_event_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_listener(listener)


def _weighted_return(metrics: dict) -> float:
    """Mean return of all episodes that ended in these updates, over all seeds."""
    counts = np.asarray(metrics["episodes"], np.float64)
    returns = np.nan_to_num(np.asarray(metrics["episode_return_mean"], np.float64))
    total = counts.sum()
    return float((returns * counts).sum() / total) if total > 0 else float("nan")


def _check_updates(metrics: dict, first_update: int, env: str) -> None:
    """Raise a BadUpdateError naming the earliest update (and the lowest seed in it) that flagged
    a non-finite env output, loss or a broken time limit (in that order where several came in one
    update: the env's NaN is the cause of the loss's)."""
    checks = (
        ("env_nonfinite", NonFiniteError, f"{env} returned a non-finite reward or observation in the rollout of "
         "update {update} (seed index {seed}): check its step (an action space without bounds lets an extreme action "
         "reach it)"),
        ("nonfinite", NonFiniteError, "non-finite loss, gradient or parameters at update {update} (seed index "
         "{seed}); lower `lr` or `max_grad_norm` (clip harder), or check the env's rewards (`reward_scale`)"),
        ("bootstrap_overflow", TimeLimitError, f"{env} truncated episodes sooner than its declared time_limit at "
         "update {update} (seed index {seed}), so that update's value targets miss bootstrap values: the env "
         "must declare time_limit = None (see bpo_jax.envs.base.FunctionalEnv)"),
    )
    found = []  # (offset, check, seed): the earliest update, then the first check, then the lowest seed
    for i, (name, _, _) in enumerate(checks):
        bad = np.asarray(metrics.get(name, False)).astype(bool)  # [seeds, K]
        if bad.any():
            offset, seed = np.argwhere(bad.T)[0]
            found.append((int(offset), i, int(seed)))
    if found:
        offset, i, seed = min(found)
        _, error, message = checks[i]
        update = first_update + offset + 1
        raise error(message.format(update=update, seed=seed), update, seed)
