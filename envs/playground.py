"""playground suite: ``playground/<name>`` for every MuJoCo Playground environment.

``names()`` is ``mujoco_playground.registry.ALL_ENVS``: the DM Control Suite ports
(CartpoleBalance, CheetahRun, ...), locomotion (Go1*, G1*, H1*, Spot*, T1*, ...) and
manipulation (Panda*, Aloha*, Leap*, ...).  Each is built with
``registry.load(name, config_overrides=...)`` and driven without playground's brax
training wrappers (the base class auto-resets); time limit and action repeat are those of
brax's ``EpisodeWrapper``, which ``wrap_for_brax_training`` uses (see
:class:`bpo_jax.envs.brax.BraxApiEnv`).

Options (``make`` keyword arguments):

* ``episode_length``, ``action_repeat``: default to the task's config (1000 and 1 for most
  tasks; e.g. PandaPickCube 150, AlohaSinglePegInsertion action_repeat 2).  They are also
  written into the env's config, since a few tasks read them (PandaPickCubeCartesian and
  AlohaHandOver count steps themselves).  ``env.step`` does *not* repeat actions itself:
  its ``n_substeps = ctrl_dt / sim_dt`` physics steps are one control step.
* ``obs_key`` (default ``'state'``): locomotion and manipulation tasks observe a dict such
  as ``{'state', 'privileged_state'}``; the policy sees ``obs[obs_key]`` (the asymmetric
  critic input ``privileged_state`` is not exposed).  Array observations ignore it.
* ``impl`` (default ``'jax'``): MJX implementation, ``'jax'`` or ``'warp'`` (MuJoCo Warp).
  Playground's configs default to ``'warp'``; its own training scripts override it with
  ``--impl jax`` by default, as we do.  Warp keeps contact and constraint buffers shared by
  all worlds of a batch (no per-env axis); the base class's auto-reset leaves them whole
  (:func:`bpo_jax.envs.base.tree_where`), so Warp runs with fresh and cached resets alike
  (tested on one device; splitting a Warp batch over devices is not).  warp-lang also has a
  CPU backend, which is correct but slow (see ``benchmarks/RESULTS.md``); Warp is built for
  NVIDIA GPUs.  With few solver iterations
  (e.g. CartpoleBalance's 1) Warp prints ``solver iterations limit reached`` on stdout where
  the JAX implementation stays silent about the same cut-off.  Choosing Warp lowers
  warp-lang's log level to WARNING unless set (its INFO lines, one per kernel module loaded,
  would bury the progress output; :func:`bpo_jax.envs.registry.check_mjx_impl`).
* ``menagerie_path``: see below.
* anything else is a config override; nested fields use dots, e.g.
  ``make("playground/Go1JoystickFlatTerrain", **{"reward_config.scales.pose": 0.0})``.

Faithful: dynamics, rewards, observations and ``done`` (-> ``terminated``) are
playground's.  Not faithful: a finished episode restarts from a fresh ``env.reset``
(playground's default ``BraxAutoResetWrapper`` reuses the cached first state and keeps
``info``, e.g. the joystick command, across episodes); tasks that end episodes at their
own step limit (PandaPickCubeCartesian, AlohaHandOver) report that as ``terminated``,
because playground does not tell it apart; ``metrics`` are not reported; with
``action_repeat > 1`` the episode ends at the first terminal sub-step.

MuJoCo Menagerie (robot assets of the locomotion and manipulation tasks).  Playground
reads them from the module global ``mujoco_playground._src.mjx_env.MENAGERIE_PATH``
(``<site-packages>/mujoco_playground/external_deps/mujoco_menagerie``), and
``registry.load`` git-clones the repository there (pinned to ``MENAGERIE_COMMIT_SHA``) if
that directory does not exist.  Here:

* ``menagerie_path=`` or the environment variable ``BPO_JAX_MENAGERIE_PATH`` (the argument
  wins) names a local clone.  ``MENAGERIE_PATH`` is set to it only while the task is built
  (its assets are read in the constructor), then restored, so nothing is written anywhere
  and no download is attempted.  The directory must exist; assets missing from it raise
  :class:`MissingAssetsError`.
* With neither, playground's own mechanism runs (a clone into its package directory on
  first use); a failed clone (e.g. offline) raises :class:`MissingAssetsError` at once.

The DM Control Suite tasks ship their XML inside playground and never touch Menagerie.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, Optional

from bpo_jax.envs.brax import BraxApiEnv
from bpo_jax.envs.registry import MissingDependencyError, check_mjx_impl, require

MENAGERIE_ENV_VAR = "BPO_JAX_MENAGERIE_PATH"
MENAGERIE_URL = "https://github.com/google-deepmind/mujoco_menagerie"
DEFAULT_IMPL = "jax"


class MissingAssetsError(MissingDependencyError):
    """A playground task's MuJoCo Menagerie assets are not available; the message says how to get them."""


