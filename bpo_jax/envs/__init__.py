"""Environment layer of bpo-jax: the env protocol, the suite registry and the suites."""
from bpo_jax.envs.base import Box, Discrete, Env, EnvState, FunctionalEnv, ObsSpec
from bpo_jax.envs.contract import EnvContractError
from bpo_jax.envs.registry import (
    MissingDependencyError, MujocoGLError, SuiteInfo, UnknownEnvError, describe_suites, list_envs, make,
    register_suite, suite_module, suites,
)
from bpo_jax import threefry_cpu

# Every program that steps an env (training, evaluation, the throughput benchmarks) draws its
# resets' keys per env: the rule lowers those draws as one kernel on XLA:CPU (same bits).
threefry_cpu.install()

__all__ = [
    "Box", "Discrete", "Env", "EnvContractError", "EnvState", "FunctionalEnv", "ObsSpec",
    "MissingDependencyError", "MujocoGLError", "SuiteInfo", "UnknownEnvError", "describe_suites", "list_envs", "make",
    "register_suite", "suite_module", "suites",
]
