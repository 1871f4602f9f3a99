"""Registry of environments: a dict from name to factory, and :func:`make`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from envs.core import EnvError, MultiAgentEnv


def _lazy(module: str, cls: str) -> Callable[..., MultiAgentEnv]:
    """Factory that imports ``module`` only when the env is made (brax is slow to import)."""

    def factory(**cfg: Any) -> MultiAgentEnv:
        return getattr(importlib.import_module(module), cls)(**cfg)

    factory.__qualname__ = f"{module}.{cls}"
    return factory


REGISTRY: dict[str, Callable[..., MultiAgentEnv]] = {
    "treasure": _lazy("envs.particle.treasure", "Treasure"),
    "resource": _lazy("envs.particle.resource", "Resource"),
    "pacman": _lazy("envs.particle.pacman", "PacMan"),
    "mpe_climb": _lazy("envs.particle.climb", "MPEClimb"),
    "climb": _lazy("envs.matrix.climb", "Climb"),
    "climb_multistage": _lazy("envs.matrix.multistage", "MultiStageClimb"),
    "swimmer_climb": _lazy("envs.swimmer", "SwimmerClimb"),
    # MPE simple_spread-style world, used to benchmark against peer MPE implementations.
    "spread": _lazy("envs.particle.spread", "Spread"),
}


def register(name: str, factory: Callable[..., MultiAgentEnv]) -> None:
    """Add an environment factory under ``name`` (raises if the name is taken)."""
    if name in REGISTRY:
        raise EnvError(f"environment {name!r} is already registered")
    REGISTRY[name] = factory


def make(name: str, **static_config: Any) -> MultiAgentEnv:
    """Build environment ``name`` with static configuration (maxima, episode length, ...).

    Raises:
      EnvError: unknown name, or an invalid configuration.
    """
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise EnvError(
            f"unknown environment {name!r}; registered: {', '.join(sorted(REGISTRY))}"
        ) from None
    try:
        return factory(**static_config)
    except TypeError as e:
        raise EnvError(f"{name}: invalid configuration {static_config}: {e}") from e
