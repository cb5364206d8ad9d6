"""Named configurations: the paper's MuJoCo settings and massively parallel variants.

``paper/<Task>-v4`` reproduces the settings of the paper's MuJoCo figure (digest section
6.1): BPO from the reference's ``cfgs/algo/bpo/mujoco.yaml`` plus its per-task sweep
overrides, PPO from its RL-Zoo-tuned per-task baselines.  The two algorithms differ in
rollout length, batch, learning rate, gamma and GAE lambda, exactly as in the paper; a
preset therefore holds one block per algorithm and ``--algo`` picks one.  SB3's
``batch_size`` is a *minibatch* size, so ``num_minibatches = n_envs * n_steps / batch``.

``fast/<Task>-v4`` keeps each algorithm's paper hyperparameters (eps, lambda, gamma, ...)
but reshapes the rollout for thousands of accelerator-resident environments: 2048 envs x
32 steps per update, 4 epochs x 16 minibatches, running observation normalisation.  These
are throughput settings, not tuned for returns.

Explicit command-line flags and ``Config`` fields always override a preset.
"""
from __future__ import annotations

from typing import Any

# Shared by every paper preset: SB3's MlpPolicy as the reference configures it.
_PAPER_COMMON: dict[str, Any] = {
    "hidden_sizes": (256, 256),
    "activation": "relu",
    "init_std": 1.0,  # state-independent log_std initialised to 0
    "anneal_lr": False,  # SB3: constant learning rate
    "adam_eps": 1e-5,
    "value_clip": 0.0,  # unclipped value loss in both algorithms (SB3's clip_range_vf=None)
    "normalize_obs": False,  # no VecNormalize in either algorithm
    "normalize_rewards": False,
    "total_steps": 20_000_000,
}

_BPO_BASE: dict[str, Any] = {
    "lr": 3e-4, "num_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95, "bpo_lambda": 0.001,
    "ent_coef": 0.0, "vf_coef": 0.5, "u_coef": 0.5, "eps": 0.3, "max_grad_norm": 1.0,
    "use_median": True, "median_hidden_sizes": (256, 256),  # u head: critic latent -> [256, 256] -> 1
}


def _sb3(n_envs: int, n_steps: int, batch: int) -> dict[str, int]:
    return {"num_envs": n_envs, "num_steps": n_steps, "num_minibatches": n_envs * n_steps // batch}


_PAPER: dict[str, dict[str, dict[str, Any]]] = {
    "Ant": {
        "bpo": {**_sb3(1, 2048, 256), "lr": 1e-4, "num_epochs": 10, "eps": 0.3, "bpo_lambda": 0.001,
                "gamma": 0.99, "gae_lambda": 0.95},
        "ppo": {**_sb3(1, 512, 32), "lr": 1.90609e-5, "num_epochs": 10, "eps": 0.1, "vf_coef": 0.677239,
                "ent_coef": 4.9646e-7, "gamma": 0.98, "gae_lambda": 0.8, "max_grad_norm": 0.6},
    },
    "Hopper": {
        "bpo": {**_sb3(4, 512, 32), "lr": 9.808e-5, "num_epochs": 10, "eps": 0.25, "bpo_lambda": 10.0,
                "gamma": 0.999, "gae_lambda": 0.95},
        "ppo": {**_sb3(1, 512, 32), "lr": 9.808e-5, "num_epochs": 5, "eps": 0.2, "vf_coef": 0.835671,
                "ent_coef": 0.00229519, "gamma": 0.999, "gae_lambda": 0.99, "max_grad_norm": 0.7},
    },
    "Humanoid": {
        "bpo": {**_sb3(1, 512, 128), "lr": 1e-4, "num_epochs": 5, "eps": 0.2, "bpo_lambda": 0.001,
                "gamma": 0.99, "gae_lambda": 0.95, "max_grad_norm": 2.0, "total_steps": 35_000_000},
        "ppo": {**_sb3(1, 512, 256), "lr": 3.56987e-5, "num_epochs": 5, "eps": 0.3, "vf_coef": 0.431892,
                "ent_coef": 0.00238306, "gamma": 0.98, "gae_lambda": 0.9, "max_grad_norm": 2.0,
                "total_steps": 35_000_000},
    },
    "Swimmer": {
        "bpo": {**_sb3(4, 1024, 256), "lr": 3e-4, "num_epochs": 10, "eps": 0.1, "bpo_lambda": 0.01,
                "gamma": 0.9999, "gae_lambda": 0.98},
        "ppo": {**_sb3(4, 1024, 256), "lr": 6e-4, "num_epochs": 10, "eps": 0.1, "vf_coef": 0.5,
                "ent_coef": 0.0, "gamma": 0.9999, "gae_lambda": 0.98, "max_grad_norm": 0.5},
    },
}

_FAST_ROLLOUT: dict[str, Any] = {
    "num_envs": 2048, "num_steps": 32, "num_epochs": 4, "num_minibatches": 16, "normalize_obs": True,
}


class PresetError(ValueError):
    """Unknown preset name; the message lists the valid ones."""


def names() -> list[str]:
    return [f"{kind}/{task}-v4" for kind in ("paper", "fast") for task in _PAPER]


def resolve(name: str, algo: str) -> dict[str, Any]:
    """The Config fields that preset ``name`` sets for ``algo`` (bpo or ppo)."""
    kind, _, env = name.partition("/")
    task = env.removesuffix("-v4")
    if kind not in ("paper", "fast") or task not in _PAPER or not env.endswith("-v4"):
        raise PresetError(f"unknown preset {name!r}; valid: {', '.join(names())}")
    if algo not in _PAPER[task]:
        raise PresetError(f"preset {name!r} has no {algo!r} settings; valid: {', '.join(_PAPER[task])}")
    values = {**_PAPER_COMMON, "env": f"mjx/{env}", "algo": algo}
    if algo == "bpo":
        values.update(_BPO_BASE)
    else:
        values.update(normalize_advantages=True, median_hidden_sizes=())
    values.update(_PAPER[task][algo])
    if kind == "fast":
        values.update(_FAST_ROLLOUT)
    return values


def source(name: str, algo: str) -> str:
    """Where preset ``name``'s ``algo`` settings come from (which implementation it equals)."""
    kind = name.partition("/")[0]
    resolve(name, algo)  # unknown names raise PresetError
    if algo == "bpo":
        origin = ("the paper authors' SB3 BPO: cfgs/algo/bpo/mujoco.yaml plus the task's sweeps/mujoco/*/bpo_seed.yaml "
                  "(reference digest section 6.1)")
    else:
        origin = ("the paper's PPO baseline: SB3 PPO with its RL-Zoo-tuned per-task values, normalised advantages, "
                  "unclipped value MSE (reference digest section 6.1)")
    if kind == "fast":
        origin += "; rollout reshaped to 2048 envs x 32 steps, 4 epochs x 16 minibatches, observation normalisation"
    return origin

