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

from bpo_jax.errors import unknown_name

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


# The paper's Atari settings (digest section 6.2: SB3 make_atari_env + VecFrameStack(4) on
# *NoFrameskip-v4, here atari/<Game>-v5 with the same preprocessing, see bpo_jax.envs.atari).
# The network is the Nature CNN (bpo_jax.cnn): BPOCnnPolicy's pi/vf [256] MLPs and 256 -> 256 -> 1
# median head for BPO, SB3's CnnPolicy linear heads for PPO.  SB3 defaults otherwise: constant lr,
# Adam eps 1e-5, unclipped value MSE, no observation or reward normalisation.
_ATARI_GAMES = {"Pong": 20_000_000, "Breakout": 20_000_000, "Boxing": 20_000_000, "Asterix": 30_000_000}
_ATARI_COMMON: dict[str, Any] = {
    **_sb3(8, 128, 256), "activation": "relu", "anneal_lr": False, "adam_eps": 1e-5, "value_clip": 0.0,
    "normalize_obs": False, "normalize_rewards": False, "lr": 2.5e-4, "gamma": 0.98, "gae_lambda": 0.95,
    "vf_coef": 0.5,
}
_ATARI: dict[str, dict[str, Any]] = {
    "bpo": {"hidden_sizes": (256,), "median_hidden_sizes": (256,), "num_epochs": 5, "eps": 0.3, "bpo_lambda": 0.001,
            "ent_coef": 0.001, "u_coef": 0.5, "max_grad_norm": 1.0, "use_median": True},
    "ppo": {"hidden_sizes": (), "num_epochs": 4, "eps": 0.1, "ent_coef": 0.01, "max_grad_norm": 0.5,
            "normalize_advantages": True, "adv_std_ddof": 1},  # SB3: torch's .std()
}


# The paper's IsaacLab settings (digest section 6.3, rsl_rl BPO in section 3.3): IsaacLab 2.1's rough
# velocity tasks, 4096 envs x 24 steps, [512, 256, 128] ELU actor and critic, init std 1, no
# normalisation, Adam lr 1e-3 with rsl_rl's adaptive KL (0.01), 4 minibatches, grad norm 1, value
# coefficient 1.  BPO as rsl_rl BPO: lambda 0.01, median net of its own, z clamped to +-10, returns
# recomputed per epoch, unclipped value loss.  PPO: IsaacLab's stock rsl_rl config.
_ISAACLAB_COMMON: dict[str, Any] = {
    "num_envs": 4096, "num_steps": 24, "num_minibatches": 4, "hidden_sizes": (512, 256, 128), "activation": "elu",
    "init_std": 1.0, "normalize_obs": False, "normalize_rewards": False, "gamma": 0.99, "gae_lambda": 0.95,
    "lr": 1e-3, "anneal_lr": False, "lr_schedule": "adaptive", "desired_kl": 0.01, "max_grad_norm": 1.0, "vf_coef": 1.0,
    "adam_eps": 1e-8, "init_at_random_ep_len": True,  # torch's Adam eps; IsaacLab's train.py randomises
    "reshuffle_each_epoch": False,  # rsl_rl's storage draws one permutation per update
}
_ISAACLAB_ALGO: dict[str, dict[str, Any]] = {
    "bpo": {"bpo_lambda": 0.01, "use_median": True, "separate_median": True, "loss_type": "adv_TV", "u_coef": 1.0,
            "value_clip": 0.0, "logit_clamp": 10.0, "recompute_returns": True},
    "ppo": {"eps": 0.2, "value_clip": 0.2, "normalize_advantages": True, "normalize_advantages_per_minibatch": False,
            "num_epochs": 5, "adv_std_ddof": 1},  # torch's .std()
}
# preset task: (IsaacLab task, iterations, PPO entropy, BPO {eps, entropy, epochs, online_adv; the offline
# weight's advantages normalised by torch's .std()})
_ISAACLAB_TASKS: dict[str, tuple[str, int, float, dict[str, Any]]] = {
    "Anymal-C-rough": ("Isaac-Velocity-Rough-Anymal-C-v0", 1500, 0.005,
                       {"eps": 0.25, "ent_coef": 0.0, "num_epochs": 5, "online_adv": True}),
    "G1-rough": ("Isaac-Velocity-Rough-G1-v0", 3000, 0.008,
                 {"eps": 0.2, "ent_coef": 0.0, "num_epochs": 10, "online_adv": True}),
    "Go1-rough": ("Isaac-Velocity-Rough-Unitree-Go1-v0", 1500, 0.01,
                  {"eps": 0.3, "ent_coef": 0.001, "num_epochs": 10, "online_adv": False, "adv_std_ddof": 1}),
    "H1-rough": ("Isaac-Velocity-Rough-H1-v0", 3000, 0.01,
                 {"eps": 0.2, "ent_coef": 0.0, "num_epochs": 5, "online_adv": False, "adv_std_ddof": 1}),
}


def _isaaclab(task: str, algo: str) -> dict[str, Any]:
    """The Config fields of preset paper/isaaclab/<task> for ``algo``."""
    env, iterations, ppo_ent, bpo = _ISAACLAB_TASKS[task]
    per_task = bpo if algo == "bpo" else {"ent_coef": ppo_ent}
    return {**_ISAACLAB_COMMON, "env": f"isaaclab/{env}", "algo": algo, "total_steps": iterations * 4096 * 24,
            **_ISAACLAB_ALGO[algo], **per_task}


class PresetError(ValueError):
    """Unknown preset name; the message lists the valid ones."""


