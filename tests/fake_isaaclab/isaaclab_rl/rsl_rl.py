"""``RslRlVecEnvWrapper``: the task's config made into the point-goal VecEnv of the tests."""
from tests.fake_vec_env import PointGoalEnv


def RslRlVecEnvWrapper(env):
    cfg = env.unwrapped.cfg
    made = PointGoalEnv(cfg.num_envs, seed=0, device="cpu")
    made.cfg = cfg
    return made
