"""Helpers shared by test modules (plain functions; fixtures live in the test modules and in
``conftest.py``)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

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


def leaf_changes(before: Any, after: Any) -> dict[str, float]:
    """``{leaf path: max |after - before|}`` over every leaf of two pytrees of one structure."""
    a, tree = jax.tree_util.tree_flatten_with_path(before)
    b = jax.tree.leaves(after)
    if len(a) != len(b):
        raise ValueError(f"trees differ: {len(a)} leaves against {len(b)}")
    return {jax.tree_util.keystr(p): float(np.abs(np.asarray(y) - np.asarray(x)).max())
            for (p, x), y in zip(a, b, strict=True)}


def assert_every_leaf_changed(before: Any, after: Any, what: str = "parameters") -> None:
    """Every leaf of ``after`` differs from ``before`` somewhere (one changed leaf is not
    enough: a layer cut off from the loss would pass such a check)."""
    ch = leaf_changes(before, after)
    still = [k for k, v in ch.items() if not v > 0]
    assert ch and not still, f"{what}: {len(still)} of {len(ch)} leaves unchanged: {still[:6]}"


def assert_no_leaf_changed(before: Any, after: Any, what: str = "parameters") -> None:
    """No leaf of ``after`` differs from ``before``."""
    moved = {k: v for k, v in leaf_changes(before, after).items() if v != 0}
    assert not moved, f"{what}: leaves changed: {moved}"


def is_finite_float(v: Any) -> bool:
    """``v`` is a Python float and not NaN or infinite (``isinstance(v, float)`` passes NaN)."""
    return isinstance(v, float) and math.isfinite(v)


def tiny_climb_experiment(name: str, total_env_steps: int, **fields: int) -> str:
    """The text of an experiment file training MADDPG on a 2-agent, 4-action climb game
    (``k=2, u=1``) for ``total_env_steps`` env steps per seed, 2 seeds, 8 env steps per chunk;
    ``fields`` are further :class:`metajax.pipelines.runner.TrainConfig` fields (e.g.
    ``eval_every=2``)."""
    more = "".join(f"    {k}={v!r},\n" for k, v in fields.items())
    return f'''"""A tiny climb game for the tests ({name})."""

from metajax.algos.maddpg import MADDPGConfig
from metajax.pipelines.runner import TrainConfig

CONFIG = TrainConfig(
    name={name!r},
    env="climb",
    env_config=dict(max_agents=2, num_actions=4),
    tasks=(dict(k=2, u=1),),
    maddpg=MADDPGConfig(hidden=(8,), batch_size=8, buffer_size=64, num_envs=4,
                        rollout_steps=1, learning_starts=12),
    total_env_steps={total_env_steps},
    chunk_updates=2,
    eval_episodes=2,
    seeds=2,
{more})
'''


def run_in_subprocess(module: str, function: str, out: Path, env: dict[str, str]) -> None:
    """Call ``tests/<module>.py``'s ``function(str(out))`` in a fresh Python process with
    ``env`` added to the environment (for what needs its own process, such as another XLA
    device count); raises with the end of the process's output if it fails."""
    tests = Path(__file__).resolve().parent
    script = (f"import sys; sys.path.insert(0, {str(tests)!r}); import metajax, {module}; "
              f"{module}.{function}(sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=str(tests.parent),
                          env={**os.environ, "WANDB_MODE": "disabled", **env},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{module}.{function} failed ({proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-4000:]}")
