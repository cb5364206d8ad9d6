"""Parity reference for the isaaclab/ adapter: rsl_rl's own ``OnPolicyRunner`` (PPO, adaptive-KL
learning rate) against bpo-jax's PPO through the host loop, on the same torch environment.

Both train on ``tests/fake_vec_env.PointGoalEnv`` (an rsl_rl ``VecEnv`` subclass) with the
settings IsaacLab's stock rsl_rl PPO configs use (digest section 6.3): 24 steps per env, 5
epochs x 4 minibatches, clip 0.2 with a clipped value loss, value_loss_coef 1.0, lr 1e-3 with the
adaptive-KL schedule (desired KL 0.01), max_grad_norm 1.0, gamma 0.99, GAE lambda 0.95, ELU MLPs,
init std 1.0, no observation normalisation, advantages normalised over the whole batch (torch's
unbiased std), one minibatch permutation per update; BPO with the paper's IsaacLab settings is run beside them.  The environment itself records every finished episode's return, so both sides are
measured by one definition: per iteration, the mean return of the episodes that ended in it.

    nice -n 10 python benchmarks/isaaclab_parity.py --out benchmarks/results/isaaclab_parity.json

Known differences that remain (by design, documented in RESULTS.md): network initialisation
(torch's default against orthogonal), the std parameterisation (rsl_rl a raw scalar std, here
min_std + softplus), gradient clipping (rsl_rl 5 clips actor and critic separately, here one
global norm, as rsl_rl 2 and the paper's IsaacLab 2.1 did).  The advantages' std is torch's
unbiased one on both sides (``adv_std_ddof=1``, as the presets set it).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, machine, out_path, positive_int, positive_ints, require_isaaclab_extra, write_results  # noqa: E402

from bpo_jax import host_loop  # noqa: E402
from bpo_jax.config import Config  # noqa: E402

SHARED = dict(num_steps=24, num_epochs=5, num_minibatches=4, gamma=0.99, gae_lambda=0.95, lr=1e-3,
              max_grad_norm=1.0, vf_coef=1.0, activation="elu", init_std=1.0, normalize_obs=False,
              reshuffle_each_epoch=False, adv_std_ddof=1)
PPO = dict(algo="ppo", eps=0.2, value_clip=0.2, ent_coef=0.005, normalize_advantages=True,
           normalize_advantages_per_minibatch=False)
# The paper's IsaacLab BPO (digest 3.3 and 6.3, Anymal-C column), on the same small network.
BPO = dict(algo="bpo", eps=0.25, ent_coef=0.0, bpo_lambda=0.01, u_coef=1.0, logit_clamp=10.0, value_clip=0.0,
           recompute_returns=True, separate_median=True)


@functools.cache
def recorded_env_class():
    """The fake env (a subclass of rsl_rl's VecEnv, so torch and rsl_rl: the isaaclab extra,
    imported only once main has checked it is there), recording every finished episode's return
    (the sum of its step rewards)."""
    import torch

    from tests.fake_vec_env import PointGoalEnv

    class RecordedEnv(PointGoalEnv):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.running = torch.zeros(self.num_envs)
            self.finished: list[float] = []

        def step(self, actions):
            obs, reward, dones, extras = super().step(actions)
            done = dones.bool()
            self.running = self.running + reward
            self.finished.extend(self.running[done].tolist())
            self.running = torch.where(done, torch.zeros_like(self.running), self.running)
            return obs, reward, dones, extras

        def take(self) -> float:
            """Mean return of the episodes finished since the last call (NaN if none)."""
            done, self.finished = self.finished, []
            return float(np.mean(done)) if done else float("nan")

    return RecordedEnv


def recorded_env(num_envs: int, seed: int):
    return recorded_env_class()(num_envs, seed=seed)


def rsl_rl_cfg(num_envs: int, hidden: tuple[int, ...]) -> dict:
    """OnPolicyRunner's train_cfg (rsl-rl-lib >= 5 layout) with the SHARED + PPO settings."""
    mlp = {"class_name": "MLPModel", "hidden_dims": list(hidden), "activation": "elu", "obs_normalization": False}
    return {
        "num_steps_per_env": SHARED["num_steps"], "save_interval": 10**9, "multi_gpu": None,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "algorithm": {"class_name": "PPO", "num_learning_epochs": SHARED["num_epochs"],
                      "num_mini_batches": SHARED["num_minibatches"], "clip_param": PPO["eps"],
                      "gamma": SHARED["gamma"], "lam": SHARED["gae_lambda"], "value_loss_coef": SHARED["vf_coef"],
                      "entropy_coef": PPO["ent_coef"], "learning_rate": SHARED["lr"],
                      "max_grad_norm": SHARED["max_grad_norm"], "use_clipped_value_loss": True,
                      "schedule": "adaptive", "desired_kl": 0.01},
        "actor": {**mlp, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": SHARED["init_std"]}},
        "critic": mlp,
    }


def run_rsl_rl(seed: int, num_envs: int, iterations: int, hidden) -> dict:
    """rsl_rl's OnPolicyRunner, one iteration per ``learn`` call so that lr and returns are read
    after each.  Returns per-iteration lists."""
    import torch
    from rsl_rl.runners import OnPolicyRunner

    torch.manual_seed(seed)
    env = recorded_env(num_envs, seed)
    with contextlib.redirect_stdout(io.StringIO()):  # its per-iteration console table
        runner = OnPolicyRunner(env, rsl_rl_cfg(num_envs, hidden), log_dir=None, device="cpu")
    out = {"return": [], "lr": [], "seconds": []}
    for _ in range(iterations):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            runner.learn(1)
        out["seconds"].append(time.perf_counter() - t0)
        out["return"].append(env.take())
        out["lr"].append(float(runner.alg.learning_rate))
    return out


def run_ours(algo: dict, seed: int, num_envs: int, iterations: int, hidden) -> dict:
    """bpo-jax through the adapter and host loop, same settings; per-iteration lists."""
    env = recorded_env(num_envs, seed)
    config = Config(**SHARED, **algo, num_envs=num_envs, hidden_sizes=tuple(hidden), lr_schedule="adaptive",
                    desired_kl=0.01, total_steps=num_envs * SHARED["num_steps"] * iterations, seed=seed)
    out = {"return": [], "lr": []}

    def record(_, row):
        out["return"].append(env.take())
        out["lr"].append(row["lr"])

    result = host_loop.train(config, env, on_iteration=record, quiet=True)
    out["seconds"] = (result.collection_seconds + result.learning_seconds).tolist()
    return out


def summarise(runs: list[dict], tail: int) -> dict:
    """Across seeds: the mean curve, the final return (mean of the last ``tail`` iterations) per
    seed, and the lr trajectory's statistics."""
    ret = np.array([r["return"] for r in runs])
    lr = np.array([r["lr"] for r in runs])
    final = np.nanmean(ret[:, -tail:], axis=1)
    with warnings.catch_warnings():  # an iteration in which no seed's episode ended: NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        curve = np.nanmean(ret, axis=0)
    return {
        "final_return_per_seed": final.round(3).tolist(), "final_return_mean": round(float(final.mean()), 3),
        "return_curve_mean": curve.round(3).tolist(),
        "lr_curve_geomean": np.exp(np.log(lr).mean(axis=0)).tolist(),
        "lr_final_per_seed": lr[:, -1].tolist(), "lr_median_over_run": float(np.median(lr)),
        "lr_min": float(lr.min()), "lr_max": float(lr.max()),
        "iterations_to_half_final": [int(np.argmax(r >= 0.5 * f)) + 1 for r, f in zip(np.nan_to_num(ret), final)],
        "seconds_per_iteration_median": float(np.median([np.median(r["seconds"][1:]) for r in runs])),
        "first_iteration_seconds_mean": float(np.mean([r["seconds"][0] for r in runs])),
    }


def plot(results: dict, path: str) -> None:
    from bpo_jax.reporting import pyplot

    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, style in (("rsl_rl PPO", "k-"), ("bpo-jax PPO", "C0-"), ("bpo-jax BPO", "C3-")):
        for i, run in enumerate(results["runs"][name]):
            label = name if i == 0 else None
            a.plot(np.arange(1, len(run["return"]) + 1), run["return"], style, alpha=0.6, lw=1, label=label)
            b.semilogy(np.arange(1, len(run["lr"]) + 1), run["lr"], style, alpha=0.6, lw=1, label=label)
    a.axhline(results["random_policy_return"], color="gray", ls=":", label="random policy")
    a.set(xlabel="iteration", ylabel="mean return of episodes ending in the iteration", title="learning curves")
    b.set(xlabel="iteration", ylabel="learning rate after the update", title="adaptive-KL learning rate")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle(f"PointGoalEnv ({results['num_envs']} envs x 24 steps), {len(results['seeds'])} seeds each")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def random_return(num_envs: int, steps: int = 300) -> float:
    """Mean episode return of N(0, 1) actions (the untrained Gaussian policy's scale)."""
    import torch

    env = recorded_env(num_envs, 123)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        env.step(torch.randn(num_envs, 2, generator=gen))
    return env.take()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--iterations", type=positive_int, default=50)
    p.add_argument("--num-envs", type=positive_int, default=128)
    p.add_argument("--hidden", type=positive_ints, default="64,64")
    p.add_argument("--torch-threads", type=positive_int, default=1,
                   help="torch intra-op threads (default 1: on the shared 2-core machine two threads spin against "
                        "other load, about 6 s per rsl_rl iteration against 0.4 s with one)")
    p.add_argument("--out", type=out_path, default=None, help="results JSON; the figure goes beside it (.png)")
    args = p.parse_args()
    require_isaaclab_extra(p)
    import torch

    torch.set_num_threads(args.torch_threads)
    hidden = tuple(args.hidden)
    seeds = list(range(args.seeds))
    results = {"machine": machine(), "torch": torch.__version__, "num_envs": args.num_envs,
               "iterations": args.iterations, "hidden_sizes": hidden, "seeds": seeds,
               "settings": {"shared": SHARED, "ppo": PPO, "bpo": BPO}, "torch_threads": torch.get_num_threads(),
               "random_policy_return": random_return(args.num_envs), "runs": {}}
    runners = {"rsl_rl PPO": lambda s: run_rsl_rl(s, args.num_envs, args.iterations, hidden),
               "bpo-jax PPO": lambda s: run_ours(PPO, s, args.num_envs, args.iterations, hidden),
               "bpo-jax BPO": lambda s: run_ours(BPO, s, args.num_envs, args.iterations, hidden)}
    for seed in seeds:  # interleaved, so machine load drifts hit every side alike
        for name, fn in runners.items():
            t0 = time.perf_counter()
            results["runs"].setdefault(name, []).append(fn(seed))
            log(f"{name} seed {seed}: final {np.nanmean(results['runs'][name][-1]['return'][-5:]):.2f}, "
                f"lr {results['runs'][name][-1]['lr'][-1]:.2e}, {time.perf_counter() - t0:.1f} s")
    tail = max(1, args.iterations // 10)
    results["summary"] = {name: summarise(runs, tail) for name, runs in results["runs"].items()}
    results["tail_iterations"] = tail
    write_results({k: v for k, v in results.items() if k != "runs"} | {"summary": results["summary"]}, None)
    if args.out:
        write_results(results, args.out, echo=False)
        plot(results, os.path.splitext(args.out)[0] + ".png")


if __name__ == "__main__":
    main()
