"""``parse_env_cfg`` with IsaacLab's signature, and the env gymnasium builds from its config."""
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym


@dataclass
class EnvCfg:
    device: str = "cuda:0"
    num_envs: int = 4096
    use_fabric: bool = True


def parse_env_cfg(task_name: str, device: str = "cuda:0", num_envs: Optional[int] = None,
                  use_fabric: Optional[bool] = None) -> EnvCfg:
    gym.spec(task_name)  # IsaacLab's lookup: an unregistered name raises gymnasium's error
    cfg = EnvCfg(device=device)
    if num_envs is not None:
        cfg.num_envs = num_envs
    if use_fabric is not None:
        cfg.use_fabric = use_fabric
    return cfg


class ManagerEnv(gym.Env):
    def __init__(self, cfg: EnvCfg, **kwargs):
        self.cfg = cfg