def names() -> list[str]:
    _require()
    from mujoco_playground import registry

    return list(registry.ALL_ENVS)


def make(
    name: str,
    num_envs: int,
    episode_length: Optional[int] = None,
    action_repeat: Optional[int] = None,
    obs_key: str = "state",
    impl: str = DEFAULT_IMPL,
    menagerie_path: Optional[str] = None,
    **overrides: Any,
) -> BraxApiEnv:
    """``playground/<name>``; see the module docstring for the options."""
    _require()
    from mujoco_playground import registry

    config = registry.get_default_config(name)
    _check_overrides(name, config, overrides)
    check_mjx_impl(f"playground/{name}", impl)
    overrides = {**overrides, "impl": impl}
    # Written into the config so tasks that read them agree with our time limit.
    if episode_length is not None:
        overrides["episode_length"] = episode_length
    if action_repeat is not None:
        overrides["action_repeat"] = action_repeat
    sim = _load(name, overrides, menagerie_path)
    # The env's own (overridden, possibly self-modified) config is authoritative: e.g.
    # vision Cartpole sets its episode_length to 250 in the constructor.
    final = getattr(sim, "_config", config)
    return BraxApiEnv(
        f"playground/{name}", num_envs, sim,
        episode_length=final.episode_length,
        action_repeat=final.get("action_repeat", 1),
        obs_key=obs_key,
    )


def needs_menagerie(name: str) -> bool:
    """Whether the task loads robot assets from MuJoCo Menagerie (locomotion, manipulation)."""
    from mujoco_playground import locomotion, manipulation

    return name in locomotion.ALL_ENVS or name in manipulation.ALL_ENVS


def _require() -> None:
    require("mujoco_playground", "playground", "playground")


def _check_overrides(name: str, config: Any, overrides: dict) -> None:
    """One-line error for unknown config fields (playground raises a multi-line KeyError)."""
    unknown = sorted(k for k in overrides if not _has_field(config, k))
    if unknown:
        own = ["episode_length", "action_repeat", "obs_key", "impl", "menagerie_path"]
        raise ValueError(
            f"playground/{name} has no option(s) {', '.join(unknown)}; valid: "
            f"{', '.join(sorted(set(config.keys()) | set(own)))} (nested config fields with dots)"
        )


def _has_field(config: Any, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def _load(name: str, overrides: dict, menagerie_path: Optional[str]) -> Any:
    from mujoco_playground import registry

    if not needs_menagerie(name):
        return registry.load(name, config_overrides=overrides)
    path = menagerie_path or os.environ.get(MENAGERIE_ENV_VAR) or None
    if path is None:
        path = _playground_menagerie(name)
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingAssetsError(_menagerie_message(name, f"{path} is not a directory"))
    with _menagerie_at(path):
        try:
            return registry.load(name, config_overrides=overrides)
        except (ValueError, OSError) as err:
            # MuJoCo's XML compiler raises ValueError for a missing mesh or include file.
            raise MissingAssetsError(_menagerie_message(name, f"loading from {path} failed: {_first_line(err)}")) from err


def _playground_menagerie(name: str) -> Path:
    """Playground's own Menagerie directory, cloned there by playground if missing."""
    from mujoco_playground._src import mjx_env

    try:
        mjx_env.ensure_menagerie_exists()
    except (subprocess.CalledProcessError, OSError) as err:
        where = mjx_env.MENAGERIE_PATH
        raise MissingAssetsError(_menagerie_message(name, f"playground could not clone it into {where}: {_first_line(err)}")) from None
    return Path(str(mjx_env.MENAGERIE_PATH))


@contextlib.contextmanager
def _menagerie_at(path: Path):
    """Point playground at ``path`` while a task is built (assets are read in constructors)."""
    from etils import epath
    from mujoco_playground._src import mjx_env

    saved = mjx_env.MENAGERIE_PATH
    mjx_env.MENAGERIE_PATH = epath.Path(path)
    try:
        yield
    finally:
        mjx_env.MENAGERIE_PATH = saved


def _menagerie_message(name: str, why: str) -> str:
    from mujoco_playground._src import mjx_env

    return (
        f"playground/{name} needs MuJoCo Menagerie ({why}); clone {MENAGERIE_URL} "
        f"(playground pins commit {mjx_env.MENAGERIE_COMMIT_SHA[:12]}) and pass menagerie_path=... "
        f"or set {MENAGERIE_ENV_VAR}"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
