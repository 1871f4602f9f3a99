"""Shared test configuration: small static configs per env, and wandb kept offline."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")

#: Small static configs for every registered env (compile time dominates the suite).
SMALL_CONFIGS: dict[str, dict] = {
    "treasure": dict(max_agents=4, max_objects=3, episode_length=5),
    "resource": dict(max_agents=4, max_objects=3, episode_length=5),
    "pacman": dict(max_pacman=2, max_ghosts=2, max_objects=3, episode_length=5),
    "mpe_climb": dict(max_agents=3, max_objects=3, episode_length=5),
    "spread": dict(episode_length=5),
    "climb": dict(max_agents=3, num_actions=4),
    "climb_multistage": dict(max_agents=2, num_stages=3, num_actions=4),
    "swimmer_climb": dict(episode_length=5),
}
