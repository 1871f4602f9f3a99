"""Peer measurements for :mod:`env_throughput`; runs under the ``.venv-bench`` interpreter.

Measures the 3-agent / 3-landmark ``simple_spread`` world (episodes of 25 steps, random
discrete actions, resets included) in two peer implementations and writes JSON to ``--out``:

* JaxMARL 0.2.0 ``MPE_simple_spread_v3``: ``jit(scan(vmap(env.step)))`` with JaxMARL's own
  reset-on-done inside ``step``. JaxMARL ends an episode on the step whose *incoming* counter
  is ``>= max_steps``, i.e. after ``max_steps + 1`` steps, so ``max_steps=24`` gives 25-step
  episodes (checked below).
* PettingZoo MPE (``mpe2`` 1.1.1) ``simple_spread_v3.parallel_env``: a Python loop, batch 1,
  ``reset()`` when the episode ends (``max_cycles=25``).

The observation, reward and done outputs are carried through the scan so XLA cannot drop them.
Not imported by the main package; do not run it with the project venv.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from importlib import metadata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np
from _timing import steps_for, time_jitted, time_python_loop

EPISODE = 25
N = 3


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "missing"


def jaxmarl_env():
    with contextlib.redirect_stdout(io.StringIO()):  # jaxmarl prints on import
        import jaxmarl
    return jaxmarl.make(
        "MPE_simple_spread_v3", num_agents=N, num_landmarks=N, max_steps=EPISODE - 1
    )


def jaxmarl_episode_length(env) -> int:
    """Steps until JaxMARL's ``dones['__all__']`` first fires (should be ``EPISODE``)."""
    key = jax.random.key(0)
    _, state = env.reset(key)
    step = jax.jit(env.step)
    for t in range(1, 3 * EPISODE):
        key, k = jax.random.split(key)
        acts = {a: jnp.asarray(0) for a in env.agents}
        _, state, _, dones, _ = step(k, state, acts)
        if bool(dones["__all__"]):
            return t
    return -1


def bench_jaxmarl(batches, target, min_steps, max_steps, min_time, max_time):
    env = jaxmarl_env()
    agents = env.agents
    out = {"episode_length": jaxmarl_episode_length(env), "results": {}}

    for b in batches:
        steps = steps_for(b, target, min_steps, max_steps)

        def one_step(state, key, b=b):
            k_act, k_step = jax.random.split(key)
            acts = jax.random.randint(k_act, (b, N), 0, 5)
            actions = {a: acts[:, i] for i, a in enumerate(agents)}
            obs, state, rew, dones, _ = jax.vmap(env.step)(
                jax.random.split(k_step, b), state, actions
            )
            return state, (obs, rew, dones)

        def init(key, b=b, one_step=one_step):
            k0, k1 = jax.random.split(key)
            _, state = jax.vmap(env.reset)(jax.random.split(k0, b))
            shapes = jax.eval_shape(one_step, state, k1)[1]
            out = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
            return state, out, k1

        def run(carry, steps=steps, one_step=one_step):
            def body(c, _):
                state, _, key = c
                key, k = jax.random.split(key)
                state, out = one_step(state, k)
                return (state, out, key), None

            return jax.lax.scan(body, carry, None, length=steps)[0]

        r = time_jitted(init, run, b * steps, min_time=min_time, max_time=max_time)
        r.update(batch=b, steps=steps)
        out["results"][str(b)] = r
        print(f"  jaxmarl B={b:>6}: {r['env_steps_per_s']:12,.0f} env-steps/s "
              f"(compile {r['compile_s']:.2f}s)", file=sys.stderr, flush=True)
    return out


def bench_mpe2(n_steps, min_time):
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(
        N=N, max_cycles=EPISODE, continuous_actions=False
    )
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    lengths = []
    ep = [0]

    def block(n: int) -> int:
        acts = rng.integers(0, 5, size=(n, N))
        for t in range(n):
            if not env.agents:
                lengths.append(ep[0])
                ep[0] = 0
                env.reset()
            env.step({a: int(acts[t, i]) for i, a in enumerate(env.agents)})
            ep[0] += 1
        return n

    r = time_python_loop(block, n_steps, min_time=min_time)
    r.update(batch=1, steps=n_steps)
    print(f"  mpe2    B=     1: {r['env_steps_per_s']:12,.0f} env-steps/s",
          file=sys.stderr, flush=True)
    return {"episode_length": max(lengths) if lengths else -1, "results": {"1": r}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,64,1024,8192,16384")
    p.add_argument("--target", type=int, default=200_000)
    p.add_argument("--min-steps", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--max-time", type=float, default=8.0)
    p.add_argument("--mpe2-steps", type=int, default=2000)
    p.add_argument("--skip", default="", help="comma list of peers to skip: jaxmarl,mpe2")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b]
    skip = set(args.skip.split(","))
    res: dict = {
        "versions": {
            "python": sys.version.split()[0],
            **{k: _version(k) for k in ("jax", "jaxlib", "jaxmarl", "mpe2", "pettingzoo")},
        },
        "errors": {},
    }
    if "jaxmarl" not in skip:
        try:
            res["jaxmarl"] = bench_jaxmarl(
                batches, args.target, args.min_steps, args.max_steps, args.min_time,
                args.max_time,
            )
        except Exception as e:  # report, don't crash the whole comparison
            res["errors"]["jaxmarl"] = f"{type(e).__name__}: {e}"
    if "mpe2" not in skip:
        try:
            res["mpe2"] = bench_mpe2(args.mpe2_steps, args.min_time)
        except Exception as e:
            res["errors"]["mpe2"] = f"{type(e).__name__}: {e}"
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
