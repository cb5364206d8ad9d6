"""Evaluate a checkpoint's deterministic policy: N episodes per trained seed, one program.

The policy acts with its mode (the Gaussian mean, the argmax of the logits), through the same
action squashing as in training, on observations normalised by the statistics saved with the
checkpoint.  The N episodes run in parallel as N copies of the env, fresh resets (no reset
pool: evaluation reads the task's true initial-state distribution), inside one jitted
``while_loop`` that stops when every episode has ended (or at ``max_steps``), vmapped over the
checkpoint's seeds (mapped one after another for suites stepped through host callbacks).
Every seed is evaluated on the same initial states (one evaluation key), so differences
between seeds are differences between policies; except on Atari's EnvPool backend, whose
no-op starts follow the emulators' own seeds, not the key.
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bpo_jax import normalization as norm
from bpo_jax.config import Config
from bpo_jax.envs import make as make_env
from bpo_jax.envs.registry import host_state
from bpo_jax.errors import first_line
from bpo_jax.checks import check_config, check_finite, check_int, check_seed, state_seeds
from bpo_jax.networks import action_to_env, make_network

MAX_EPISODES = 2**20  # episodes run side by side, one env copy each: more does not fit a machine


def make_policy(config: Config, network, action_space):
    """act(params, obs_stats, obs [B, *O]) -> env action [B, ...], deterministic."""
    def act(params, obs_stats, obs):
        if obs_stats is not None:
            obs = norm.normalize(obs_stats, obs, config.obs_clip)
        action = network.apply(params, obs, method="policy").mode()
        return action_to_env(action_space, action, config.action_squash)
    return act


def make_evaluate(config: Config, episodes: int, max_steps: int):
    """evaluate(params, obs_stats, key) -> (returns [E], lengths [E], finished [E]) for one seed;
    an episode still running at ``max_steps`` reports its partial return and finished = False."""
    check_config(config)
    episodes, max_steps = check_int("episodes", episodes, high=MAX_EPISODES), check_int("max_steps", max_steps)
    env = make_env(config.env, num_envs=episodes, reset_pool=0, **config.env_kwargs())
    act = make_policy(config, make_network(config, env.action_space, env.obs_spec), env.action_space)

    def evaluate(params, obs_stats, key):
        state = env.reset(key)
        zeros = jnp.zeros(episodes)
        init = (jnp.zeros((), jnp.int32), state, jnp.zeros(episodes, bool), zeros, zeros)

        def cond(carry):
            t, _, finished, _, _ = carry
            return (t < max_steps) & ~finished.all()

        def body(carry):
            t, state, finished, returns, lengths = carry
            state = env.step(state, act(params, obs_stats, state.obs))
            ended = state.done_length > 0  # = done, except an Atari life loss (the game goes on)
            first_end = ended & ~finished  # auto-reset continues; only the first episode counts
            returns = jnp.where(first_end, state.done_return, returns)
            lengths = jnp.where(first_end, state.done_length.astype(jnp.float32), lengths)
            return t + 1, state, finished | ended, returns, lengths

        _, state, finished, returns, lengths = jax.lax.while_loop(cond, body, init)
        returns = jnp.where(finished, returns, state.episode_return)
        lengths = jnp.where(finished, lengths, state.episode_length.astype(jnp.float32))
        return returns, lengths, finished

    return config.with_precision(evaluate), env


@functools.lru_cache(maxsize=4)
def _program(config: Config, episodes: int, max_steps: int):
    """The jitted, seed-vmapped evaluation (cached: a second evaluation does not recompile), the
    env's action space and observation spec."""
    evaluate, env = make_evaluate(config, episodes, max_steps)
    if host_state(config.env):
        # Emulators stepped through host callbacks cannot run under a while loop whose predicate
        # is batched over seeds (JAX refuses unordered effects there): seeds one after another.
        seeds = lambda params, obs_stats, key: jax.lax.map(lambda p: evaluate(*p, key), (params, obs_stats))
    else:
        seeds = jax.vmap(evaluate, in_axes=(0, 0, None))
    return jax.jit(seeds), env.action_space, env.obs_spec


def _seeds_of(config: Config, action_space, obs_spec, state: Any) -> tuple[Any, Any]:
    """(params, obs_stats) of ``state`` with a leading seed axis (one seed's state gets one);
    ValueError where they are not those of ``config``'s network, or not finite."""
    seeds = state_seeds(config, action_space, obs_spec, state)
    check_finite(state, seeds)
    params, obs_stats = state.params, state.obs_stats
    return (params, obs_stats) if seeds is not None else jax.tree.map(lambda x: np.asarray(x)[None], (params, obs_stats))


