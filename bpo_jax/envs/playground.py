"""playground suite: ``playground/<name>`` for every MuJoCo Playground environment.

``names()`` is ``mujoco_playground.registry.ALL_ENVS`` (read from playground's source until
it is imported, which takes seconds): the DM Control Suite ports
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
  (:func:`bpo_jax.envs.mjx.warp.data_nodes`), so Warp runs with fresh and cached resets alike
  (tested on one device; splitting a Warp batch over devices is not).  warp-lang also has a
  CPU backend, which is correct but slow (see ``benchmarks/RESULTS.md``); Warp is built for
  NVIDIA GPUs.  With few solver iterations
  (e.g. CartpoleBalance's 1) Warp prints ``solver iterations limit reached`` on stdout where
  the JAX implementation stays silent about the same cut-off.  Choosing Warp lowers
  warp-lang's log level to WARNING unless set (its INFO lines, one per kernel module loaded,
  would bury the progress output; :func:`bpo_jax.envs.mjx.warp.check_impl`).
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
``registry.load`` git-clones the repository there (pinned to ``MENAGERIE_COMMIT_SHA``, with a
download progress bar) if that directory does not exist.  Here the directory is found and
checked before anything is loaded, so that clone never starts:

* ``menagerie_path=`` or the environment variable ``BPO_JAX_MENAGERIE_PATH`` (the argument
  wins) names a local clone; with neither, playground's own directory is used.
* A directory that does not exist raises :class:`MissingAssetsError` at once (one line saying
  how to provide it); assets missing from an existing one raise it when the task is built.
* ``MENAGERIE_PATH`` is set to the directory only while the task is built (its assets are
  read in the constructor), then restored, so nothing is written anywhere.

The DM Control Suite tasks ship their XML inside playground and never touch Menagerie.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Optional

from bpo_jax.envs.brax import BraxApiEnv, check_episode_options
from bpo_jax.envs.mjx import warp
from bpo_jax.envs.options import check_options, refuse_unknown
from bpo_jax.envs.registry import MissingDependencyError, registry_names, require
from bpo_jax.errors import first_line

MENAGERIE_ENV_VAR = "BPO_JAX_MENAGERIE_PATH"
MENAGERIE_URL = "https://github.com/google-deepmind/mujoco_menagerie"
DEFAULT_IMPL = "jax"
# Playground's task groups, in the order of registry.ALL_ENVS; locomotion and manipulation
# load their robots from Menagerie.
_GROUPS = ("dm_control_suite", "locomotion", "manipulation")


class MissingAssetsError(MissingDependencyError):
    """A playground task's MuJoCo Menagerie assets are not available; the message says how to get them."""


def names() -> list[str]:
    _require(load=False)
    return [name for group in _GROUPS for name in _group_names(group)]


def _group_names(group: str) -> list[str]:
    """The tasks of one of playground's groups (its ``ALL_ENVS``, the keys of ``_envs``)."""
    module = f"mujoco_playground._src.{group}"
    return registry_names(module, "_envs", lambda: list(importlib.import_module(module).ALL_ENVS))


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
    where = f"playground/{name}"
    if menagerie_path is not None and not isinstance(menagerie_path, (str, os.PathLike)):
        raise ValueError(f"{where}: menagerie_path must be a directory path, got {menagerie_path!r}")
    _require()
    menagerie = _menagerie_dir(name, menagerie_path)  # first: nothing may start playground's clone
    from mujoco_playground import registry

    config = registry.get_default_config(name)
    overrides = _check_overrides(name, config, overrides)
    warp.check_impl(where, impl)
    if impl == "warp":
        warp.require_installed(where)
    length, repeat = check_episode_options(where, 1 if episode_length is None else episode_length,
                                           1 if action_repeat is None else action_repeat, obs_key)
    overrides = {**overrides, "impl": impl}
    # Written into the config so tasks that read them agree with our time limit.
    if episode_length is not None:
        overrides["episode_length"] = length
    if action_repeat is not None:
        overrides["action_repeat"] = repeat
    sim = _load(name, overrides, menagerie)
    # The env's own (overridden, possibly self-modified) config is authoritative: e.g.
    # vision Cartpole sets its episode_length to 250 in the constructor.
    final = getattr(sim, "_config", config)
    env = BraxApiEnv(
        f"playground/{name}", num_envs, sim,
        episode_length=final.episode_length,
        action_repeat=final.get("action_repeat", 1),
        obs_key=obs_key,
        state_nodes=warp.data_nodes(),
    )
    if impl == "warp":
        env.skip_idle_resets = warp.SKIP_IDLE_RESETS
    return env


