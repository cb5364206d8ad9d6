"""atari suite: ``atari/<Game>-v5`` for every ROM that the installed ale-py ships.

The Arcade Learning Environment is C++, so its steps cannot be JAX functions; this adapter
puts them inside the compiled rollout in one of two ways, chosen with the env option
``backend`` (``--env-options backend=ale``):

* ``envpool`` (default): EnvPool's XLA interface (``envpool.make(..., env_type="gymnasium")
  .xla()``), custom calls that step the emulators from inside the jitted ``lax.scan``, no
  Python in the loop.  The pool runs in async mode with ``batch_size=1``: one ``send`` per
  environment, then one ``recv`` per environment (results scattered by ``env_id``), so the
  emulator threads step in parallel and single environments can be addressed.  That is how
  the adapter hides EnvPool's *next-step* auto-reset (after a done, EnvPool's next step of
  that environment ignores the action and returns the reset observation with reward 0): in
  the same adapter step, every environment that just finished is sent one more (reset) step
  at once and its reset frame received, so the protocol's same-step reset holds and that
  fake transition never reaches the rollout or the learner.
* ``ale``: ale-py's ``AtariVectorEnv`` with ``autoreset_mode="SameStep"`` behind a host
  callback (``jax.experimental.io_callback``); the true final frame of a finished game
  comes from ``info["final_obs"]``.  Slower (a host round-trip per step), no EnvPool needed.

**Seeds.** A custom call cannot be ``vmap``-ped, and the runner vmaps the whole training
program over seeds.  Both backends wrap their emulator calls in
``jax.custom_batching.custom_vmap``: a batch of S seeds of N environments is mapped onto one
pool of S*N emulators (created when the program is traced, one pool per size, kept for the
life of the env object), so ``--seeds S`` just works; seed s owns emulators s*N .. s*N+N-1.
Emulator randomness (no-op starts) is seeded per emulator: on the ``ale`` backend from the
run's JAX key at every ``reset``; on the ``envpool`` backend from the env option ``seed``
(default 0) when the pool is built, i.e. EnvPool's no-op draws do not follow the JAX key
(the policy's sampling does).  Resetting a pool (``env.reset`` in a new run) restarts every
game in it.  The suite is registered with ``host_state``: a checkpoint cannot hold the
emulators, so a resumed run starts every game again (its result is not bit-identical to a run
never interrupted), and a run trains on one device (XLA cannot split the emulator calls).
Gradients never flow through the emulator (none are needed).

**Preprocessing** follows the paper's SB3 pipeline (``make_atari_env`` = ``AtariWrapper``
plus ``VecFrameStack(4)`` on ``*NoFrameskip-v4``): no sticky actions
(``repeat_action_probability=0``), the minimal action set, up to ``noop_max=30`` no-op
starts, ``frame_skip=4`` with a max-pool over the last two frames, FIRE on reset for games
that have it, 84x84 grey frames, a 4-frame stack (channels last, newest last, zeroed at
every learner episode start as ``VecFrameStack`` does), reward sign-clipping for learning
(``clip_rewards``), and a limit of ``max_steps=27000`` agent steps (108k frames) per game.
Life loss is handled as SB3's ``EpisodicLifeEnv``: losing a life ends the *learner's*
episode (``terminated=True``, the frame stack restarts) but the game goes on; the emulators'
own ``episodic_life`` is off (it would reset the whole game).  ``episodic_life=False``
ends episodes only at game over.  Frames are uint8 ``[84, 84, 4]`` everywhere (state and
rollout); the network scales them.

**Metrics.** ``episode_return``/``episode_length`` and ``done_return``/``done_length``
count whole *games* (all lives) with the raw, unclipped score, as the paper's plots
(SB3 ``Monitor`` below the wrappers): on a life loss ``done`` is true for the learner but
``done_length`` is 0 and nothing is reported.  ``reward`` is the clipped reward the learner
uses.  Lengths are agent steps (SB3's Monitor counts emulator frames, 4x more).

**Remaining differences from SB3**, all small:

* after a life loss SB3 resets through ``EpisodicLifeEnv`` (one no-op step) and
  ``FireResetEnv`` (FIRE, then action 2), three emulator steps the agent never sees; here
  the game simply continues with the agent's next action (in Breakout the agent has to
  learn to press FIRE to relaunch the ball, as in EnvPool's and CleanRL's set-ups).  FIRE
  is pressed only when a game starts (the emulators' ``use_fire_reset``), once, where SB3
  presses FIRE then action 2;
* the emulators draw 0..noop_max-1 no-ops (SB3 ``NoopResetEnv``: 1..noop_max), from their
  own random generators, not SB3's;
* grey frames are the ALE's own greyscale palette, resized with OpenCV's INTER_AREA; SB3
  converts RGB with ``cv2.cvtColor(RGB2GRAY)`` (slightly different luminance weights) before
  the same resize;
* the frame stack starts a learner episode with three zero frames and the first frame, as
  ``VecFrameStack``; after a life loss its first frame is the frame where the life was lost
  (SB3: the frame after its reset no-op);
* the step limit counts agent steps of a game (27000, as the ALE v5 and EnvPool default);
  the ``*NoFrameskip-v4`` ids SB3 wraps count emulator frames instead.

Options (``--env-options key=value,...``): ``backend`` (envpool|ale), ``noop_max`` (>= 1;
1 = no no-ops), ``frame_skip``, ``max_steps``, ``episodic_life``, ``clip_rewards``,
``fire_reset``, ``frame_stack``, ``repeat_action_probability``, ``seed`` (envpool),
``num_threads`` (emulator threads per pool, 0 = the library's default).
"""
from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import os
import re
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bpo_jax.envs.base import Discrete, EnvState, ObsSpec
from bpo_jax.envs.options import check_options, keyword_defaults, refuse_unknown
from bpo_jax.envs.registry import MissingDependencyError, installed

