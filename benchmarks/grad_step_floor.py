"""Lower bound on one MADDPG gradient step on this machine: only its dense layers.

The matrix products of one gradient step of MADDPG on simple_spread (3 agents, per-agent 64-64
MLPs, batch 1024; flat observation 22, joint critic input 3 x 22 + 3 x 5 = 81), written as plain
batched ``einsum`` layers with nothing else (no replay sampling, observation flattening, Gumbel
noise, target networks' soft update or optimiser):

* target critics forward (``[3, 1024, 81] -> 64 -> 64 -> 1``);
* critics forward and backward (the critic loss);
* actors forward (``[3, 1024, 22] -> 64 -> 64 -> 5``), critics forward, and the backward pass
  through both (the actor loss).

Compare its time with the gradient step of ``benchmarks/train_throughput.py --profile`` (full
update minus rollout): what is left above this floor is everything else the step does.

    .venv/bin/python benchmarks/grad_step_floor.py
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp

import metajax  # noqa: F401  (the project's XLA flags, as in training)

AGENTS, BATCH, OBS, ACT, HIDDEN = 3, 1024, 22, 5, 64
CRITIC_IN = AGENTS * (OBS + ACT)


def init(key: jax.Array, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    """Per-agent dense layers: ``[(w [A, in, out], b [A, out])]``."""
    layers = []
    for n_in, n_out in itertools.pairwise(sizes):
        key, k = jax.random.split(key)
        layers.append((jax.random.normal(k, (AGENTS, n_in, n_out)) / n_in**0.5,
                       jnp.zeros((AGENTS, n_out))))
    return layers


def mlp(layers: list, x: jax.Array) -> jax.Array:
    """``x [A, B, in] -> [A, B, out]``, ReLU between layers."""
    for j, (w, b) in enumerate(layers):
        x = jnp.einsum("abi,aio->abo", x, w) + b[:, None]
        if j < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def step(critic, target_critic, actor, x, x_next, obs, reward):
    """The dense work of one gradient step; returns both gradients."""
    y = reward + 0.95 * mlp(target_critic, x_next)
    g_critic = jax.grad(lambda c: jnp.mean((mlp(c, x) - y) ** 2))(critic)

    def actor_objective(a):
        own = mlp(a, obs)  # [A, B, 5]
        x_new = x.at[..., :ACT].set(own)  # each agent's critic sees its new action
        return -jnp.mean(mlp(critic, x_new))

    return g_critic, jax.grad(actor_objective)(actor)


def main() -> None:
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    critic = init(k[0], [CRITIC_IN, HIDDEN, HIDDEN, 1])
    target = init(k[1], [CRITIC_IN, HIDDEN, HIDDEN, 1])
    actor = init(k[2], [OBS, HIDDEN, HIDDEN, ACT])
    x = jax.random.normal(k[3], (AGENTS, BATCH, CRITIC_IN))
    x_next = jax.random.normal(k[4], (AGENTS, BATCH, CRITIC_IN))
    obs = jax.random.normal(k[5], (AGENTS, BATCH, OBS))
    reward = jnp.zeros((AGENTS, BATCH, 1))
    fn = jax.jit(step)
    args = (critic, target, actor, x, x_next, obs, reward)
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(30):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    print(f"dense layers of one MADDPG gradient step (spread, batch {BATCH}): "
          f"{1e3 * best:.2f} ms (fastest of 30)")


if __name__ == "__main__":
    main()
