"""One MADDPG gradient step on this machine against its floor (only its dense layers).

The floor: the matrix products of one gradient step of MADDPG on simple_spread (3 agents,
per-agent 64-64 MLPs, batch 1024; flat observation 22, joint critic input 3 x 22 + 3 x 5 = 81),
written as plain batched ``einsum`` layers with nothing else (no replay sampling, observation
flattening, Gumbel noise, target networks' soft update or optimiser):

* target critics forward (``[3, 1024, 81] -> 64 -> 64 -> 1``);
* critics forward and backward (the critic loss);
* actors forward (``[3, 1024, 22] -> 64 -> 64 -> 5``), critics forward, and the backward pass
  through both (the actor loss).

Ours, on spread with :data:`~metajax.algos.maddpg.ORIGINAL` (buffer 1e6, batch 1024), timed in
the same process as the floor, alternating, the fastest of ``--reps`` rounds each (the machine
is shared; the fastest round is the least disturbed):

* ``step``: the gradient step as a learner runs it, read through the :class:`Learner`
  interface only (so any git revision can be timed): ``update`` with learning on (1 env step,
  ``K`` gradient steps) minus ``update`` with learning off, over ``K``. Includes the replay
  sample from the 1e6 buffer;
* ``batch`` (revisions that have ``maddpg.learn_on_batch``): the step on a fixed batch, without
  the replay sample, the same work as the floor plus the Gumbel noise, Adam and soft updates.

``--before REV`` also times a git revision (``git archive`` into a temporary directory), each
revision in its own subprocess, alternating, so one invocation compares both under the same
load.

    .venv/bin/python benchmarks/grad_step_floor.py                     # this tree
    .venv/bin/python benchmarks/grad_step_floor.py --before HEAD~3     # and a revision
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = os.environ.get("GRAD_STEP_TREE", str(ROOT))
sys.path.insert(0, TREE)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import metajax  # noqa: E402, F401  (the project's XLA flags, as in training)

AGENTS, BATCH, OBS, ACT, HIDDEN = 3, 1024, 22, 5, 64
CRITIC_IN = AGENTS * (OBS + ACT)
MARKER = "GRAD_STEP_JSON"


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


def floor_timer():
    """A function timing one call of the floor (s)."""
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    critic_sizes = [CRITIC_IN, HIDDEN, HIDDEN, 1]
    args = (init(k[0], critic_sizes), init(k[1], critic_sizes),
            init(k[2], [OBS, HIDDEN, HIDDEN, ACT]),
            jax.random.normal(k[3], (AGENTS, BATCH, CRITIC_IN)),
            jax.random.normal(k[4], (AGENTS, BATCH, CRITIC_IN)),
            jax.random.normal(k[5], (AGENTS, BATCH, OBS)), jnp.zeros((AGENTS, BATCH, 1)))
    fn = jax.jit(step)
    jax.block_until_ready(fn(*args))

    def timed() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return time.perf_counter() - t0

    return timed


# --- ours ------------------------------------------------------------------------------------


def ours_timers(k_steps: int, updates: int) -> dict:
    """``{name: (timer, gradient steps per call)}`` for our step (see the module doc)."""
    import envs
    from metajax.algos import maddpg

    env = envs.make("spread", action_type="relaxed")
    task = env.make_task()
    base = dataclasses.replace(maddpg.ORIGINAL, learning_starts=maddpg.ORIGINAL.batch_size,
                               rollout_steps=4, num_envs=1, updates_per_rollout=k_steps)

    def update_timer(cfg):
        learner = maddpg.make_maddpg(cfg, env, task)
        fn = jax.jit(lambda s: jax.lax.scan(lambda s, _: learner.update(s), s, None,
                                            length=updates), donate_argnums=0)
        state = jax.jit(learner.init)(jax.random.PRNGKey(0))
        compiled = fn.lower(state).compile()
        while int(state.env_steps) < base.learning_starts:  # fill one batch
            state, _ = compiled(state)
        box = [state]

        def timed() -> float:
            t0 = time.perf_counter()
            box[0], _ = compiled(box[0])
            jax.block_until_ready(box[0])
            return time.perf_counter() - t0

        return timed, box

    on, box = update_timer(base)
    off, _ = update_timer(dataclasses.replace(base, learning_starts=2**30))
    out = {"update_on": (on, updates * k_steps), "update_off": (off, updates * k_steps)}
    if hasattr(maddpg, "learn_on_batch"):
        parts = maddpg.make_parts(base, env, task)
        state = box[0]
        batch = parts.replay.sample(state.buffer, jax.random.PRNGKey(1))
        h = maddpg.Hypers.of(base)
        # a copy (it is donated) without the buffer: the fixed batch is all the step reads
        small = jax.tree.map(jnp.array, state.replace(buffer=None))

        def steps(s, b, key):  # the batch an operand, as a sampled one (no constant folding)
            return jax.lax.scan(lambda s, k: maddpg.learn_on_batch(parts, s, b, k, h), s,
                                jax.random.split(key, k_steps))

        fn = jax.jit(steps, donate_argnums=0)
        compiled = fn.lower(small, batch, jax.random.PRNGKey(2)).compile()
        sbox = [small]

        def timed_batch() -> float:
            t0 = time.perf_counter()
            sbox[0], _ = compiled(sbox[0], batch, jax.random.PRNGKey(2))
            jax.block_until_ready(sbox[0])
            return time.perf_counter() - t0

        timed_batch()
        out["batch"] = (timed_batch, k_steps)
    return out


def worker(reps: int, k_steps: int, updates: int) -> dict:
    """Time the floor and ours alternately; the fastest of ``reps`` rounds each (ms)."""
    timers = {"floor": (floor_timer(), 1), **ours_timers(k_steps, updates)}
    best = {name: float("inf") for name in timers}
    for _ in range(reps):
        for name, (timer, n) in timers.items():
            best[name] = min(best[name], 1e3 * timer() / n)
    res = {"floor_ms": best["floor"],
           "step_ms": best["update_on"] - best["update_off"],
           "update_off_ms_per_step": best["update_off"]}
    if "batch" in best:
        res["batch_ms"] = best["batch"]
    return res


# --- driver ----------------------------------------------------------------------------------


def run_tree(tree: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--reps", str(args.reps),
           "--k", str(args.k), "--updates", str(args.updates)]
    env = {**os.environ, "GRAD_STEP_TREE": tree, "PYTHONPATH": tree}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER + " ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker failed in {tree}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARKER) + 1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=None, help="also time this git revision")
    p.add_argument("--rounds", type=int, default=2, help="subprocess rounds per revision")
    p.add_argument("--reps", type=int, default=15, help="timed calls of each, per round")
    p.add_argument("--k", type=int, default=10, help="gradient steps per update")
    p.add_argument("--updates", type=int, default=2, help="updates per timed call")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(MARKER, json.dumps(worker(args.reps, args.k, args.updates)), flush=True)
        return
    trees = {"after (this tree)": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            rev = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
            before = Path(tmp) / rev
            before.mkdir()
            subprocess.run(f"git archive {rev} | tar -x -C {before}", shell=True, cwd=ROOT,
                           check=True)
            trees = {f"before ({rev})": str(before), **trees}
        best: dict[str, dict] = {}
        for r in range(args.rounds):
            for label, tree in trees.items():
                res = run_tree(tree, args)
                print(f"round {r + 1} {label}: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in res.items()), file=sys.stderr, flush=True)
                best[label] = {k: min(v, best.get(label, {}).get(k, float("inf")))
                               for k, v in res.items()}
    for label, res in best.items():
        line = (f"{label}: floor {res['floor_ms']:.2f} ms, step {res['step_ms']:.2f} ms "
                f"({res['step_ms'] / res['floor_ms']:.2f}x the floor)")
        if "batch_ms" in res:
            line += (f", step on a fixed batch {res['batch_ms']:.2f} ms "
                     f"({res['batch_ms'] / res['floor_ms']:.2f}x)")
        print(line)
    print(json.dumps(best))


if __name__ == "__main__":
    main()
