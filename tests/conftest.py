"""Shared test configuration: small static configs per env, and wandb kept offline."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("WANDB_MODE", "disabled")

import jax

import metajax  # noqa: F401  (its XLA flags must be set before the CPU backend starts)

# Identical programs built by separate calls (a run and its resumption, two runs of one seed)
# compile once: XLA executables are cached by program fingerprint for the whole session.
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("METAJAX_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="metajax-jax-cache-")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

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