FRAME = (84, 84)
INSTALL_HINT = "pip install 'bpo-jax[atari]'"  # pip reads the extra from the installed package, wherever it came from
BACKENDS = ("envpool", "ale")
_ALE_FRAME_LIMIT = 10**9  # the ale backend cuts games itself (max_steps counts agent steps)


# ROMs that ALE runs only in its multi-player modes: EnvPool lacks them, and ale-py's
# single-player vector env aborts the whole process on them (no exception to catch).
_MULTIPLAYER_ONLY = ("combat", "joust", "maze_craze", "warlords")


def _rom_ids() -> dict[str, str]:
    """{"Pong-v5": "pong", ...}: the ROMs in ale-py's wheel, found without importing it."""
    _require("ale_py", load=False)
    spec = importlib.util.find_spec("ale_py")
    roms = os.path.join(list(spec.submodule_search_locations)[0], "roms")
    games = sorted(f[:-4] for f in os.listdir(roms) if f.endswith(".bin") and f[:-4] not in _MULTIPLAYER_ONLY)
    return {"".join(part.capitalize() for part in g.split("_")) + "-v5": g for g in games}


def _require(module: str, load: bool = True) -> None:
    """Raise :class:`MissingDependencyError` (one line, with :data:`INSTALL_HINT`) unless
    ``module`` is installed (``load``: and imports)."""
    try:
        if not installed(module):
            raise ImportError(f"No module named {module!r}")
        if load:
            importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(f"the atari/ suite needs {module!r} ({err}); install it with: "
                                     f"{INSTALL_HINT}") from None


def names() -> list[str]:
    return list(_rom_ids())


def unlisted(name: str) -> Optional[str]:
    """Why ``name`` (``Combat-v5``, ``Joust``) is not listed where it is a ROM of
    :data:`_MULTIPLAYER_ONLY`; None for any other name."""
    base = name.rpartition("-v")[0] if re.fullmatch(r".+-v\d+", name) else name
    game = next((g for g in _MULTIPLAYER_ONLY if g.replace("_", "") == base.lower()), None)
    if game is None:
        return None
    listed = "".join(part.capitalize() for part in game.split("_")) + "-v5"
    return (f"atari/{listed} is a ROM that ALE runs only in its multi-player modes, which this single-agent suite "
            "does not train (EnvPool lacks it); `bpo-jax envs --suite atari` lists the games it trains")


def make(name: str, num_envs: int, **options) -> "AtariEnv":
    """``atari/<name>``; ``options`` are :class:`AtariEnv`'s keyword arguments, checked against
    their defaults' kinds (:mod:`bpo_jax.envs.options`) before anything starts."""
    defaults = keyword_defaults(AtariEnv.__init__)
    refuse_unknown(f"atari/{name}", options, defaults)
    return AtariEnv(name, num_envs, **check_options(f"atari/{name}", options, defaults))


@struct.dataclass
class AtariInner:
    lives: jax.Array  # [B] int32 lives left in the current game (life-loss detection)


def _push(stack: jax.Array, frame: jax.Array) -> jax.Array:
    """[..., 84, 84, K] stack with the oldest frame dropped and ``frame`` [..., 84, 84] appended last."""
    return jnp.concatenate([stack[..., 1:], frame[..., None]], axis=-1)


