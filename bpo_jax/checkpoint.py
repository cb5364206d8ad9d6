"""Checkpoints of a whole run: save and restore the full vmapped TrainState with orbax.

A checkpoint is everything a true continuation needs, so that resuming on CPU gives the
same final parameters, bit for bit, as a run that was never interrupted: parameters,
optimiser state (Adam moments and step counts, hence the learning-rate schedule), the
normaliser statistics, every PRNG key (the trainer's and each environment's), the
environment states (including an MJX simulator state), the update counter, and the
metric rows so far.  Layout::

    OUT/checkpoints/step_00000040/     40 = updates done
        metadata.json    format version, bpo-jax version, num_seeds, update, chunk size,
                         and every state leaf's path, shape and dtype
        config.json      the resolved configuration (the run's program)
        arrays/          orbax PyTree checkpoint: {"state": leaves, "metrics": rows, ...}

Typed PRNG keys are stored as their raw ``key_data`` (uint32) and re-wrapped with the
recorded implementation on restore.  Leaves are stored flat under their index and checked
against the shapes the configuration implies, so a checkpoint that does not fit the program
(another env, algorithm or network) is refused with a message naming the first leaf that
differs.  No pickle anywhere: orbax writes tensorstore arrays, the rest is JSON.

Writes are atomic: everything goes into a hidden temporary folder that is renamed into place
only when complete, so a run killed mid-save leaves the previous checkpoint intact; only the
newest ``keep`` checkpoints are kept.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import numpy as np

from bpo_jax import algorithms, envs, plugins
from bpo_jax.config import Config, ConfigError
from bpo_jax.errors import finishes_before_interrupt, first_line
from bpo_jax.reporting import INCOMPLETE, is_llm_run, write_json
from bpo_jax.runner import Chunk, Start, is_key as _is_key, state_template

FORMAT_VERSION = 2
FORMAT_CHANGES = {2: "the optimiser state is that of the parameters raveled into one vector"}  # format -> what changed
STEP_PREFIX = "step_"
CHECKPOINTS = "checkpoints"  # the folder inside a run directory
_TMP_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit this program; one-line message."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint's files are missing, cut or unreadable (not a checkpoint of another program):
    an older checkpoint of the same run may still be whole."""


