"""Registers two Isaac-* task ids with gymnasium on import, as IsaacLab's package does."""
import gymnasium as gym

TASKS = ("Isaac-Velocity-Rough-G1-v0", "Isaac-Velocity-Rough-Anymal-C-v0")

for _task in TASKS:
    if _task not in gym.registry:
        gym.register(id=_task, entry_point="isaaclab_tasks.utils:ManagerEnv", disable_env_checker=True)