def names() -> list[str]:
    return [f"{kind}/{task}-v4" for kind in ("paper", "fast") for task in _PAPER] + [f"paper/{g}" for g in _ATARI_GAMES] \
        + [f"paper/isaaclab/{t}" for t in _ISAACLAB_TASKS]


def _check_name(name: Any) -> None:
    """A one-line PresetError for a name that is no string (None, a number): string methods
    raised an AttributeError from deep inside."""
    if not isinstance(name, str):
        raise PresetError(f"a preset name is a string, not {name!r}; valid: {', '.join(names())}")


def _check_algo(name: str, algo: Any, valid) -> None:
    """A one-line PresetError unless ``algo`` is one of ``valid`` (a list was a TypeError)."""
    if not isinstance(algo, str) or algo not in valid:
        raise PresetError(f"preset {name!r} has no {algo!r} settings; valid: {', '.join(valid)}")


def resolve(name: str, algo: str) -> dict[str, Any]:
    """The Config fields that preset ``name`` sets for ``algo`` (bpo or ppo)."""
    _check_name(name)
    kind, _, env = name.partition("/")
    if kind == "paper" and env in _ATARI_GAMES:
        _check_algo(name, algo, _ATARI)
        return {**_ATARI_COMMON, "env": f"atari/{env}-v5", "algo": algo, "total_steps": _ATARI_GAMES[env],
                **_ATARI[algo]}
    if kind == "paper" and env.startswith("isaaclab/") and env.partition("/")[2] in _ISAACLAB_TASKS:
        _check_algo(name, algo, _ISAACLAB_ALGO)
        return _isaaclab(env.partition("/")[2], algo)
    task = env.removesuffix("-v4")
    if kind not in ("paper", "fast") or task not in _PAPER or not env.endswith("-v4"):
        raise PresetError(unknown_name("preset", name, names()))
    _check_algo(name, algo, _PAPER[task])
    values = {**_PAPER_COMMON, "env": f"mjx/{env}", "algo": algo}
    if algo == "bpo":
        values.update(_BPO_BASE)
    else:
        values.update(normalize_advantages=True, adv_std_ddof=1, median_hidden_sizes=())  # SB3: torch's .std()
    values.update(_PAPER[task][algo])
    if kind == "fast":
        values.update(_FAST_ROLLOUT)
    return values


def summary(name: str) -> str:
    """One line on what preset ``name`` is, for the list of presets; an unknown name raises
    PresetError (it was described as one of the paper's MuJoCo presets)."""
    _check_name(name)
    if name not in names():
        raise PresetError(unknown_name("preset", name, names()))
    kind, _, rest = name.partition("/")
    if rest in _ATARI_GAMES:
        return "the paper's Atari settings (SB3 BPO with BPOCnnPolicy; SB3 PPO with CnnPolicy), EnvPool"
    if rest.startswith("isaaclab/"):
        return "the paper's IsaacLab settings (rsl_rl BPO; IsaacLab's rsl_rl PPO), 4096 envs; needs IsaacLab"
    if kind == "fast":
        return "the paper's values with a rollout for accelerators: 2048 envs x 32 steps, normalised observations"
    return "the paper's exact MuJoCo settings (the authors' SB3 BPO; SB3 PPO, RL-Zoo values)"


def source(name: str, algo: str) -> str:
    """Where preset ``name``'s ``algo`` settings come from (which implementation it equals)."""
    resolve(name, algo)  # unknown names, and what is no name, raise PresetError
    kind = name.partition("/")[0]
    if name.partition("/")[2] in _ATARI_GAMES:
        return (("the paper authors' SB3 BPO Atari settings with BPOCnnPolicy (reference digest section 6.2)"
                 if algo == "bpo" else
                 "the paper's Atari PPO baseline: SB3 PPO with CnnPolicy, normalised advantages (reference digest "
                 "section 6.2)")
                + "; unlike SB3: the emulator is EnvPool's (or ale-py's) with SB3's preprocessing, small differences "
                  "after a life loss, in no-ops and greyscale (bpo_jax/envs/atari.py)")
    if name.startswith("paper/isaaclab/"):
        return (("the paper authors' rsl_rl BPO (src/rsl_rl/rsl_bpo.py) with their per-task IsaacLab 2.1 settings "
                 "(reference digest sections 3.3 and 6.3)" if algo == "bpo" else
                 "the paper's IsaacLab PPO baseline: IsaacLab's stock rsl_rl PPO config, clipped value loss, "
                 "advantages normalised over the whole batch (reference digest section 6.3)")
                + "; one minibatch permutation per update as rsl_rl; unlike rsl_rl: orthogonal initialisation "
                  "(torch's default, Kaiming-uniform, there), std = min_std + softplus (a raw std parameter there)")
    if algo == "bpo":
        origin = ("the paper authors' SB3 BPO: cfgs/algo/bpo/mujoco.yaml plus the task's sweeps/mujoco/*/bpo_seed.yaml "
                  "(reference digest section 6.1)")
    else:
        origin = ("the paper's PPO baseline: SB3 PPO with its RL-Zoo-tuned per-task values, normalised advantages, "
                  "unclipped value MSE (reference digest section 6.1)")
    origin += ("; unlike SB3: std = min_std + softplus (exp(log_std) there; both 1 at the start), MJX ports of "
               "Gymnasium's v4 tasks (matched step by step, bpo_jax/envs/mjx)")
    if name.partition("/")[2] == "Humanoid-v4":
        origin += ("; budget 35M steps, the range the paper's figure plots (its sweep files say "
                   + ("50M" if algo == "bpo" else "20M") + ")")
    if kind == "fast":
        origin += "; rollout reshaped to 2048 envs x 32 steps, 4 epochs x 16 minibatches, observation normalisation"
    return origin