# ------------------------------------------------------------------ leaves
def leaf_path(path) -> str:
    """'params/params/actor/Dense_0/kernel' from a jax key path."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _describe(path: str, x) -> dict:
    """JSON description of a leaf; key arrays are described by their uint32 key data, with
    their key dtype (e.g. key<fry>) and, for real arrays, the implementation to re-wrap with."""
    if _is_key(x):
        data_shape = jax.eval_shape(jax.random.key_data, x).shape
        impl = str(jax.random.key_impl(x)) if isinstance(x, jax.Array) else None
        return {"path": path, "shape": list(data_shape), "dtype": str(x.dtype), "prng_impl": impl}
    return {"path": path, "shape": list(x.shape), "dtype": np.dtype(x.dtype).name, "prng_impl": None}


def _shape_text(d: dict) -> str:
    return f"{tuple(d['shape'])} {d['dtype']}"


def _checkpointer():
    """An orbax PyTree checkpointer.  In a multi-process run the arrays are already gathered
    to host numpy and one process saves (or each process reads) alone: orbax's default would
    make every process join barriers that only process 0 reaches."""
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.PyTreeCheckpointer()
    me = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                               barrier_sync_key_prefix=f"bpo_jax_{me}")
    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=alone), multiprocessing_options=alone)


class _QuietWhileSaving(logging.Filter):
    """What orbax and tensorstore print around a failed save, kept out of the run's output (the
    error the save raises is what the run reports, in one line):

    * absl's records while any save runs: orbax's writer threads log each failure with its
      traceback (two dozen ERROR lines where the run folder was removed mid-save);
    * on ``sys.unraisablehook``, "Event loop is closed" while a save runs and, once one has
      failed, after it until another save ends: tensorstore's C++ threads finish the abandoned writes after orbax has
      closed its event loop, and each of their callbacks into it raises that error where no
      caller can catch it (Python printed ~190 tracebacks).  Every other error goes on to the
      hook it found.

    A count, so that saves overlapping in threads keep it until the last one ends."""

    def __init__(self):
        super().__init__()
        self._saves, self._failed, self._lock = 0, False, threading.Lock()
        self._previous_hook = None

    def filter(self, record: logging.LogRecord) -> bool:
        return self._saves == 0

    def _unraisable(self, unraisable) -> None:
        error = unraisable.exc_value
        if (self._saves or self._failed) and isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        self._previous_hook(unraisable)

    @contextlib.contextmanager
    def during(self):
        logger = logging.getLogger("absl")
        with self._lock:
            if self not in logger.filters:
                logger.addFilter(self)
            if self._previous_hook is None:  # once: a hook set later that chains to this one is left as it is
                self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
            self._saves += 1
        try:
            yield
        except BaseException:
            self._failed = True
            raise
        else:  # a failed save's writes are over once another save has ended
            self._failed = False
        finally:
            with self._lock:
                self._saves -= 1


_QUIET_ABSL = _QuietWhileSaving()


# -------------------------------------------------------------------- save
@finishes_before_interrupt
def save(
    directory: str,
    state: Any,
    *,
    update: int,
    config: Config,
    num_seeds: int,
    chunk_updates: int,
    metrics: dict[str, np.ndarray],
    steps_per_second: np.ndarray,
    train_seconds: float,
    keep: int = 2,
    fast_compile: bool = False,
    layout: Optional[dict] = None,
) -> str:
    """Write a checkpoint of ``state`` (leaves batched over seeds) after ``update`` updates
    into ``directory``/step_<update>, atomically; prune all but the newest ``keep``.
    ``directory`` is made where missing, its parent (the run's folder) is not: a run folder
    removed while it trained is not made again (FileNotFoundError).

    A Ctrl-C during the save is raised once the save has ended: the run stops with this
    checkpoint complete (a resume loses nothing), and orbax's writer threads are not torn down
    mid-write (which printed their asyncio errors above the one-line message)."""

    from bpo_jax import __version__

    directory = os.path.abspath(directory)  # orbax wants absolute paths
    if not os.path.isdir(os.path.dirname(directory)):  # a run folder removed while it trained is not made again
        raise FileNotFoundError(f"no folder {os.path.dirname(directory)} to hold {directory}")
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f"{STEP_PREFIX}{update:08d}")
    tmp = os.path.join(directory, f"{_TMP_PREFIX}{STEP_PREFIX}{update:08d}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        flat, _ = jax.tree_util.tree_flatten_with_path(state)
        leaves = [_describe(leaf_path(p), x) for p, x in flat]
        host = jax.device_get([jax.random.key_data(x) if _is_key(x) else x for _, x in flat])
        # orbax refuses zero-size arrays; metadata alone recreates them.
        arrays = {
            "state": {f"{i:05d}": np.asarray(x) for i, x in enumerate(host) if np.size(x) > 0},
            "metrics": {k: np.asarray(v) for k, v in metrics.items()},
            "steps_per_second": np.asarray(steps_per_second, np.float64),
        }
        with _QUIET_ABSL.during():
            _checkpointer().save(os.path.join(tmp, "arrays"), arrays)
        meta = {
            "format": FORMAT_VERSION,
            "bpo_jax_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "update": int(update),
            "num_updates": int(config.num_updates),
            "env_steps": int(update * config.batch_size),
            "num_seeds": int(num_seeds),
            "chunk_updates": int(chunk_updates),
            "train_seconds": float(train_seconds),
            # Compiled with XLA's cheap settings: other float rounding, which a resume must keep.
            "fast_compile": bool(fast_compile),
            "leaves": leaves,
            # Checked before orbax reads anything: a truncated or damaged file is reported
            # plainly instead of failing somewhere inside tensorstore.
            "files": _digests(os.path.join(tmp, "arrays")),
        }
        if layout is not None:  # how the program split over devices: its float rounding, kept by a resume
            meta["layout"] = dict(layout)
        origins = plugins.origins(config)
        if origins:  # so that a process without the plug-in can say which one to load
            meta["plugins"] = origins
        write_json(os.path.join(tmp, "config.json"), config.resolved().to_dict())
        # A field deleted from config.json would read back as its default: another policy.
        meta["config_sha256"] = _digest(os.path.join(tmp, "config.json"))
        write_json(os.path.join(tmp, "metadata.json"), meta)  # last: marks the folder complete
        if os.path.exists(final):  # re-saving a step (a resume from an older checkpoint)
            old = final + f".old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(directory, keep)
    return final


def prune(directory: str, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and temporary folders of killed saves."""
    for name in os.listdir(directory):
        if name.startswith(_TMP_PREFIX) or ".old-" in name:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    for path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def remove_after(directory: str, update: int) -> list[str]:
    """Delete checkpoints later than ``update`` (a resume from an older one abandons them)."""
    later = [p for p in list_checkpoints(directory) if _step_of(p) > update]
    for path in later:
        shutil.rmtree(path, ignore_errors=True)
    return later


# ------------------------------------------------------------------ locate
def _step_of(path: str) -> int:
    return int(os.path.basename(path)[len(STEP_PREFIX):])


def list_checkpoints(directory: str) -> list[str]:
    """Complete checkpoints in ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(STEP_PREFIX) and name[len(STEP_PREFIX):].isdigit() and os.path.isdir(path):
            found.append(path)
    return sorted(found, key=_step_of)


def locate(path: str) -> tuple[Optional[str], str]:
    """(run directory or None, checkpoint folder) for ``path``: a run directory (its newest
    checkpoint), its ``checkpoints`` folder, or one ``step_*`` checkpoint."""
    if not path:  # normpath would make it ".": the current folder, read as the run asked for
        raise CheckpointError("the checkpoint path is empty; give a run directory or checkpoint folder")
    path = os.path.normpath(path)
    if os.path.isfile(path):
        raise CheckpointError(f"{path} is a file, not a run directory or checkpoint folder")
    if not os.path.isdir(path):
        raise CheckpointError(f"no such directory: {path}")
    if os.path.isfile(os.path.join(path, "metadata.json")) or os.path.isdir(os.path.join(path, "arrays")):
        parent = os.path.dirname(os.path.abspath(path))
        run_dir = os.path.dirname(parent) if os.path.basename(parent) == CHECKPOINTS else None
        return run_dir, path
    for run_dir, folder in ((path, os.path.join(path, CHECKPOINTS)), (os.path.dirname(os.path.abspath(path)), path)):
        found = list_checkpoints(folder)
        if found:
            return (run_dir if os.path.basename(folder) == CHECKPOINTS else None), found[-1]
    if is_llm_run(path):
        raise CheckpointError(f"{path} is a run of bpo-jax llm, which keeps no checkpoints: an llm run does not "
                              "resume (start it again: its bpo-jax llm command with --overwrite), and eval and export "
                              "read the runs of train")
    if os.path.isfile(os.path.join(path, INCOMPLETE)):  # a run stopped before its first checkpoint
        raise CheckpointError(f"no checkpoint in {path}: its run stopped (or never ran) before its first "
                              "checkpoint, so there is nothing to resume: start it again from the beginning, over "
                              "this folder (`overwrite`)")
    raise CheckpointError(f"no checkpoint in {path} (expected {os.path.join(path, CHECKPOINTS, STEP_PREFIX + '*')})")


# ------------------------------------------------------------------- read
def _read_json(ckpt: str, name: str):
    """A checkpoint's JSON file, or a one-line CheckpointError saying what is wrong with it."""
    try:
        with open(os.path.join(ckpt, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DamagedCheckpoint(f"checkpoint {ckpt} is incomplete: no {name}")
    except (OSError, ValueError) as e:
        raise DamagedCheckpoint(f"checkpoint {ckpt} has an unreadable {name} ({first_line(e)})")


def read_metadata(ckpt: str) -> dict:
    """metadata.json of a checkpoint, checked for the fields this version needs."""
    meta = _read_json(ckpt, "metadata.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        got = meta.get("format") if isinstance(meta, dict) else None
        if isinstance(got, int) and 0 < got < FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {ckpt} was written by an older bpo-jax (format {got}; this version reads "
                                  f"format {FORMAT_VERSION}: {FORMAT_CHANGES[FORMAT_VERSION]}); resume or evaluate it "
                                  f"with the bpo-jax that wrote it")
        raise CheckpointError(f"checkpoint {ckpt} has format {got!r}; this bpo-jax reads format {FORMAT_VERSION}")
    for name in ("update", "num_seeds", "chunk_updates", "train_seconds", "leaves", "files"):
        if name not in meta:
            raise DamagedCheckpoint(f"checkpoint {ckpt} metadata.json lacks {name!r}")
    count = lambda v, low: isinstance(v, int) and not isinstance(v, bool) and v >= low  # noqa: E731
    seconds = meta["train_seconds"]
    valid = {"update": count(meta["update"], 0), "num_seeds": count(meta["num_seeds"], 1),
             "chunk_updates": count(meta["chunk_updates"], 1),
             "train_seconds": isinstance(seconds, (int, float)) and not isinstance(seconds, bool),
             "leaves": isinstance(meta["leaves"], list),
             "files": isinstance(meta["files"], dict) and bool(meta["files"]) and all(
                 isinstance(v, list) and len(v) == 2 and count(v[0], 0) and isinstance(v[1], str)
                 for v in meta["files"].values()),
             "layout": "layout" not in meta or (isinstance(meta["layout"], dict) and set(meta["layout"]) == {
                 "split", "devices", "members"} and meta["layout"]["split"] in ("seeds", "envs")
                 and count(meta["layout"]["devices"], 1) and count(meta["layout"]["members"], 1))}
    bad = [name for name, ok in valid.items() if not ok]
    if bad:
        raise DamagedCheckpoint(f"checkpoint {ckpt} has a malformed metadata.json ({', '.join(bad)}: edited?)")
    return meta


def read_config(ckpt: str) -> Config:
    """The run's configuration, as saved (validated).  Refused where its algorithm or suite is
    not registered, or was a plug-in's that took over a built-in name and the built-in is back
    (the run would go on, or be evaluated, with another algorithm or environment)."""
    values = _read_json(ckpt, "config.json")
    recorded = _lenient_metadata(ckpt)
    digest = recorded.get("config_sha256")  # none in checkpoints written before 2026-12-07
    if isinstance(digest, str) and _digest(os.path.join(ckpt, "config.json")) != digest:
        raise DamagedCheckpoint(f"checkpoint {ckpt} has a config.json edited since it was saved (it does not match "
                                "the sha256 its metadata.json records): restore it")
    if not isinstance(values, dict):
        raise CheckpointError(f"checkpoint {ckpt} has an invalid config.json: a JSON {type(values).__name__}, "
                              "not an object")
    origins = recorded.get("plugins", {})
    origins = origins if isinstance(origins, dict) else {}
    problem = _not_loaded(ckpt, values.get("algo"), values.get("env"), origins)
    if problem is not None:
        plugins.load_installed()  # an installed plug-in's, in a script that has not loaded them
        problem = _not_loaded(ckpt, values.get("algo"), values.get("env"), origins)
    if problem is not None:
        raise CheckpointError(problem)
    try:
        return config_from_dict(values).validate()
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt} has an invalid config.json: {first_line(e)}")


def _not_loaded(ckpt: str, algo: object, env: object, recorded: dict) -> Optional[str]:
    """Why the run's algorithm or suite is not the one it was trained with in this process (None
    where it is): it is not registered, or it is bpo-jax's own where metadata.json records
    (``recorded``) a plug-in's that took its name (registered with replace=True)."""
    suite = env.partition("/")[0] if isinstance(env, str) and "/" in env else None
    if isinstance(algo, str) and algo not in algorithms.names():
        how = plugins.how_to_load(recorded.get("algorithm"),
                                  "register it (bpo_jax.algorithms.register) before loading the run")
        return f"checkpoint {ckpt} was trained with algorithm {algo!r}, which is not registered in this process: {how}"
    if suite is not None and suite not in envs.suites():
        how = plugins.how_to_load(recorded.get("suite"),
                                  "register it (bpo_jax.envs.register_suite) before loading the run")
        return (f"checkpoint {ckpt} was trained on {env!r}, whose suite {suite!r} is not registered in this "
                f"process: {how}")
    current = {"algorithm": (algo, type(algorithms.get(algo)).__module__ if isinstance(algo, str) else None),
               "suite": (suite, None if suite is None else envs.suite_module(suite))}
    for kind, (name, module) in current.items():
        origin = recorded.get(kind)
        if isinstance(origin, dict) and origin.get("name") == name and isinstance(module, str) and \
                plugins.built_in(module):
            how = plugins.how_to_load(origin, "load it before loading the run")
            return (f"checkpoint {ckpt} was trained with a plug-in's {kind} {name!r}, registered in place of the "
                    f"built-in one, which is the one in this process: {how}")
    return None


def _lenient_metadata(ckpt: str) -> dict:
    """metadata.json as far as it reads ({} where it does not: the check that reads it properly
    comes later)."""
    try:
        with open(os.path.join(ckpt, "metadata.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def config_from_dict(values: dict) -> Config:
    """Inverse of ``Config.to_dict`` after a JSON round trip (lists back to tuples)."""
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown configuration field(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(Config)
    out = {}
    for name, value in values.items():
        if typing.get_origin(hints[name]) is tuple and isinstance(value, list):
            value = tuple(value)
        out[name] = value
    return Config(**out)


def restore(ckpt: str, template: Any) -> tuple[Any, dict[str, np.ndarray], np.ndarray, dict]:
    """(state, metrics [seeds, update], steps_per_second [update], metadata) of a checkpoint.

    ``template`` is the TrainState the configuration implies (``runner.state_template``,
    shapes only); the saved leaves must match it exactly, else :class:`CheckpointError`.
    """

    meta = read_metadata(ckpt)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = [_describe(leaf_path(p), x) for p, x in flat]
    try:
        _check_leaves(ckpt, meta["leaves"], expected)
    except (KeyError, TypeError, AttributeError):
        raise DamagedCheckpoint(f"checkpoint {ckpt} has a malformed metadata.json (leaves)")
    _verify_files(ckpt, meta)
    try:
        arrays = _checkpointer().restore(os.path.abspath(os.path.join(ckpt, "arrays")))
        saved = arrays["state"]
        leaves = []
        for i, (desc, (_, x)) in enumerate(zip(expected, flat)):
            impl = meta["leaves"][i]["prng_impl"]
            dtype = "uint32" if impl else desc["dtype"]
            value = np.asarray(saved[f"{i:05d}"]) if np.prod(desc["shape"]) > 0 else np.zeros(desc["shape"], dtype)
            if list(value.shape) != desc["shape"] or value.dtype.name != dtype:
                raise DamagedCheckpoint(f"checkpoint {ckpt}: stored {desc['path']} is {value.shape} {value.dtype}, "
                                      f"metadata says {_shape_text(desc)}")
            leaves.append(jax.random.wrap_key_data(value, impl=impl) if impl else value)
        metrics = {k: np.asarray(v) for k, v in arrays["metrics"].items()}
        sps = np.asarray(arrays["steps_per_second"])
    except CheckpointError:
        raise
    except Exception as e:  # orbax/tensorstore raise many types for truncated or missing files
        raise DamagedCheckpoint(f"checkpoint {ckpt} is unreadable ({type(e).__name__}: {first_line(e)})")
    update, seeds = meta["update"], meta["num_seeds"]
    bad = [k for k, v in metrics.items() if v.shape != (seeds, update)]
    if bad or sps.shape != (update,):
        raise DamagedCheckpoint(f"checkpoint {ckpt} holds metric rows that do not cover its {update} updates")
    return jax.tree_util.tree_unflatten(treedef, leaves), metrics, sps, meta


@dataclass(frozen=True)
class Loaded:
    """A checkpoint read back: where it lies, the program of its run and where that run stands."""

    run_dir: Optional[str]  # the run directory holding it; None for a checkpoint folder outside one
    path: str  # its step_* folder
    config: Config  # the run's resolved configuration
    meta: dict  # its metadata.json (num_seeds, update, chunk_updates, ...)
    start: Start  # state, metric rows and training time, to continue the run from


def load(path: str, attempts: int = 5) -> Loaded:
    """The checkpoint at ``path`` (a run directory: its newest; its checkpoints/ folder; or one
    step_* folder), checked against the program its config.json describes.  A run still training
    removes its older checkpoints as it saves: one removed while it was read is looked for again
    (up to ``attempts`` times), the newest then."""
    attempt = 0
    while True:
        attempt += 1
        run_dir, ckpt = locate(path)
        picked = os.path.normpath(path) != ckpt  # the newest, picked for the caller
        try:
            return _load(run_dir, ckpt)
        except (DamagedCheckpoint, FileNotFoundError) as e:
            if _removed(path, ckpt, picked):  # not damaged: gone as it was read
                if picked and attempt < attempts:
                    continue
                raise CheckpointError(f"checkpoint {ckpt} was removed while it was read (its run is still "
                                      "training, keeping only its newest checkpoints): "
                                      f"{'try again' if picked else 'give the run directory, for its newest'}") from None
            if not isinstance(e, DamagedCheckpoint):
                raise
            # The newest was picked for the caller: name the one before it, which may be whole.
            older = [p for p in list_checkpoints(os.path.dirname(ckpt)) if _step_of(p) < _step_of(ckpt)] \
                if picked else []
            if older:
                raise DamagedCheckpoint(f"{e}; the older checkpoint {older[-1]} can be given instead") from None
            raise


def _removed(path: str, ckpt: str, picked: bool) -> bool:
    """Whether checkpoint ``ckpt`` went while it was read: its folder is gone or, where it was
    picked as ``path``'s newest, a newer one is there now (``shutil.rmtree`` removes a pruned
    folder's files before the folder itself)."""
    if not os.path.isdir(ckpt):
        return True
    try:
        return picked and locate(path)[1] != ckpt
    except CheckpointError:  # nothing left to read
        return True


def _load(run_dir: Optional[str], ckpt: str) -> Loaded:
    meta = read_metadata(ckpt)
    config = read_config(ckpt)
    if meta.get("num_updates") != config.num_updates:
        raise CheckpointError(f"checkpoint {ckpt}: metadata and config.json disagree on the number of updates")
    state, metrics, sps, meta = restore(ckpt, state_template(config, meta["num_seeds"]))
    start = Start(state=state, update=meta["update"], metrics=metrics, steps_per_second=sps,
                  train_seconds=meta["train_seconds"])
    return Loaded(run_dir=run_dir, path=ckpt, config=config, meta=meta, start=start)


_MISMATCH = "does not match the program its config.json describes (another env, algorithm or network?)"


def _check_leaves(ckpt: str, saved: list[dict], expected: list[dict]) -> None:
    saved_by_path = {d["path"]: d for d in saved}
    for d in expected:
        s = saved_by_path.get(d["path"])
        if s is None:
            raise CheckpointError(f"checkpoint {ckpt} {_MISMATCH}: it has no {d['path']}")
        is_key = d["dtype"].startswith("key<")
        if list(s["shape"]) != d["shape"] or s["dtype"] != d["dtype"] or is_key != isinstance(s.get("prng_impl"), str):
            raise CheckpointError(
                f"checkpoint {ckpt} {_MISMATCH}: {d['path']} is {_shape_text(s)} in the checkpoint "
                f"but {_shape_text(d)} in the program")
    extra = sorted(set(saved_by_path) - {d["path"] for d in expected})
    if extra or [d["path"] for d in saved] != [d["path"] for d in expected]:
        what = f"an extra {extra[0]}" if extra else "its leaves in another order"
        raise CheckpointError(f"checkpoint {ckpt} {_MISMATCH}: it has {what}")


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _digests(root: str) -> dict[str, list]:
    """{relative path: [bytes, sha256]} of every file under ``root``."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = [os.path.getsize(path), _digest(path)]
    return dict(sorted(out.items()))


def _verify_files(ckpt: str, meta: dict) -> None:
    """Every array file recorded at save time is present with the same size and hash."""
    root = os.path.join(ckpt, "arrays")
    for rel, (size, digest) in meta["files"].items():  # their form checked by read_metadata
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            raise DamagedCheckpoint(f"checkpoint {ckpt} is damaged: arrays/{rel} is missing")
        if os.path.getsize(path) != size:
            raise DamagedCheckpoint(f"checkpoint {ckpt} is damaged: arrays/{rel} has {os.path.getsize(path)} bytes, "
                                  f"{size} were written")
        if _digest(path) != digest:
            raise DamagedCheckpoint(f"checkpoint {ckpt} is damaged: arrays/{rel} does not match its sha256")


# ------------------------------------------------------------------ policy
@dataclass
class Saver:
    """Checkpoint policy, called after every finite chunk: save when ``every_updates`` updates
    or ``every_seconds`` seconds have passed since the last save (or the start), and always after
    the last chunk; neither set: after every chunk."""

    directory: str  # the run's checkpoints/ folder
    config: Config
    num_seeds: int
    keep: int = 2  # newest checkpoints kept
    every_updates: Optional[int] = None
    every_seconds: Optional[float] = None
    last_update: int = 0  # update of the last save (a resumed run: where it resumed)
    fast_compile: bool = False  # the run compiles with XLA's cheap settings (recorded for its resume)
    layout: Optional[dict] = None  # {"split": ..., "devices": n, "members": m} (recorded for its resume)
    saved: int = field(default=0, init=False)  # checkpoints written by this saver
    seconds: float = field(default=0.0, init=False)  # time spent writing them
    _last_time: float = field(init=False)  # monotonic clock at the last save

    def __post_init__(self):
        self._last_time = time.monotonic()

    def due(self, update: int, num_updates: int) -> bool:
        if update >= num_updates:
            return True
        if self.every_updates is not None:
            return update - self.last_update >= self.every_updates
        if self.every_seconds is not None:
            return time.monotonic() - self._last_time >= self.every_seconds
        return True

    def __call__(self, chunk: Chunk) -> Optional[str]:
        """Save ``chunk`` if due; returns the path written."""
        return self.save(chunk) if self.due(chunk.update, chunk.num_updates) else None

    def save(self, chunk: Chunk) -> str:
        """Save ``chunk`` now (runs trained as one program save together, when any of them is due)."""
        t0 = time.perf_counter()
        path = save(
            self.directory, chunk.state, update=chunk.update, config=self.config, num_seeds=self.num_seeds,
            chunk_updates=chunk.chunk_updates, metrics=chunk.history.metrics(),
            steps_per_second=chunk.history.steps_per_second(), train_seconds=chunk.train_seconds, keep=self.keep,
            fast_compile=self.fast_compile, layout=self.layout,
        )
        self.seconds += time.perf_counter() - t0
        self.saved += 1
        self.last_update, self._last_time = chunk.update, time.monotonic()
        return path