def run_eval(config: Config, state: Any, episodes: int = 10, seed: int = 0, max_steps: int = 10_000) -> dict:
    """Evaluate every seed of a (vmapped, restored) TrainState (one seed's unbatched state counts as
    a run of one seed); returns the eval.json content without the checkpoint fields.  ValueError,
    before anything compiles, where an argument is off: ``episodes`` and ``max_steps`` integers
    >= 1, ``seed`` in [0, 2**32), ``state`` the parameters of ``config``'s network."""
    check_config(config)
    episodes, max_steps = check_int("episodes", episodes, high=MAX_EPISODES), check_int("max_steps", max_steps)
    seed = check_seed(seed)
    program, action_space, obs_spec = _program(config, episodes, max_steps)
    params, obs_stats = _seeds_of(config, action_space, obs_spec, state)
    returns, lengths, finished = jax.device_get(program(params, obs_stats, jax.random.key(seed)))
    per_seed = [
        {
            "seed_index": i,
            "mean_return": float(np.mean(returns[i])),
            "std_return": float(np.std(returns[i])),
            "mean_length": float(np.mean(lengths[i])),
            "episodes_finished": int(np.sum(finished[i])),
            "returns": [float(r) for r in returns[i]],
        }
        for i in range(returns.shape[0])
    ]
    return {
        "env": config.env,
        "algo": config.algo,
        "episodes": episodes,
        "seed": seed,
        "policy": "deterministic (Gaussian mean / argmax)",
        "max_steps": max_steps,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "per_seed": per_seed,
    }


# ------------------------------------------------------------------ video
class VideoUnavailable(RuntimeError):
    """Rendering is not possible here (no renderer for this suite, no OpenGL context, no encoder)."""


def record_video(config: Config, state: Any, path: str, seed: int = 0, max_frames: int = 1000,
                 size: tuple[int, int] = (240, 320), max_steps: Optional[int] = None) -> str:
    """Render the first episode of seed 0's deterministic policy (of a run's state, or of one
    seed's unbatched state) to ``path`` (.mp4 when an ffmpeg writer is installed, else .gif);
    returns the path written.  At most ``max_frames`` frames, one per env step, and at most
    ``max_steps`` where given (as :func:`run_eval`'s: the episode is cut there; the renderer
    then simulates no further).  MuJoCo-based tasks only (an env with ``mj_model`` whose state has
    ``qpos``), and only with an OpenGL context (MUJOCO_GL=egl or osmesa on a headless machine):
    otherwise :class:`VideoUnavailable`.  Arguments as :func:`run_eval` checks them (ValueError)."""
    check_config(config)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path, got {path!r}")
    seed, max_frames = check_seed(seed), check_int("max_frames", max_frames)
    if max_steps is not None:
        max_frames = min(max_frames, check_int("max_steps", max_steps))
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and
            all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise ValueError(f"size must be (height, width) in pixels, got {size!r}")
    env = make_env(config.env, num_envs=1, reset_pool=0, **config.env_kwargs())
    params, obs_stats = jax.tree.map(lambda x: x[0], _seeds_of(config, env.action_space, env.obs_spec, state))
    model = getattr(env, "mj_model", None)
    if model is None:
        raise VideoUnavailable(f"{config.env} has no MuJoCo model to render (video: mjx/ tasks only)")
    try:  # checked before the episode compiles and renders
        import imageio.v2 as imageio
    except ImportError:
        raise VideoUnavailable("writing the video needs imageio: pip install 'bpo-jax[mujoco]'") from None
    import mujoco

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # glfw warns before failing without a display
            renderer = mujoco.Renderer(model, *map(int, size))
    except Exception as e:
        raise VideoUnavailable(f"no OpenGL context for MuJoCo rendering ({first_line(e)}); "
                               "try MUJOCO_GL=egl or MUJOCO_GL=osmesa")
    act = make_policy(config, make_network(config, env.action_space, env.obs_spec), env.action_space)

    def step(env_state, _):
        next_state = env.step(env_state, act(params, obs_stats, env_state.obs))
        return next_state, (env_state.inner.qpos[0], next_state.done[0])

    episode = config.with_precision(lambda key: jax.lax.scan(step, env.reset(key), None, length=max_frames))
    _, (qpos, done) = jax.jit(episode)(jax.random.key(seed))
    qpos, done = np.asarray(qpos), np.asarray(done)
    end = int(np.argmax(done)) + 1 if done.any() else max_frames
    data = mujoco.MjData(model)
    frames = []
    for q in qpos[:end]:
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        renderer.update_scene(data)
        frames.append(renderer.render().copy())
    return _write_frames(imageio, frames, path, fps=int(round(1.0 / getattr(env, "dt", 0.05))))


def _write_frames(imageio, frames: list, path: str, fps: int) -> str:
    base, _ = os.path.splitext(path)
    try:
        imageio.mimsave(base + ".mp4", frames, fps=fps)
        return base + ".mp4"
    except Exception:
        pass
    try:
        imageio.mimsave(base + ".gif", frames, duration=1000.0 / fps)
        return base + ".gif"
    except Exception as e:
        raise VideoUnavailable(f"could not encode the video ({first_line(e)})")


def summary_lines(result: dict) -> list[str]:
    """Console lines: one per seed, then the mean over seeds when there are several."""
    lines = []
    for s in result["per_seed"]:
        unfinished = result["episodes"] - s["episodes_finished"]
        note = f"; {unfinished} cut at the {result['max_steps']}-step limit" if unfinished else ""
        lines.append(f"seed {s['seed_index']}: return {s['mean_return']:.2f} +- {s['std_return']:.2f} over "
                     f"{result['episodes']} episodes (mean length {s['mean_length']:.1f}{note})")
    if len(result["per_seed"]) > 1:
        lines.append(f"all seeds: return {result['mean_return']:.2f} +- {result['std_return']:.2f}")
    return lines


def default_eval_path(run_dir: Optional[str], ckpt: str) -> str:
    """eval.json in the run directory, or beside the checkpoint folder."""
    return os.path.join(run_dir or os.path.dirname(os.path.abspath(ckpt)), "eval.json")
