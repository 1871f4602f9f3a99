"""Training throughput of MADDPG: env-steps/s and gradient steps/s, ours against AgileRL's.

Run from the repository root::

    .venv/bin/python benchmarks/train_throughput.py            # full run, rewrites RESULTS.md
    .venv/bin/python benchmarks/train_throughput.py --quick    # smoke run (tiny), no RESULTS.md
    .venv/bin/python benchmarks/train_throughput.py --profile  # adds where one update's time goes

The peer needs its own venv (kept out of the project's)::

    python3 -m venv .venv-agilerl
    .venv-agilerl/bin/pip install torch==2.13.0          # the CPU wheel, first
    .venv-agilerl/bin/pip install agilerl==2.58.0 peft mpe2==1.1.1

What is timed (learning on throughout: only chunks in which every update took its gradient
steps are timed, ``learning_starts`` = one batch so the buffer is pre-filled quickly):

* **ours**: :func:`metajax.train.loop.make_chunk` (``jit(vmap(scan(learner.update)))`` over
  ``--chunk-updates`` updates), state placed with :func:`~metajax.train.loop.shard_seeds`. MADDPG
  :data:`~metajax.algos.maddpg.ORIGINAL` (1 env, 100 env steps then 1 gradient step per update,
  batch 1024, 64-64 MLPs, lr 1e-2, gamma 0.95, tau 0.01), relaxed Gumbel-softmax actions
  (``action_type="relaxed"``), per-agent parameters.

  - ``spread``: the 3-agent simple_spread world, 1 seed, buffer 1e6: the like-for-like row.
  - ``treasure``: treasure collection (``--treasure-agents`` collectors, ``--treasure-objects``
    treasures; 3 and 3 by default), 1/4/16/64 vmapped seeds, buffer ``--buffer-size`` per seed
    (50k by default: 64 seeds x 1e6 transitions would not fit in memory).

  Compile time is the ahead-of-time ``chunk.lower(state).compile()`` wall time (tracing,
  lowering, XLA), reported apart. Then chained calls ``state = chunk(state)`` ended by
  ``block_until_ready``; throughput uses the fastest call (least disturbed by other load), the
  median is kept in the JSON. env-steps/s = seeds x updates x 100 / s; updates/s = gradient
  steps summed over seeds / s (one gradient step updates every agent's critic and actor).
  ``time / 1 seed``: chunk time at S seeds over chunk time at 1 seed (ideal 1; target < 8 at 64).

* **AgileRL 2.58 MADDPG** (PyTorch CPU) on PettingZoo MPE ``mpe2`` ``simple_spread_v3`` (3
  agents), 1 env and 8 envs, same hyperparameters and UTD (one ``learn()`` per 100 env steps),
  see ``benchmarks/peers/agilerl_maddpg.py``. It runs in a subprocess under ``--peer-python``
  (default ``.venv-agilerl/bin/python``) and prints one JSON line. ``vs AgileRL 1 env``: our
  env-steps/s over the peer's (target >= 50 at 1 seed).

The script rewrites only its own section of ``benchmarks/RESULTS.md`` (between the
``train_throughput:begin``/``end`` marker comments); the rest of the file is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
# metajax's XLA flags must be set before `import envs` starts XLA's backend
importlib.import_module("metajax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import machine_info, write_section  # noqa: E402

import envs  # noqa: E402
from metajax.algos.maddpg import ORIGINAL, MADDPGConfig, make_maddpg  # noqa: E402
from metajax.train.loop import make_chunk, seed_mesh, shard_seeds  # noqa: E402

BEGIN = "<!-- train_throughput:begin -->"
END = "<!-- train_throughput:end -->"
MARKER = "TRAIN_THROUGHPUT_JSON"
PEER_SCRIPT = HERE / "peers" / "agilerl_maddpg.py"
DEFAULT_PEER_PYTHON = ROOT / ".venv-agilerl" / "bin" / "python"
NA = "-"


# --- ours ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class World:
    """An env of the registry and the one task trained on."""

    label: str
    name: str
    env_kwargs: dict
    task_kwargs: dict


def spread_world() -> World:
    return World("spread (3 agents, 3 landmarks)", "spread", {"action_type": "relaxed"}, {})


def treasure_world(agents: int, objects: int) -> World:
    return World(
        f"treasure ({agents} agents, {objects} treasures)",
        "treasure",
        {"max_agents": agents, "max_objects": objects, "action_type": "relaxed"},
        {"n_agents": agents, "n_treasures": objects},
    )


def bench_ours(
    world: World,
    cfg: MADDPGConfig,
    seeds: int,
    chunk_updates: int,
    *,
    min_reps: int,
    min_time: float,
    max_reps: int,
    log=print,
) -> dict[str, Any]:
    """Time ``make_chunk(learner, chunk_updates)`` on ``seeds`` vmapped seeds (see module doc)."""
    env = envs.make(world.name, **world.env_kwargs)
    learner = make_maddpg(cfg, env, env.make_task(**world.task_kwargs))
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    state = jax.block_until_ready(jax.jit(jax.vmap(learner.init))(keys))
    state = shard_seeds(state, seed_mesh(seeds))
    buffer_bytes = sum(x.nbytes for x in jax.tree.leaves(state.buffer.experience)) / seeds
    chunk = make_chunk(learner, chunk_updates)
    t0 = time.perf_counter()
    compiled = chunk.lower(state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    per_update = learner.env_steps_per_update
    # warm-up: the first call, then until every update of the next chunk learns
    warm = 0
    c = 0  # chunk index: the updates' run-wide index decides when learning starts
    while True:
        state, _ = compiled(state, jnp.int32(c))
        c += 1
        jax.block_until_ready(state)
        warm += 1
        if int(np.asarray(state.env_steps)[0]) + per_update >= cfg.learning_starts:
            break
    times: list[float] = []
    grads = 0
    while len(times) < max_reps and (len(times) < min_reps or sum(times) < min_time):
        g0 = int(np.asarray(state.grad_steps).sum())
        t0 = time.perf_counter()
        state, _ = compiled(state, jnp.int32(c))
        c += 1
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
        grads = int(np.asarray(state.grad_steps).sum()) - g0
    expected = seeds * chunk_updates * cfg.updates_per_rollout
    if grads != expected:
        log(f"  warning: {grads} gradient steps in a timed chunk, expected {expected}")
    best, med = min(times), statistics.median(times)
    steps = seeds * chunk_updates * per_update
    return {
        "impl": "ours",
        "world": world.label,
        "seeds": seeds,
        "chunk_updates": chunk_updates,
        "env_steps_per_chunk": steps,
        "grad_steps_per_chunk": grads,
        "compile_s": compile_s,
        "warmup_chunks": warm,
        "reps": len(times),
        "chunk_s": best,
        "chunk_s_median": med,
        "env_steps_per_s": steps / best,
        "env_steps_per_s_median": steps / med,
        "updates_per_s": grads / best,
        "buffer_size": cfg.buffer_size,
        "buffer_mb_per_seed": buffer_bytes / 2**20,
    }


def profile_update(world: World, cfg: MADDPGConfig, updates: int, log=print) -> dict[str, Any]:
    """Where one update's time goes, 1 seed: ``jit(scan(update))`` with learning on, with
    learning off (rollout + buffer add; a real ``cond`` without vmap), one env step + one gradient
    step, and the vmapped chunk with learning off (``vmap`` turns ``cond`` into ``select``)."""
    env = envs.make(world.name, **world.env_kwargs)
    task = env.make_task(**world.task_kwargs)
    never = 2**30

    def timed(label: str, c: MADDPGConfig, vmapped: bool) -> float:
        learner = make_maddpg(c, env, task)
        if vmapped:
            def vscan(s):
                # no update index: readiness is read from the batched state, so under vmap
                # the cond becomes a select (the cost this row shows)
                return jax.vmap(lambda x: jax.lax.scan(
                    lambda y, _: learner.update(y), x, None, length=updates))(s)

            fn = jax.jit(vscan, donate_argnums=0)
            state = jax.jit(jax.vmap(learner.init))(jax.random.split(jax.random.PRNGKey(0), 1))
        else:
            def scan(s):
                return jax.lax.scan(lambda s, _: learner.update(s), s, None, length=updates)

            fn = jax.jit(scan, donate_argnums=0)
            state = jax.jit(learner.init)(jax.random.PRNGKey(0))
        compiled = fn.lower(state).compile()
        # as many env steps as it takes ``cfg`` to start learning (same buffer fill in all)
        while int(np.asarray(state.env_steps).max()) + c.rollout_steps < cfg.learning_starts:
            state, _ = compiled(state)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            state, _ = compiled(state)
            jax.block_until_ready(state)
            best = min(best, time.perf_counter() - t0)
        ms = 1e3 * best / updates
        log(f"  profile {label}: {ms:.2f} ms per update")
        return ms

    out = {
        "full_ms": timed("full update (jit, no vmap)", cfg, False),
        "rollout_add_ms": timed("rollout + buffer add (learning off)", dataclasses.replace(
            cfg, learning_starts=never), False),
        "one_step_grad_ms": timed("1 env step + 1 gradient step", dataclasses.replace(
            cfg, rollout_steps=1), False),
        "vmapped_learning_off_ms": timed("vmapped chunk, learning off", dataclasses.replace(
            cfg, learning_starts=never), True),
    }
    out["rollout_steps"] = cfg.rollout_steps
    out["world"] = world.label
    return out


# --- the peer --------------------------------------------------------------------------------


def bench_peer(python: Path, num_envs: int, steps: int, warmup: int, threads: int,
               timeout: float) -> dict[str, Any]:
    cmd = [str(python), str(PEER_SCRIPT), "--num-envs", str(num_envs), "--steps", str(steps),
           "--warmup", str(warmup)]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER + " ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(f"peer failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    out = json.loads(lines[-1][len(MARKER) + 1:])
    out["threads_env"] = threads or "default"
    return out


# --- report ----------------------------------------------------------------------------------




def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return NA
    return f"{x:,.{digits}f}"


def render(results: dict[str, Any]) -> str:
    info, rows = results["machine"], results["rows"]
    peers = [r for r in rows if r["impl"] == "agilerl"]
    peer1 = next((r for r in peers if r["num_envs"] == 1), None)
    treasure = [r for r in rows if r["impl"] == "ours" and r["world"].startswith("treasure")]
    one = next((r for r in treasure if r["seeds"] == 1), None)
    torch_v = peers[0]["versions"]["torch"] if peers else "not run"
    lines = [
        BEGIN,
        "## Training throughput (MADDPG)",
        "",
        f"Generated by `benchmarks/train_throughput.py` on {info['date']}: {info['cpu']}, "
        f"{info['cores']} cores, Python {info['python']}, jax {info['jax']} "
        f"({info['jax_backend']}), torch {torch_v}; load average "
        f"{info['load_start'][0]} at the start, {info.get('load_end', [NA])[0]} at the end "
        "(the machine is shared: compare rows of one run, quote ratios).",
        "",
        f"Command: `{results['command']}`",
        "",
        "Steady state with learning on: one gradient step (every agent's critic and actor, "
        "batch 1024) per 100 env steps, 64-64 MLPs, lr 1e-2, gamma 0.95, tau 0.01. Ours: "
        "`make_chunk` = `jit(vmap(scan(update)))`, "
        f"{results['chunk_updates']} updates per chunk, fastest of several chunks; compile = "
        "AOT `lower().compile()`. AgileRL: its off-policy loop on `mpe2` simple_spread "
        "(`benchmarks/peers/agilerl_maddpg.py`).",
        "",
        "| setting | env-steps/s | updates/s | compile s | chunk s | time / 1 seed "
        "| vs AgileRL 1 env |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["impl"] == "ours":
            name = f"ours, {r['world']}, {r['seeds']} seed{'s' if r['seeds'] > 1 else ''}"
            ratio = (f"{r['chunk_s'] / one['chunk_s']:.1f}x"
                     if r in treasure and one is not None else NA)
            vs = (f"{r['env_steps_per_s'] / peer1['env_steps_per_s']:.0f}x"
                  if peer1 is not None else NA)
            lines.append(
                f"| {name} | {_fmt(r['env_steps_per_s'])} | {_fmt(r['updates_per_s'], 1)} "
                f"| {_fmt(r['compile_s'], 1)} | {_fmt(r['chunk_s'], 3)} | {ratio} | {vs} |")
        else:
            name = (f"AgileRL {r['versions']['agilerl']} MADDPG, mpe2 simple_spread, "
                    f"{r['num_envs']} env{'s' if r['num_envs'] > 1 else ''}"
                    f" (torch threads: {r['threads_env']})")
            vs = (f"{r['env_steps_per_s'] / peer1['env_steps_per_s']:.1f}x"
                  if peer1 is not None else NA)
            lines.append(
                f"| {name} | {_fmt(r['env_steps_per_s'])} | {_fmt(r['learns_per_s'], 1)} "
                f"| {NA} | {NA} | {NA} | {vs} |")
    for msg in results.get("missing", []):
        lines += ["", f"Not run: {msg}"]
    lines += [""]
    notes = []
    if treasure:
        buf = treasure[0]
        notes.append(
            f"Treasure rows: replay buffer {buf['buffer_size']:,} per seed "
            f"({buf['buffer_mb_per_seed']:.0f} MB each); spread row: 1e6 (ORIGINAL). "
            "`time / 1 seed` is the chunk time over the 1-seed chunk time (target < 8x at 64 "
            "seeds); `vs AgileRL 1 env` is env-steps/s over AgileRL's 1-env figure (target >= "
            "50x for ours at 1 seed).")
    for p in peers:
        split = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["time_split"].items())
        notes.append(
            f"AgileRL {p['num_envs']} env(s): {p['env_steps']:,} timed env steps, "
            f"{p['learns']} `learn()` calls (one per {p['env_steps_per_learn']:.0f} env steps); "
            f"time split: {split}.")
    prof = results.get("profile")
    if prof:
        grad = prof["one_step_grad_ms"]
        notes.append(
            f"Where one update's time goes (ours, {prof['world']}, 1 seed, no vmap): full "
            f"update {prof['full_ms']:.1f} ms; rollout of {prof['rollout_steps']} steps + "
            f"buffer add {prof['rollout_add_ms']:.1f} ms, so the gradient step is about "
            f"{prof['full_ms'] - prof['rollout_add_ms']:.1f} ms; 1 env step + 1 gradient step "
            f"{grad:.1f} ms; vmapped chunk with learning off {prof['vmapped_learning_off_ms']:.1f}"
            " ms (vmap turns the learning-starts `cond` into a `select`: the gradient step runs "
            "even before learning starts).")
    lines += [f"- {n}" for n in notes]
    lines += ["", END]
    return "\n".join(lines) + "\n"




# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: seeds 1,4, 2 updates per chunk, short peer runs, no RESULTS.md")
    p.add_argument("--seeds", default=None, help="treasure seed counts (default 1,4,16,64)")
    p.add_argument("--chunk-updates", type=int, default=None, help="updates per chunk (10)")
    p.add_argument("--treasure-agents", type=int, default=3)
    p.add_argument("--treasure-objects", type=int, default=3)
    p.add_argument("--buffer-size", type=int, default=50_000,
                   help="replay capacity per seed on treasure (spread uses ORIGINAL's 1e6)")
    p.add_argument("--no-spread", action="store_true", help="skip our simple_spread row")
    p.add_argument("--profile", action="store_true",
                   help="also time the pieces of one update (4 more compiles)")
    p.add_argument("--peer-python", default=None,
                   help=f"interpreter with agilerl (default {DEFAULT_PEER_PYTHON})")
    p.add_argument("--peer-envs", default="1,8", help="AgileRL env counts ('' = none)")
    p.add_argument("--peer-steps", type=int, default=None, help="timed peer env steps (3000)")
    p.add_argument("--peer-threads", type=int, default=0,
                   help="OMP_NUM_THREADS for the peer (0 = torch's default)")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"))
    p.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                   help="rewrite this script's RESULTS.md section (default: yes unless --quick)")
    p.add_argument("--json", default=None, help="also write the raw results here")
    args = p.parse_args(argv)

    quick = args.quick
    seeds = [int(s) for s in (args.seeds or ("1,4" if quick else "1,4,16,64")).split(",") if s]
    chunk_updates = args.chunk_updates or (2 if quick else 10)
    timing = dict(min_reps=2, min_time=0.0, max_reps=2) if quick else dict(
        min_reps=3, min_time=2.0, max_reps=10)
    peer_steps = args.peer_steps or (300 if quick else 3000)
    peer_envs = [int(n) for n in args.peer_envs.split(",") if n] if not args.no_peer else []
    write = (not quick) if args.write is None else args.write

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    info = machine_info()
    results: dict[str, Any] = {
        "machine": info,
        "command": "python benchmarks/train_throughput.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "chunk_updates": chunk_updates,
        "rows": [],
        "missing": [],
    }
    log(f"{info['cpu']}, {info['cores']} cores, jax {info['jax']}, load {info['load_start']}")
    # learning starts once one batch is stored (a pre-filled buffer): steady state sooner
    base = dataclasses.replace(ORIGINAL, learning_starts=ORIGINAL.batch_size)

    if not args.no_spread:
        log("ours: spread, 1 seed (ORIGINAL, buffer 1e6)")
        r = bench_ours(spread_world(), base, 1, chunk_updates, log=log, **timing)
        log(f"  {r['env_steps_per_s']:,.0f} env-steps/s, compile {r['compile_s']:.1f}s")
        results["rows"].append(r)

    if peer_envs:
        python = Path(args.peer_python) if args.peer_python else DEFAULT_PEER_PYTHON
        if not python.exists():
            msg = (f"AgileRL peer: no interpreter at {python}. Create it with `python3 -m venv "
                   ".venv-agilerl && .venv-agilerl/bin/pip install torch==2.13.0 && "
                   ".venv-agilerl/bin/pip install agilerl==2.58.0 peft mpe2==1.1.1`, pass "
                   "--peer-python, or --no-peer.")
            log(msg)
            results["missing"].append(msg)
        else:
            for n in peer_envs:
                log(f"AgileRL: {n} env(s), {peer_steps} timed env steps")
                try:
                    r = bench_peer(python, n, peer_steps, 2 * 100 * max(n, 1), args.peer_threads,
                                   timeout=1800)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(str(e))
                    results["missing"].append(f"AgileRL {n} env(s): {str(e).splitlines()[0]}")
                    continue
                log(f"  {r['env_steps_per_s']:,.0f} env-steps/s")
                results["rows"].append(r)

    tw = treasure_world(args.treasure_agents, args.treasure_objects)
    tcfg = dataclasses.replace(base, buffer_size=args.buffer_size)
    for s in seeds:
        log(f"ours: {tw.label}, {s} seeds")
        r = bench_ours(tw, tcfg, s, chunk_updates, log=log, **timing)
        log(f"  {r['env_steps_per_s']:,.0f} env-steps/s, chunk {r['chunk_s']:.3f}s, "
            f"compile {r['compile_s']:.1f}s")
        results["rows"].append(r)

    if args.profile:
        log("profile: spread, 1 seed")
        results["profile"] = profile_update(spread_world(), base, chunk_updates, log=log)

    try:
        info["load_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    section = render(results)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if write:
        write_section(Path(args.results), section, BEGIN, END)
        log(f"wrote the train_throughput section of {args.results}")
    return results


if __name__ == "__main__":
    main()