class AtariEnv:
    """``num_envs`` copies of one Atari game (see the module docstring)."""

    def __init__(self, game: str, num_envs: int, backend: str = "envpool", noop_max: int = 30, frame_skip: int = 4,
                 max_steps: int = 27_000, episodic_life: bool = True, clip_rewards: bool = True,
                 fire_reset: bool = True, frame_stack: int = 4, repeat_action_probability: float = 0.0,
                 seed: int = 0, num_threads: int = 0):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if backend not in BACKENDS:
            raise ValueError(f"atari: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if noop_max < 1:
            raise ValueError(f"atari: noop_max must be >= 1 (1 = no no-op starts; EnvPool crashes on 0), got {noop_max}")
        for key, value in (("frame_skip", frame_skip), ("max_steps", max_steps), ("frame_stack", frame_stack)):
            if not 1 <= int(value) < 2**31:  # the emulators count in int32
                raise ValueError(f"atari: {key} must be in [1, 2**31), got {value}")
        if not 0 <= seed < 2**31:
            raise ValueError(f"atari: seed must be in [0, 2**31) (EnvPool's int32 seed), got {seed}")
        if seed and backend == "ale":  # it would be recorded in config.json, and change nothing
            raise ValueError("atari: seed sets the envpool backend's emulator seeds; the ale backend seeds its games "
                             "from the run's key (--seed): drop the seed option")
        if not 0 <= repeat_action_probability <= 1:
            raise ValueError(f"atari: repeat_action_probability must be in [0, 1], got {repeat_action_probability}")
        if num_threads < 0:
            raise ValueError(f"atari: num_threads must be >= 0 (0: the library's default), got {num_threads}")
        roms = _rom_ids()
        if game not in roms:
            raise ValueError(f"atari: unknown game {game!r}")
        self.name = f"atari/{game}"
        self.num_envs = int(num_envs)
        self.backend = backend
        self.max_steps = int(max_steps)
        self.episodic_life = bool(episodic_life)
        self.clip_rewards = bool(clip_rewards)
        self.frame_stack = int(frame_stack)
        self.obs_spec = ObsSpec(FRAME + (self.frame_stack,), jnp.uint8)
        emulator = dict(noop_max=int(noop_max), frame_skip=int(frame_skip), fire_reset=bool(fire_reset),
                        repeat_action_probability=float(repeat_action_probability), seed=int(seed),
                        num_threads=int(num_threads), max_steps=self.max_steps)
        cls = _EnvPoolBackend if backend == "envpool" else _AleBackend
        self._backend = cls(game, roms[game], emulator)
        self.action_space = Discrete(self._backend.num_actions())

    # ------------------------------------------------------------ protocol
    def reset(self, key: jax.Array) -> EnvState:
        step_keys = jax.random.split(key, self.num_envs)
        seeds = jax.random.randint(jax.random.fold_in(key, 1), (self.num_envs,), 0, 2**31 - 1, jnp.int32)
        frame, lives = self._backend.op("reset", self.num_envs)(seeds)
        obs = _push(jnp.zeros((self.num_envs,) + self.obs_spec.shape, jnp.uint8), frame)
        zeros, izeros = jnp.zeros(self.num_envs), jnp.zeros(self.num_envs, jnp.int32)
        false = jnp.zeros(self.num_envs, bool)
        return EnvState(obs=obs, reward=zeros, terminated=false, truncated=false, final_obs=obs,
                        episode_return=zeros, episode_length=izeros, done_return=zeros, done_length=izeros,
                        inner=AtariInner(lives=lives), key=step_keys)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        length = state.episode_length + 1
        cut = length >= self.max_steps  # the ale backend truncates on this; EnvPool counts the same steps itself
        # The lives argument orders this step after the call that made ``state``: emulator calls
        # are side effects, and an action that does not depend on the frames (a random policy)
        # would leave the compiler free to run a step before the reset.
        frame, raw, game_over, truncated, lives, final_frame, final_lives = self._backend.op("step", self.num_envs)(
            action.astype(jnp.int32), cut, state.inner.lives)
        game_end = game_over | truncated
        # Lives before any restart: a life lost on the step that hits the limit ends the
        # learner's episode (terminated, no bootstrap), as SB3's EpisodicLifeEnv under TimeLimit.
        life_loss = (final_lives < state.inner.lives) & ~game_over if self.episodic_life else jnp.zeros_like(game_end)
        terminated = game_over | life_loss
        truncated = truncated & ~terminated  # terminal wins: nothing to bootstrap
        learner_done = terminated | truncated
        final_obs = _push(state.obs, final_frame)
        restart = _push(jnp.zeros_like(state.obs), frame)
        obs = jnp.where(learner_done[:, None, None, None], restart, _push(state.obs, frame))
        episode_return = state.episode_return + raw
        reward = jnp.sign(raw) if self.clip_rewards else raw
        return EnvState(
            obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=final_obs,
            episode_return=jnp.where(game_end, 0.0, episode_return),
            episode_length=jnp.where(game_end, 0, length),
            done_return=jnp.where(game_end, episode_return, 0.0),
            done_length=jnp.where(game_end, length, 0),
            inner=AtariInner(lives=lives), key=state.key,
        )


# ---------------------------------------------------------------- backends
def _seed_batched(make_op: Callable[[int], Callable], size: int) -> Callable:
    """``make_op(size)``'s call, with a vmap rule that maps a batch of S calls (seeds) onto one
    call of size S*size: every argument and result has a leading [size] axis."""
    raw = make_op(size)

    @jax.custom_batching.custom_vmap
    def op(*args):
        return raw(*args)

    @op.def_vmap
    def rule(axis_size, in_batched, *args):
        args = [x if b else jnp.broadcast_to(x, (axis_size,) + x.shape) for x, b in zip(args, in_batched)]
        flat = [x.reshape((axis_size * size,) + x.shape[2:]) for x in args]
        out = _seed_batched(make_op, axis_size * size)(*flat)
        out = jax.tree.map(lambda y: y.reshape((axis_size, size) + y.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return op


class _Backend:
    """Emulator pools by size; ``op(name, size)`` is the seed-batchable JAX call."""

    def __init__(self, game: str, rom: str, options: dict[str, Any]):
        self.game, self.rom, self.options = game, rom, options
        self._pools: dict[int, Any] = {}
        # Compiled programs keep this backend alive to the end; free the emulators before the
        # interpreter tears down their bindings (ale-py's otherwise prints nanobind leak reports).
        atexit.register(self._pools.clear)

    def pool(self, size: int):
        if size not in self._pools:
            self._pools[size] = self._make_pool(size)
        return self._pools[size]

    def op(self, name: str, size: int) -> Callable:
        return _seed_batched(functools.partial(self._ops, name), size)

    @functools.lru_cache(maxsize=None)
    def _ops(self, name: str, size: int) -> Callable:
        return getattr(self, f"_{name}")(size)

    def _out_shapes(self, size: int):
        return (jax.ShapeDtypeStruct((size,) + FRAME, jnp.uint8), jax.ShapeDtypeStruct((size,), jnp.float32),
                jax.ShapeDtypeStruct((size,), jnp.bool_), jax.ShapeDtypeStruct((size,), jnp.bool_),
                jax.ShapeDtypeStruct((size,), jnp.int32), jax.ShapeDtypeStruct((size,) + FRAME, jnp.uint8),
                jax.ShapeDtypeStruct((size,), jnp.int32))

    def _reset_shapes(self, size: int):
        return (jax.ShapeDtypeStruct((size,) + FRAME, jnp.uint8), jax.ShapeDtypeStruct((size,), jnp.int32))


class _EnvPoolBackend(_Backend):
    def __init__(self, game, rom, options):
        try:
            _require("envpool")
        except MissingDependencyError as err:
            raise MissingDependencyError(f"{err} (or use --env-options backend=ale)") from None
        import envpool
        if game not in envpool.list_all_envs():
            raise ValueError(f"atari/{game}: EnvPool has no such game; use --env-options backend=ale")
        super().__init__(game, rom, options)
        self._envpool = envpool

    def num_actions(self) -> int:
        return int(self._envpool.make_spec(self.game, full_action_space=False).action_space.n)

    def _make_pool(self, size: int):
        o = self.options
        env = self._envpool.make(
            self.game, env_type="gymnasium", num_envs=size, batch_size=1, num_threads=o["num_threads"],
            seed=o["seed"], stack_num=1, frame_skip=o["frame_skip"], noop_max=o["noop_max"], episodic_life=False,
            reward_clip=False, use_fire_reset=o["fire_reset"], max_episode_steps=o["max_steps"],
            repeat_action_probability=o["repeat_action_probability"], img_height=FRAME[0], img_width=FRAME[1],
            gray_scale=True, full_action_space=False,
        )
        return env, env.xla()

    def _reset(self, size: int) -> Callable:
        def host(seeds):  # EnvPool seeds its emulators once, when the pool is built
            env, _ = self.pool(size)
            env.async_reset()
            frames = np.zeros((size,) + FRAME, np.uint8)
            lives = np.zeros(size, np.int32)
            for _ in range(size):
                obs, _, _, _, info = env.recv()
                eid = int(info["env_id"][0])
                frames[eid], lives[eid] = obs[0, 0], info["lives"][0]
            return frames, lives

        from jax.experimental import io_callback
        return lambda seeds: io_callback(host, self._reset_shapes(size), seeds)

    def _step(self, size: int) -> Callable:
        handle, recv, send, _ = self.pool(size)[1]

        def gather(count, outputs, handle):
            """``count`` recvs (completion order), each scattered to its env_id."""
            def one(_, carry):
                h, outs = carry
                h, (obs, rew, term, trunc, info) = recv(h)
                e = info["env_id"][0]
                values = (obs[0, 0], rew[0], term[0], trunc[0], info["lives"][0].astype(jnp.int32))
                return h, tuple(o.at[e].set(v) for o, v in zip(outs, values))
            return jax.lax.fori_loop(0, count, one, (handle, outputs))

        def step(action, cut, after):
            del cut  # EnvPool truncates at max_episode_steps itself (the same agent-step count)
            h, _ = jax.lax.optimization_barrier((jnp.asarray(handle), after))
            h = jax.lax.fori_loop(0, size, lambda e, h: send(h, action[e][None], e[None]), h)
            empty = (jnp.zeros((size,) + FRAME, jnp.uint8), jnp.zeros(size, jnp.float32), jnp.zeros(size, bool),
                     jnp.zeros(size, bool), jnp.zeros(size, jnp.int32))
            h, (frame, reward, game_over, truncated, lives) = gather(size, empty, h)
            done = game_over | truncated
            # EnvPool resets a finished env on its *next* step (the action is ignored): take that
            # step now, for the finished envs only, so the reset happens within this step.
            noop = jnp.zeros((1,), jnp.int32)
            h = jax.lax.fori_loop(0, size, lambda e, h: jax.lax.cond(
                done[e], lambda h: send(h, noop, e[None]), lambda h: h, h), h)
            _, (reset_frame, _, _, _, reset_lives) = gather(done.sum(), (frame, reward, game_over, truncated, lives), h)
            return reset_frame, reward, game_over, truncated & ~game_over, reset_lives, frame, lives

        return step


class _AleBackend(_Backend):
    def __init__(self, game, rom, options):
        _require("ale_py")
        super().__init__(game, rom, options)

    def num_actions(self) -> int:
        return int(self.pool(1).single_action_space.n)

    def _make_pool(self, size: int):
        from ale_py.vector_env import AtariVectorEnv

        o = self.options
        return AtariVectorEnv(
            self.rom, size, num_threads=o["num_threads"], max_num_frames_per_episode=_ALE_FRAME_LIMIT,
            repeat_action_probability=o["repeat_action_probability"], full_action_space=False,
            autoreset_mode="SameStep", img_height=FRAME[0], img_width=FRAME[1], grayscale=True, stack_num=1,
            frameskip=o["frame_skip"], maxpool=True, noop_max=o["noop_max"], episodic_life=False,
            reward_clipping=False, use_fire_reset=o["fire_reset"],
        )

    def _reset(self, size: int) -> Callable:
        def host(seeds):
            obs, info = self.pool(size).reset(seed=np.asarray(seeds, np.int64))
            return np.ascontiguousarray(obs[:, 0]), np.asarray(info["lives"], np.int32)

        from jax.experimental import io_callback
        return lambda seeds: io_callback(host, self._reset_shapes(size), seeds)

    def _step(self, size: int) -> Callable:
        def host(action, cut, after):
            del after  # only orders the call (see AtariEnv.step)
            env = self.pool(size)
            obs, reward, game_over, truncated, info = env.step(np.asarray(action, np.int32))
            frame = np.array(obs[:, 0])
            lives = np.array(info["lives"], np.int32)
            final, final_lives = frame.copy(), lives.copy()  # a game ended here was restarted: its own are gone
            ended = np.asarray(game_over | truncated)
            if ended.any():
                final[ended] = np.asarray(info["final_obs"])[ended, 0]
            cut = np.asarray(cut) & ~ended
            if cut.any():  # the step limit: restart those games now (same-step reset)
                obs2, info2 = env.reset(options={"reset_mask": cut})
                frame[cut] = obs2[cut, 0]
                lives[cut] = np.asarray(info2["lives"], np.int32)[cut]
            return (frame, np.asarray(reward, np.float32), np.asarray(game_over, bool),
                    np.asarray(truncated, bool) | cut, lives, final, final_lives)

        from jax.experimental import io_callback
        return lambda action, cut, after: io_callback(host, self._out_shapes(size), action, cut, after)
