"""metajax environments: pure-JAX multi-agent games, padded to static maxima.

``envs`` knows nothing of learning: it never imports :mod:`metajax`.
"""

from envs.core import EnvError, MultiAgentEnv, Observation, TimeStep
from envs.registry import REGISTRY, make, register
from envs.wrappers import AutoReset, batch_reset_to, batch_step

__all__ = [
    "REGISTRY",
    "AutoReset",
    "EnvError",
    "MultiAgentEnv",
    "Observation",
    "TimeStep",
    "batch_reset_to",
    "batch_step",
    "make",
    "register",
]
