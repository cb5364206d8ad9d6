"""Environment layer of bpo-jax: the env protocol, the suite registry and the suites."""
from bpo_jax.envs.base import Box, Discrete, Env, EnvState, FunctionalEnv, ObsSpec
from bpo_jax.envs.registry import (
    MissingDependencyError, MujocoGLError, SuiteInfo, UnknownEnvError, describe_suites, list_envs, make,
    register_suite, suites,
)

__all__ = [
    "Box", "Discrete", "Env", "EnvState", "FunctionalEnv", "ObsSpec",
    "MissingDependencyError", "MujocoGLError", "SuiteInfo", "UnknownEnvError", "describe_suites", "list_envs", "make",
    "register_suite", "suites",
]
