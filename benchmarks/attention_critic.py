"""MADDPG training throughput with the attention critic: O(A^2) (before) against O(A) (after).

Run from the repository root::

    .venv/bin/python benchmarks/attention_critic.py            # rewrites its RESULTS.md section
    .venv/bin/python benchmarks/attention_critic.py --quick    # smoke run, no RESULTS.md

The former :class:`~metajax.core.networks.AttentionCritic` computed one agent's ``Q_i`` per call and
re-encoded every agent of the game for it, so every agent's value cost ``A^2`` encodings per
sample; now every agent is encoded once and the attention is shared (``A`` encodings; ``T * A``
with ``T`` teams of shared parameters). Both versions are measured in one invocation: the
script checks out ``--before`` (default: the parent of the commit that introduced
``networks.attend_agents``) and ``--after`` (default ``HEAD``) into temporary git worktrees and
runs itself as a worker (``--worker --root WORKTREE``) in a fresh subprocess for each version and
parameter sharing, alternating before/after, so both see the same machine load. The worker only
uses what both versions have (``envs.make``, ``MADDPGConfig``, ``make_maddpg``).

What is timed: treasure collection with 12 collectors and 6 treasures (MRA Fig. 4's large game,
``experiments/mra_fig4_treasure.py``: ``max_agents=12, max_objects=6, episode_length=20``),
MADDPG with the relational actor and the attention critic at the MRA CPU scale (MRA_SMALL
networks: 64 actor units, 4 heads of 16, embedding 32, critic 64; batch 64; 4 parallel games,
10 rollout steps and 4 gradient steps per update), ``param_sharing`` ``team`` (one team) and
``agent``. The timed function is ``jit(scan over --updates of learner.update)`` with learning on
(``learning_starts`` = one batch; the untimed warm-up call fills the buffer past it). Compile time
(AOT ``lower().compile()``) is reported apart; then chained calls, each ended by
``block_until_ready``; throughput uses the fastest call (the median and CPU time are kept in
``--json``). env-steps/s = updates x 40 / s, grad-steps/s = updates x 4 / s.

Check: the metrics of the first timed call (same seed, same number of updates in both versions).
With one team the two critics are the same function of the same parameters, so the critic loss
and Q agree to float tolerance; with per-agent parameters the O(A) critic is MAAC's (agent ``j``'s
keys and values made with agent ``j``'s parameters), a different function, so they differ.

The script rewrites only its own section of ``benchmarks/RESULTS.md`` (between the
``attention_critic:begin``/``end`` marker comments).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _timing import machine_info, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BEGIN = "<!-- attention_critic:begin -->"
END = "<!-- attention_critic:end -->"
MARKER = "ATTENTION_CRITIC_JSON"
ENV_CONFIG = {"max_agents": 12, "max_objects": 6, "episode_length": 20}
TASK = {"n_agents": 12, "n_treasures": 6}
#: MRA_SMALL / MRA_CPU learner at the CPU scale (written out: the worker must build it with
#: the ``before`` code too).
LEARNER = dict(actor="relational", critic="attention", hidden=(64,), num_heads=4, head_dim=16,
               embed_dim=32, critic_hidden=64, actor_lr=3e-3, critic_lr=3e-3, tau=0.005,
               grad_clip=10.0, batch_size=64, buffer_size=10_000, num_envs=4, rollout_steps=10,
               updates_per_rollout=4, learning_starts=64)


# --- worker: runs under the checkout being measured ------------------------------------------


def worker(root: Path, sharing: str, updates: int, min_reps: int, min_time: float,
           max_time: float) -> dict[str, Any]:
    """Time ``jit(scan(update))`` of the code under ``root`` (see the module doc)."""
    sys.path.insert(0, str(root))
    import metajax  # noqa: I001  (first: its XLA flags before `import envs` starts the backend)

    import jax
    import numpy as np

    import envs
    from metajax.algos.maddpg import MADDPGConfig, make_maddpg

    src = Path(metajax.__file__).resolve()
    if root.resolve() not in src.parents:
        raise RuntimeError(f"imported metajax from {src}, not from {root}")
    env = envs.make("treasure", **ENV_CONFIG)
    cfg = MADDPGConfig(**{**LEARNER, "param_sharing": sharing})
    learner = make_maddpg(cfg, env, env.make_task(**TASK))

    def run(state):
        return jax.lax.scan(lambda s, _: learner.update(s), state, None, length=updates)

    state = jax.block_until_ready(jax.jit(learner.init)(jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    compiled = jax.jit(run, donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - t0
    state, _ = jax.block_until_ready(compiled(state))  # warm-up: fills the buffer
    g0 = int(np.asarray(state.grad_steps))
    times: list[float] = []
    cpus: list[float] = []
    check: dict[str, float] = {}
    while len(times) < min_reps or (sum(times) < min_time and len(times) < 10):
        if len(times) >= min_reps and sum(times) >= max_time:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = jax.block_until_ready(compiled(state))
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if not check:
            check = {k: float(np.asarray(m[k])[-1])
                     for k in ("critic_loss", "actor_loss", "q_mean", "grad_steps")}
    if check["grad_steps"] - g0 != updates * cfg.updates_per_rollout:
        raise RuntimeError(f"not every timed update learned: {check}")
    best, med = min(times), statistics.median(times)
    env_steps = updates * learner.env_steps_per_update
    grad_steps = updates * cfg.updates_per_rollout
    return {
        "sharing": sharing,
        "root": str(root),
        "compile_s": compile_s,
        "best_s": best,
        "median_s": med,
        "cpu_s": min(cpus),
        "reps": len(times),
        "env_steps_per_s": env_steps / best,
        "grad_steps_per_s": grad_steps / best,
        "env_steps_per_cpu_s": env_steps / max(min(cpus), 1e-9),
        "check": check,
    }


# --- driver ----------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def default_before() -> str:
    """Parent of the commit that introduced the O(A) critic (``networks.attend_agents``)."""
    intro = git("log", "--format=%H", "-S", "def attend_agents", "--", "metajax/networks.py")
    if not intro:
        raise RuntimeError("no commit introduces networks.attend_agents; pass --before")
    return git("rev-parse", intro.splitlines()[-1] + "^")


def run_worker(root: Path, sharing: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--root", str(root),
           "--sharing", sharing, "--updates", str(args.updates), "--min-reps",
           str(args.min_reps), "--min-time", str(args.min_time), "--max-time",
           str(args.max_time)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(root), timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER + " ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed ({proc.returncode}): {' '.join(cmd)}\n"
                           f"{(proc.stderr or proc.stdout)[-3000:]}")
    return json.loads(lines[-1][len(MARKER) + 1:])




def render(res: dict[str, Any]) -> str:
    info = res["machine"]
    lines = [
        BEGIN,
        "## Attention critic: every agent encoded once (MADDPG, 12 collectors)",
        "",
        f"Generated by `benchmarks/attention_critic.py` on {info['date']}: {info['cpu']}, "
        f"{info['cores']} cores, Python {info['python']}, jax {res['jax']}; load average "
        f"{info['load_start'][0]} at the start, {info.get('load_end', ['-'])[0]} at the end. "
        f"{res['note']}",
        "",
        f"Command: `{res['command']}`",
        "",
        f"Before: `{res['before'][:10]}` (the critic computes one agent's Q per call and "
        "re-encodes every agent: A^2 encodings per sample); after: "
        f"`{res['after'][:10]}` (every agent encoded once, shared attention: A encodings). "
        "Both measured in this run, each in a fresh process on a git worktree, alternating. "
        "Treasure, 12 collectors, 6 treasures, episodes of 20 steps; MADDPG with the relational "
        "actor and the attention critic, MRA_SMALL networks, batch 64, 4 games x 10 steps and 4 "
        f"gradient steps per update; `jit(scan({res['updates']} x update))` with learning on, "
        "fastest of several chained calls after a warm-up call; compile = AOT "
        "`lower().compile()`.",
        "",
        "| param_sharing | version | env-steps/s | grad-steps/s | call s (best / median) "
        "| compile s | critic loss | Q mean | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for sharing in res["sharings"]:
        b, a = res["rows"][sharing]["before"], res["rows"][sharing]["after"]
        for name, r in (("before, O(A^2)", b), ("after, O(A)", a)):
            up = (f"{a['env_steps_per_s'] / b['env_steps_per_s']:.1f}x"
                  if r is a else "1.0x")
            lines.append(
                f"| {sharing} | {name} | {r['env_steps_per_s']:,.0f} | "
                f"{r['grad_steps_per_s']:,.1f} | {r['best_s']:.2f} / {r['median_s']:.2f} | "
                f"{r['compile_s']:.1f} | {r['check']['critic_loss']:.6g} | "
                f"{r['check']['q_mean']:.6g} | {up} |")
    lines += [
        "",
        "- Critic loss and Q mean: last update of the first timed call (same seed and number of "
        "updates in both versions). `team` (one team): the same function of the same "
        "parameters, so they agree to float tolerance; `agent`: the O(A) critic is MAAC's "
        "(agent j's keys/values made with agent j's parameters), a different function, so "
        "they differ.",
        "- Why `team` gains less than `agent`: in the former critic, vmapped over the agent `i` "
        "whose Q it computes, the observation encoder (the relational encoder of every `o_j`) "
        "does not depend on `i` when all agents share the parameters, so `vmap` left it "
        "unbatched (once per sample); only the state-action encodings, keys, values and Q "
        "heads were `A^2`. With one parameter set per agent, the parameters depend on `i`, so "
        "the encoder ran `A^2` times too. The rest of the update (rollout, relational actors, "
        "Adam) is the same in both versions.",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"




def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 updates per call, 2 reps, no RESULTS.md")
    p.add_argument("--before", default=None, help="git revision of the O(A^2) critic")
    p.add_argument("--after", default="HEAD", help="git revision of the O(A) critic")
    p.add_argument("--sharing", default="team,agent", help="param_sharing values")
    p.add_argument("--updates", type=int, default=None, help="updates per timed call (5)")
    p.add_argument("--min-reps", type=int, default=None)
    p.add_argument("--min-time", type=float, default=None)
    p.add_argument("--max-time", type=float, default=20.0)
    p.add_argument("--note", default="", help="free text for the report (e.g. other load)")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"))
    p.add_argument("--write", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.updates = args.updates or (2 if args.quick else 5)
    args.min_reps = args.min_reps or (2 if args.quick else 3)
    args.min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else 3.0)

    if args.worker:
        out = worker(Path(args.root), args.sharing, args.updates, args.min_reps,
                     args.min_time, args.max_time)
        print(MARKER, json.dumps(out), flush=True)
        return None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    before = git("rev-parse", args.before) if args.before else default_before()
    after = git("rev-parse", args.after)
    sharings = [s for s in args.sharing.split(",") if s]
    info = machine_info()
    import jax

    res: dict[str, Any] = {
        "machine": info, "jax": jax.__version__, "before": before, "after": after,
        "command": shlex.join(["python", "benchmarks/attention_critic.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "updates": args.updates, "sharings": sharings, "note": args.note, "rows": {},
    }
    log(f"{info['cpu']}, {info['cores']} cores, load {info['load_start']}; "
        f"before {before[:10]}, after {after[:10]}")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attn_bench_") as tmp:
        roots = {"before": Path(tmp) / "before", "after": Path(tmp) / "after"}
        try:
            for tag, rev in (("before", before), ("after", after)):
                git("worktree", "add", "--detach", str(roots[tag]), rev)
            for sharing in sharings:
                res["rows"][sharing] = {}
                for tag in ("before", "after"):
                    log(f"{sharing}, {tag} ...")
                    r = run_worker(roots[tag], sharing, args)
                    r["root"] = tag
                    res["rows"][sharing][tag] = r
                    log(f"  {r['env_steps_per_s']:,.0f} env-steps/s, "
                        f"{r['grad_steps_per_s']:.1f} grad-steps/s, compile "
                        f"{r['compile_s']:.1f}s, check {r['check']}")
        finally:
            for path in roots.values():
                if path.exists():
                    git("worktree", "remove", "--force", str(path))
    info["load_end"] = [round(x, 2) for x in os.getloadavg()]
    res["wall_s"] = time.perf_counter() - t_start
    log(f"total {res['wall_s']:.0f}s")
    section = render(res)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    write = (not args.quick) if args.write is None else args.write
    if write:
        write_section(Path(args.results), section, BEGIN, END)
        log(f"wrote the attention_critic section of {args.results}")
    return res


if __name__ == "__main__":
    main()
