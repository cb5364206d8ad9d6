"""bpo-jax against PureJaxRL's ``ppo.py`` on PureJaxRL's own CartPole configuration, side by side.

    python benchmarks/vs_purejaxrl.py --purejaxrl PATH [--rounds 3] [--seeds 10] [--out FILE.json]
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/vs_purejaxrl.py --purejaxrl PATH

With several (e.g. forced host) devices, our N-seed programs split the seeds over them, as
``bpo-jax train`` does on a CPU by default (``--split auto``); PureJaxRL's program runs as its
``ppo.py`` runs it, on the default device.  Every one-seed program runs on the default device.

PATH is a checkout of https://github.com/luchris429/purejaxrl (the folder that holds
``purejaxrl/ppo.py``); its code is imported from there, never copied.  It needs ``distrax``
(``pip install distrax``).  PureJaxRL's ``wrappers.py`` imports ``navix`` for a wrapper that
``ppo.py`` does not use; when navix is not installed an empty module stands in for it.
PureJaxRL is written against gymnax < 1.0, whose ``step`` returns ``(obs, state, reward, done,
info)``; gymnax 1.0 returns terminated and truncated apart, so the gymnax env PureJaxRL builds is
wrapped to return ``done = terminated | truncated`` as the old API did (nothing else changes).

Configuration (PureJaxRL's ``__main__``): CartPole-v1, 4 envs x 128 steps, 4 epochs x 4
minibatches, 5e5 steps, tanh 64x64, lr 2.5e-4 annealed, clip 0.2, ent 0.01, vf 0.5.  Ours:
``Config(algo="ppo")`` and ``Config(algo="bpo")`` with their defaults, which are that
configuration.  All in one process, interleaved rounds, medians, so machine noise hits every
number alike; the persistent compilation cache is off (cold compiles).  Reported:

* raw env steps/s: the same random actions (drawn once, before the timed call) stepped through
  PureJaxRL's wrappers (LogWrapper over FlattenObservationWrapper) and through our env layer
  (which also carries ``final_obs``, separate termination and truncation, and episode
  statistics), 4 envs, one compiled scan.  gymnax's ``step`` takes a key per environment: the
  target's PureJaxRL figure draws them as ``ppo.py``'s rollout does (a split of the loop's key,
  then one key per environment, every step), and a second figure draws every step's keys in
  one batch before the loop, so the env layers' own costs compare apart from that schedule.
  Ours carries a key per environment and splits it only where an episode ends;
* one seed: compile seconds (lower + compile) and training steps/s, PureJaxRL PPO, our PPO,
  our BPO;
* N seeds as one vmapped program: wall-clock including compile (median of ``--seed-rounds``
  interleaved rounds, each traced and compiled afresh), and the final return per seed
  (PureJaxRL's: the return of the last finished episode averaged over every step of its last
  10 updates; ours: the mean return of the episodes that ended in the last 10% of updates);
* the ratios the targets are stated in (of the medians), and each ratio round by round (its
  range printed beside it: paired timings, so the spread is the machine's noise).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import disable_compilation_cache, log, machine, out_path, positive_int, write_results  # noqa: E402

from bpo_jax import Config, envs, make_train  # noqa: E402
from bpo_jax.runner import seed_keys  # noqa: E402

PUREJAXRL_CONFIG = {
    "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 5e5, "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01,
    "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True, "DEBUG": False,
}
OURS = dict(env="gymnax/CartPole-v1", total_steps=500_000)


class OldGymnaxStep:
    """A gymnax >= 1.0 env with the pre-1.0 ``step`` that PureJaxRL's wrappers unpack."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


def make_old_gymnax(name: str):
    import gymnax

    env, params = gymnax.make(name)
    return OldGymnaxStep(env), params


