"""The ``metajax`` command line.

``metajax envs``: list the registered environments and their static maxima.
``metajax rollout ENV``: roll out uniformly random joint actions in a batch of games (one per
population, vmapped, one compilation), print per-game returns and throughput, and save a GIF
(particle worlds) of the first game.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import envs
from envs.core import EnvError
from envs.wrappers import AutoReset, random_actions, stack_tasks


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _kv(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"error: expected key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = _parse_value(v)
    return out


def cmd_envs(_: argparse.Namespace) -> int:
    for name in sorted(envs.REGISTRY):
        env = envs.make(name)
        print(f"{name:18s} {env!r}")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    env = envs.make(args.env, **_kv(args.env_config))
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.games + 1)
    if args.task:
        tasks = stack_tasks([env.make_task(**_kv(args.task))] * args.games)
    else:
        tasks = stack_tasks([env.sample_task(k) for k in keys[1:]])
    auto = AutoReset(env)
    steps = args.steps or env.episode_length

    @jax.jit
    def rollout(key, tasks):
        k_reset, k_act = jax.random.split(key)
        state, _ = jax.vmap(auto.reset_to)(jax.random.split(k_reset, args.games), tasks)

        def body(state, k):
            acts = jax.vmap(lambda kk: random_actions(env, kk))(jax.random.split(k, args.games))
            state, ts = jax.vmap(auto.step)(state, acts)
            return state, (state, ts.reward, ts.observation.agent_mask)

        _, (states, rewards, mask) = jax.lax.scan(body, state, jax.random.split(k_act, steps))
        return states, rewards, mask

    t0 = time.perf_counter()
    states, rewards, mask = jax.block_until_ready(rollout(keys[0], tasks))
    t1 = time.perf_counter()
    jax.block_until_ready(rollout(keys[0], tasks))
    t2 = time.perf_counter()
    rewards, mask = np.asarray(rewards), np.asarray(mask)
    per_agent = rewards.sum(0) / np.maximum(mask.sum(0) / steps, 1)
    print(f"{env!r}: {args.games} games x {steps} steps, random actions")
    for g in range(args.games):
        n = int(mask[0, g].sum())
        ret = per_agent[g][mask[0, g]].mean() if n else 0.0
        print(f"  game {g}: {n} agents, mean return per agent {ret:8.3f}")
    print(f"compile {t1 - t0:.2f}s, {args.games * steps / (t2 - t1):,.0f} env-steps/s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from envs import render

        first = jax.tree.map(lambda x: x[:, 0], states)
        try:
            path = render.save_gif(env, first, out / f"{args.env}.gif")
            print(f"wrote {path}")
        except (TypeError, AttributeError, EnvError) as e:
            print(f"no GIF for {args.env}: {e}")
        (out / "returns.json").write_text(json.dumps({"returns": per_agent.tolist()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metajax", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("envs", help="list environments")
    s.set_defaults(fn=cmd_envs)
    s = sub.add_parser("rollout", help="random-action rollout of an environment")
    s.add_argument("env", help=f"one of: {', '.join(sorted(envs.REGISTRY))}")
    s.add_argument("--games", type=int, default=4, help="games rolled out in parallel")
    s.add_argument("--steps", type=int, default=0, help="steps (default: one episode)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--env-config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="static env config, e.g. max_agents=24")
    s.add_argument("--task", nargs="*", default=[], metavar="KEY=VALUE",
                   help="play this task in every game, e.g. n_agents=6")
    s.add_argument("--out", default="", help="directory for the GIF and returns.json")
    s.set_defaults(fn=cmd_rollout)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except EnvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

