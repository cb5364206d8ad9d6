"""Environment layer of bpo-jax (installed as ``bpo_jax.envs``)."""
from bpo_jax.envs.base import Box, Discrete, Env, EnvState, FunctionalEnv, ObsSpec
from bpo_jax.envs.registry import (
    MissingDependencyError, UnknownEnvError, list_envs, make, register_suite, suites, unavailable_suites,
)

__all__ = [
    "Box", "Discrete", "Env", "EnvState", "FunctionalEnv", "ObsSpec",
    "MissingDependencyError", "UnknownEnvError", "list_envs", "make", "register_suite", "suites",
    "unavailable_suites",
]