def import_purejaxrl(path: str):
    """PureJaxRL's ``ppo`` and ``wrappers`` modules from a checkout (``ppo`` builds its env
    through :func:`make_old_gymnax`)."""
    if not os.path.isdir(path):
        raise SystemExit(f"vs_purejaxrl: error: no folder {path}; pass a PureJaxRL checkout")
    folder = os.path.join(os.path.abspath(path), "purejaxrl")
    if not os.path.isfile(os.path.join(folder, "ppo.py")):
        raise SystemExit(f"vs_purejaxrl: error: no purejaxrl/ppo.py under {path}; pass a PureJaxRL checkout")
    try:
        importlib.import_module("navix")
    except ImportError:
        sys.modules["navix"] = types.ModuleType("navix")  # only its unused Navix wrapper needs it
    sys.path.insert(0, folder)
    try:
        ppo, wrappers = importlib.import_module("ppo"), importlib.import_module("wrappers")
    except ImportError as e:
        missing = (getattr(e, "name", None) or "").split(".")[0]
        hint = ("pip install distrax" if missing in ("distrax", "tensorflow_probability")
                else f"the checkout at {path} looks incomplete (no module {missing!r} there), or {missing!r} is not installed")
        raise SystemExit(f"vs_purejaxrl: error: cannot import PureJaxRL ({e}); {hint}")
    missing = [f"{m.__name__}.{name}" for m, names in ((ppo, ("make_train",)),
                                                      (wrappers, ("LogWrapper", "FlattenObservationWrapper")))
               for name in names if not hasattr(m, name)]
    if missing:
        raise SystemExit(f"vs_purejaxrl: error: {path} is not the PureJaxRL this compares with (no {', '.join(missing)})")
    ppo.gymnax = types.SimpleNamespace(make=make_old_gymnax)
    return ppo, wrappers