def needs_menagerie(name: str) -> bool:
    """Whether the task loads robot assets from MuJoCo Menagerie (locomotion, manipulation)."""
    return name in _group_names("locomotion") or name in _group_names("manipulation")


def unbuildable() -> Optional[tuple[list[str], str]]:
    """The tasks that need MuJoCo Menagerie, where it is not where they would read it
    ($BPO_JAX_MENAGERIE_PATH, else playground's directory; found without importing playground),
    and how to provide it; None where it is there."""
    given = os.environ.get(MENAGERIE_ENV_VAR)
    if given:
        path = Path(given).expanduser()
    else:
        spec = importlib.util.find_spec("mujoco_playground")
        if spec is None or spec.origin is None:
            return None  # not installed: the suite is unavailable, which says so
        path = Path(spec.origin).parent / "external_deps" / "mujoco_menagerie"  # playground's MENAGERIE_PATH
    if path.is_dir():
        return None
    return ([n for n in names() if needs_menagerie(n)],
            f"these need MuJoCo Menagerie ({MENAGERIE_URL}), which is not at {path}: clone it and point "
            f"${MENAGERIE_ENV_VAR} or the env option menagerie_path at it")


def _require(load: bool = True) -> None:
    if load:  # mujoco first: a bad MUJOCO_GL is reported in one line (registry.require)
        require("mujoco", "playground", "playground")
    require("mujoco_playground", "playground", "playground", load)


def _check_overrides(name: str, config: Any, overrides: dict) -> dict:
    """One-line error for unknown config fields (playground raises a multi-line KeyError), and
    for values not of the field's kind (:mod:`bpo_jax.envs.options`; the config raises a
    TypeError for some, and takes NaN or a bool for a number); the overrides, converted."""
    own = ["episode_length", "action_repeat", "obs_key", "impl", "menagerie_path"]
    refuse_unknown(f"playground/{name}", overrides, [k for k in overrides if _has_field(config, k)],
                   listed=set(config.keys()) | set(own), note=" (nested config fields with dots)")
    # A whole sub-config (e.g. vision_config=...) is left to the config to check.
    fields = {k: _field(config, k) for k in overrides}
    return check_options(f"playground/{name}", overrides, fields, skip=[k for k, v in fields.items() if _is_node(v)])


def _is_node(value: Any) -> bool:
    return hasattr(value, "keys")


def _field(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _has_field(config: Any, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not _is_node(node) or part not in node:
            return False
        node = node[part]
    return True


def _menagerie_dir(name: str, menagerie_path: Optional[str]) -> Optional[Path]:
    """The existing Menagerie directory task ``name`` will load its robot from (None: it needs
    none): ``menagerie_path``, else ``$BPO_JAX_MENAGERIE_PATH``, else playground's own.  Checked
    up front because ``registry.load`` clones Menagerie into playground's directory when that is
    missing, a download with a progress bar, offline a failure after it."""
    if not needs_menagerie(name):
        return None
    given = menagerie_path or os.environ.get(MENAGERIE_ENV_VAR) or None
    if given is not None:
        path = Path(given).expanduser()
        why = f"{path} is not a directory"
    else:
        from mujoco_playground._src import mjx_env

        path = Path(str(mjx_env.MENAGERIE_PATH))
        why = f"not found in playground's {path}; bpo-jax does not download it"
    if not path.is_dir():
        raise MissingAssetsError(_menagerie_message(name, why))
    return path


def _load(name: str, overrides: dict, menagerie: Optional[Path]) -> Any:
    """The playground task, its assets read from the ``menagerie`` directory (if it needs one)."""
    from mujoco_playground import registry

    if menagerie is None:
        return registry.load(name, config_overrides=overrides)
    with _menagerie_at(menagerie):
        try:
            return registry.load(name, config_overrides=overrides)
        except (ValueError, OSError) as err:
            # MuJoCo's XML compiler raises ValueError for a missing mesh or include file.
            why = f"loading from {menagerie} failed: {first_line(err)[:200]}"
            raise MissingAssetsError(_menagerie_message(name, why)) from err


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