def timed(fn, *args) -> tuple[float, float, object]:
    """(compile seconds, run seconds, output) of ``jax.jit(fn)(*args)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return t1 - t0, time.perf_counter() - t1, out


def raw_purejaxrl(wrappers, num_envs: int, keys_in_loop: bool = True):
    """Random actions [steps, num_envs] through PureJaxRL's wrappers; the keys gymnax's ``step``
    takes drawn every step as ``ppo.py`` does (``keys_in_loop``) or all in one batch first."""
    env, params = make_old_gymnax("CartPole-v1")
    env = wrappers.LogWrapper(wrappers.FlattenObservationWrapper(env))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def rollout(key, actions):
        steps = actions.shape[0]
        key, k_reset, k_steps = jax.random.split(key, 3)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), params)
        if keys_in_loop:
            xs = actions
        else:
            xs = (actions, jax.random.split(k_steps, steps * num_envs).reshape(steps, num_envs, -1))

        def body(carry, x):
            state, key = carry
            if keys_in_loop:
                action = x
                key, k_step = jax.random.split(key)
                step_keys = jax.random.split(k_step, num_envs)
            else:
                action, step_keys = x
            _, state, reward, _, _ = step(step_keys, state, action, params)
            return (state, key), reward.sum()

        return jax.lax.scan(body, (state, key), xs)[1].sum()

    return rollout


def raw_ours(num_envs: int):
    """Random actions [steps, num_envs] through our env layer."""
    env = envs.make(OURS["env"], num_envs=num_envs)

    def rollout(key, actions):
        def body(state, action):
            state = env.step(state, action)
            return state, state.reward.sum()

        return jax.lax.scan(body, env.reset(key), actions)[1].sum()

    return rollout


def split_seeds(keys: jax.Array) -> jax.Array:
    """Seed keys placed one block per device (the jit then splits the seed axis), when the
    seeds divide over several devices; else as they are."""
    devices = jax.devices()
    if len(devices) == 1 or keys.shape[0] % len(devices):
        return keys
    return jax.device_put(keys, NamedSharding(Mesh(np.array(devices), ("seeds",)), P("seeds")))


def purejaxrl_final_returns(metrics) -> np.ndarray:
    """PureJaxRL's own figure: returned_episode_returns averaged over every step and env of the
    last 10 updates; [seeds]."""
    r = np.asarray(metrics["returned_episode_returns"])  # [seeds, updates, steps, envs]
    return r[:, -10:].mean(axis=(1, 2, 3))


def our_final_returns(metrics) -> np.ndarray:
    from bpo_jax.reporting import tail_returns

    return tail_returns({k: np.asarray(v) for k, v in metrics.items()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purejaxrl", required=True, metavar="PATH", help="a PureJaxRL checkout")
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds of the one-seed timings (default 3)")
    parser.add_argument("--seeds", type=positive_int, default=10, help="seeds in the vmapped programs (default 10)")
    parser.add_argument("--seed-rounds", type=positive_int, default=3,
                        help="interleaved rounds of the N-seed programs, wall-clock median (default 3)")
    parser.add_argument("--out", type=out_path, default=None, help="also write the results JSON here")
    args = parser.parse_args(argv)
    disable_compilation_cache()
    ppo_module, wrappers = import_purejaxrl(args.purejaxrl)

    steps = int(PUREJAXRL_CONFIG["TOTAL_TIMESTEPS"])
    num_envs = PUREJAXRL_CONFIG["NUM_ENVS"]
    env_iters = steps // num_envs
    trainers = {
        "purejaxrl_ppo": lambda: ppo_module.make_train(dict(PUREJAXRL_CONFIG)),
        "ours_ppo": lambda: make_train(Config(algo="ppo", **OURS)),
        "ours_bpo": lambda: make_train(Config(algo="bpo", **OURS)),
    }
    raws = {"purejaxrl_wrappers": lambda: raw_purejaxrl(wrappers, num_envs),
            "purejaxrl_wrappers_batched_keys": lambda: raw_purejaxrl(wrappers, num_envs, keys_in_loop=False),
            "ours_env_layer": lambda: raw_ours(num_envs)}
    actions = jax.random.randint(jax.random.key(1), (env_iters, num_envs), 0, 2)
    key = jax.random.key(0)
    one = {name: {"compile": [], "run": []} for name in trainers}
    raw = {name: [] for name in raws}
    log(f"machine: {machine()}")
    for r in range(args.rounds):
        for name, build in raws.items():
            _, run_s, _ = timed(build(), jax.random.PRNGKey(r) if name.startswith("pure") else key, actions)
            raw[name].append(env_iters * num_envs / run_s)
        for name, build in trainers.items():
            rng = jax.random.PRNGKey(r) if name.startswith("pure") else jax.random.key(r)
            compile_s, run_s, _ = timed(build(), rng)
            one[name]["compile"].append(compile_s)
            one[name]["run"].append(run_s)
            log(f"round {r + 1}/{args.rounds} {name}: compile {compile_s:.1f}s, {steps / run_s:,.0f} steps/s")

    seeds = {name: {"wall_all": []} for name in trainers}
    for r in range(args.seed_rounds):  # interleaved, each a fresh trace and compile
        for name, build in trainers.items():
            t0 = time.perf_counter()
            keys = jax.random.split(jax.random.PRNGKey(0), args.seeds) if name.startswith("pure") \
                else split_seeds(seed_keys(0, args.seeds))
            out = jax.block_until_ready(jax.jit(jax.vmap(build()))(keys))
            wall = time.perf_counter() - t0
            metrics = out["metrics"] if name.startswith("pure") else out[1]
            finals = purejaxrl_final_returns(metrics) if name.startswith("pure") else our_final_returns(metrics)
            seeds[name]["wall_all"].append(wall)
            seeds[name].update(final_return_per_seed=finals.tolist(), final_return_mean=float(np.mean(finals)))
            log(f"round {r + 1}/{args.seed_rounds} {args.seeds} seeds {name}: {wall:.1f}s incl. compile, "
                f"final return {np.round(finals, 1).tolist()}")
    for name, row in seeds.items():
        row["wall_seconds_including_compile"] = statistics.median(row["wall_all"])

    med = statistics.median
    summary = {name: {"compile_seconds": med(v["compile"]), "steps_per_second": steps / med(v["run"]),
                      "compile_all": v["compile"], "run_all": v["run"]} for name, v in one.items()}
    raw_sps = {name: med(v) for name, v in raw.items()}
    pj = summary["purejaxrl_ppo"]
    ratios = {
        "ppo_steps_per_second_vs_purejaxrl": summary["ours_ppo"]["steps_per_second"] / pj["steps_per_second"],
        "ppo_compile_vs_purejaxrl": summary["ours_ppo"]["compile_seconds"] / pj["compile_seconds"],
        "bpo_steps_per_second_vs_ppo": summary["ours_bpo"]["steps_per_second"] / summary["ours_ppo"]["steps_per_second"],
        "seeds_wall_ppo_vs_purejaxrl": seeds["ours_ppo"]["wall_seconds_including_compile"]
        / seeds["purejaxrl_ppo"]["wall_seconds_including_compile"],
        "seeds_wall_bpo_vs_purejaxrl": seeds["ours_bpo"]["wall_seconds_including_compile"]
        / seeds["purejaxrl_ppo"]["wall_seconds_including_compile"],
        "raw_env_vs_purejaxrl": raw_sps["ours_env_layer"] / raw_sps["purejaxrl_wrappers"],
        "raw_env_vs_purejaxrl_batched_keys": raw_sps["ours_env_layer"] / raw_sps["purejaxrl_wrappers_batched_keys"],
    }
    # The same ratios round by round (each round times both sides back to back): their spread
    # says how much of a median ratio is the machine's noise.
    pair = lambda a, b: [x / y for x, y in zip(a, b)]
    by_round = {
        "ppo_steps_per_second_vs_purejaxrl": pair(one["purejaxrl_ppo"]["run"], one["ours_ppo"]["run"]),
        "ppo_compile_vs_purejaxrl": pair(one["ours_ppo"]["compile"], one["purejaxrl_ppo"]["compile"]),
        "bpo_steps_per_second_vs_ppo": pair(one["ours_ppo"]["run"], one["ours_bpo"]["run"]),
        "seeds_wall_ppo_vs_purejaxrl": pair(seeds["ours_ppo"]["wall_all"], seeds["purejaxrl_ppo"]["wall_all"]),
        "seeds_wall_bpo_vs_purejaxrl": pair(seeds["ours_bpo"]["wall_all"], seeds["purejaxrl_ppo"]["wall_all"]),
        "raw_env_vs_purejaxrl": pair(raw["ours_env_layer"], raw["purejaxrl_wrappers"]),
        "raw_env_vs_purejaxrl_batched_keys": pair(raw["ours_env_layer"], raw["purejaxrl_wrappers_batched_keys"]),
    }
    targets = {  # issue targets: ratio and the direction that passes
        "ppo_steps_per_second_vs_purejaxrl": (1.3, ">="), "ppo_compile_vs_purejaxrl": (1.0, "<="),
        "bpo_steps_per_second_vs_ppo": (0.95, ">="), "seeds_wall_ppo_vs_purejaxrl": (0.5, "<="),
        "raw_env_vs_purejaxrl": (1.0, ">="),
    }
    results = {"machine": machine(), "purejaxrl_config": PUREJAXRL_CONFIG, "rounds": args.rounds,
               "seeds": args.seeds, "seed_rounds": args.seed_rounds, "one_seed": summary, "raw_env_steps_per_second": raw_sps,
               "vmapped_seeds": seeds, "ratios": ratios, "ratios_by_round": by_round}
    print(f"{'':38s} {'PureJaxRL':>12s} {'ours PPO':>12s} {'ours BPO':>12s}")
    print(f"{'train steps/s, 1 seed (median)':38s} " + " ".join(
        f"{summary[n]['steps_per_second']:12,.0f}" for n in trainers))
    print(f"{'compile s, 1 seed (median)':38s} " + " ".join(f"{summary[n]['compile_seconds']:12.1f}" for n in trainers))
    print(f"{f'{args.seeds} seeds vmapped, s incl. compile (median)':38s} " + " ".join(
        f"{seeds[n]['wall_seconds_including_compile']:12.1f}" for n in trainers))
    print(f"{f'{args.seeds} seeds, mean final return':38s} " + " ".join(
        f"{seeds[n]['final_return_mean']:12.1f}" for n in trainers))
    print(f"{'raw env steps/s (median)':38s} {raw_sps['purejaxrl_wrappers']:12,.0f} {raw_sps['ours_env_layer']:12,.0f}")
    print(f"{'  PureJaxRL, step keys in one batch':38s} {raw_sps['purejaxrl_wrappers_batched_keys']:12,.0f}")
    for name, value in ratios.items():
        target = targets.get(name)
        verdict = "" if target is None else (
            f"  target {target[1]} {target[0]}: " + ("met" if (value >= target[0] if target[1] == ">=" else value <= target[0])
                                                    else "NOT met"))
        spread = f"  (rounds {min(by_round[name]):.2f}-{max(by_round[name]):.2f})"
        print(f"{name:38s} {value:6.2f}x{spread}{verdict}")
    # Written after the table: if the file cannot be written, the table is already out.
    write_results(results, args.out, echo=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
