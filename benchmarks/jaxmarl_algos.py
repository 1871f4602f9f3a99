"""IPPO, MAPPO and QMIX side by side with JaxMARL 0.2's baselines on MPE simple_spread.

Ours: ``experiments/{ippo,mappo,qmix}_spread.py`` (the ``spread`` world with PettingZoo's reward
mix and integration order, 3 agents, 3 landmarks, 25-step episodes). The peer: JaxMARL's own
``baselines/IPPO/ippo_ff_mpe.py``, ``baselines/MAPPO/mappo_rnn_mpe.py`` and
``baselines/QLearning/qmix_rnn.py`` with their yaml configs, unmodified, imported from a JaxMARL
checkout (``--jaxmarl-src``, by default ``benchmarks/_peers/jaxmarl_a0100a1``, git-ignored: see
``benchmarks/README.md`` for how to fill it) and run under the peer interpreter
(``.venv-bench``). Config overrides on the peer side: ``TOTAL_TIMESTEPS`` (the budget),
``NUM_SEEDS``, ``ENV_KWARGS={"max_steps": 24}`` (JaxMARL ends an episode one step after
``max_steps``: 25-step episodes like ours), and for QMIX ``NUM_STEPS=25`` (one episode per
window, as its yaml's 26 for the default 26-step episodes), ``TEST_DURING_TRAINING=False`` (its
greedy tests of 512 games are not training) and ``SAVE_PATH=None``; ``wandb`` in disabled mode
(what the yaml files say).

Both sides run the same way: one program ``jit(vmap(train))`` over the seeds (the whole run is
one ``scan`` over updates on both sides), compiled ahead of time (``lower().compile()``, timed
apart) and then run once; env-steps/s are summed over the seeds; CPU time is the process's
(``resource.getrusage``, all threads). Each (algorithm, side) runs in a fresh subprocess,
ours and the peer's back to back for each algorithm, with ``uptime``'s load averages recorded
around each. After training, the final parameters of every seed are evaluated by the same
procedure on each side's env: ``--eval-episodes`` fresh 25-step episodes, the undiscounted
return per agent averaged over agents and episodes, the PPO policies sampled (as trained) and
greedy (argmax), QMIX greedy; the uniformly random policy is measured the same way.
Both sides run with ``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false`` (what
``import metajax`` sets): without it JaxMARL's IPPO vmapped over 2 seeds never finished (20
updates; the host waiting in ``BlockUntilReady``, every XLA thread asleep).

    .venv/bin/python benchmarks/jaxmarl_algos.py --quick            # smoke, no RESULTS.md
    .venv/bin/python benchmarks/jaxmarl_algos.py                     # full run, writes RESULTS.md
    #   --algos ippo,mappo,qmix  --seeds 3  --ppo-steps 1000000  --qmix-steps 500000
    #   --eval-episodes 256  --peer-python .venv-bench/bin/python  --jaxmarl-src DIR
    #   --json experiments/results/jaxmarl_side_by_side.json  --no-write

Only the standard library is imported at the top: the same file is the worker of each side
(``--worker ours`` under the project's venv, ``--worker peer`` under the peer's, which has no
metajax).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT / "benchmarks" / "_peers" / "jaxmarl_a0100a1"
JAXMARL_COMMIT = "a0100a125a19d8fdd19ace8102b5d826b766c059"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- jaxmarl_algos:begin -->", "<!-- jaxmarl_algos:end -->"
EPISODE = 25
ENV_NAME = "MPE_simple_spread_v3"
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

PEER_SCRIPTS = {  # algo -> (script dir, module, yaml files merged in order)
    "ippo": ("baselines/IPPO", "ippo_ff_mpe", ["config/ippo_ff_mpe.yaml"]),
    "mappo": ("baselines/MAPPO", "mappo_rnn_mpe", ["config/mappo_homogenous_rnn_mpe.yaml"]),
    "qmix": ("baselines/QLearning", "qmix_rnn", ["config/config.yaml",
                                                  "config/alg/ql_rnn_mpe.yaml"]),
}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), cpu_s()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = cpu_s() - self.c


def summarize(per_seed: list[float]) -> dict:
    import statistics
    return {"mean": statistics.fmean(per_seed), "per_seed": per_seed,
            "min": min(per_seed), "max": max(per_seed)}


def run_program(train, keys, mode: str):
    """``(outputs [S], compile clock, run clock)`` of ``train`` over the seeds' ``keys``:
    ``mode="vmap"``: one program ``jit(vmap(train))``; ``"seq"``: ``jit(train)`` compiled once
    and called once per seed (outputs stacked)."""
    import jax
    import jax.numpy as jnp

    with Clock() as c_compile:
        if mode == "vmap":
            program = jax.jit(jax.vmap(train)).lower(keys).compile()
        else:
            program = jax.jit(train).lower(keys[0]).compile()
    with Clock() as c_run:
        if mode == "vmap":
            out = jax.block_until_ready(program(keys))
        else:
            outs = [jax.block_until_ready(program(k)) for k in keys]
    if mode != "vmap":
        out = jax.tree.map(lambda *x: jnp.stack(x), *outs)
    return out, c_compile, c_run


# ---- our side ---------------------------------------------------------------------------------


def worker_ours(algo: str, steps: int, seeds: int, episodes: int, mode: str) -> dict:
    import jax
    import jax.numpy as jnp

    from metajax.core.interfaces import Learner
    from metajax.core.taskspec import build_tasks, distinct_tasks
    from metajax.pipelines.experiment import configure, load_experiment
    from metajax.pipelines.runner import build_env, build_learner
    from metajax.train.evaluation import make_evaluator

    path = ROOT / "experiments" / f"{algo}_spread.py"
    overrides = {"total_env_steps": steps}
    if algo == "qmix":
        overrides["qmix.eps_anneal_steps"] = max(steps // 10, 1)
        overrides["qmix.lr_decay_steps"] = steps  # JaxMARL's LR_LINEAR_DECAY over the run
    cfg = configure(load_experiment(path), overrides=overrides, seeds=seeds)
    env = build_env(cfg)
    learner = build_learner(cfg, env)
    n_updates = cfg.total_env_steps // learner.env_steps_per_update
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)

    def one(key):
        state = learner.init(key)
        state, metrics = jax.lax.scan(lambda s, t: learner.update(s, t), state,
                                      jnp.arange(n_updates))
        return state, metrics["episode_return"]

    (state, train_ret), c_compile, c_run = run_program(one, keys, mode)
    train_ret = jax.device_get(train_ret)  # [S, U]: mean return per agent of recent episodes

    tasks = build_tasks(env, distinct_tasks(cfg.tasks))
    evaluator = make_evaluator(learner, env, episodes)
    params = learner.policy_params(state)
    k_eval = jax.random.PRNGKey(12345)
    evals = {}
    for how, greedy in (("sampled", False), ("greedy", True)):
        if algo == "qmix" and not greedy:
            continue
        r = evaluator(params, tasks, k_eval, greedy)  # [S, K, E, A]
        evals[how] = summarize([float(x) for x in r.mean(axis=(1, 2, 3))])

    n_agents, n_actions = env.max_agents, 5

    def random_policy(p, obs, carry, key, greedy):
        return jax.random.randint(key, (n_agents,), 0, n_actions), carry

    rand = Learner(init=None, update=None, policy=random_policy,
                   policy_params=lambda s: s, initial_carry=lambda: jnp.zeros((n_agents, 0)),
                   env_steps_per_update=0, tasks=None)
    r = make_evaluator(rand, env, episodes)(jnp.zeros((seeds,)), tasks, k_eval, False)
    evals["random"] = summarize([float(x) for x in r.mean(axis=(1, 2, 3))])
    tail = max(n_updates // 10, 1)
    return {
        "side": "ours", "algo": algo, "mode": mode, "config": str(path.relative_to(ROOT)),
        "updates": int(n_updates), "env_steps_per_seed": int(n_updates
                                                           * learner.env_steps_per_update),
        "compile_s": c_compile.wall, "compile_cpu_s": c_compile.cpu,
        "run_s": c_run.wall, "run_cpu_s": c_run.cpu,
        "train_return_last10pct": summarize(
            [float(x) for x in train_ret[:, -tail:].mean(axis=1)]),
        "eval": evals, "versions": {"jax": jax.__version__, "metajax_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()},
    }


# ---- the peer (JaxMARL) -----------------------------------------------------------------------


def peer_config(src: Path, algo: str, steps: int, seeds: int) -> dict:
    from omegaconf import OmegaConf

    folder, _, yamls = PEER_SCRIPTS[algo]
    confs = [OmegaConf.to_container(OmegaConf.load(src / folder / y)) for y in yamls]
    config = {}
    for c in confs:
        config.update(c)
    if algo == "qmix":  # single_run: {**config, **config["alg"]}; here alg is the second file
        config.update(NUM_STEPS=EPISODE, TEST_DURING_TRAINING=False, SAVE_PATH=None)
    config.update(TOTAL_TIMESTEPS=steps, NUM_SEEDS=seeds, ENV_KWARGS={"max_steps": EPISODE - 1},
                  WANDB_MODE="disabled")
    return config


def worker_peer(algo: str, steps: int, seeds: int, episodes: int, src: Path,
                mode: str) -> dict:
    import copy
    import importlib

    import jax
    import jax.numpy as jnp
    import jaxmarl
    import numpy as np
    import wandb

    folder, module, _ = PEER_SCRIPTS[algo]
    sys.path.insert(0, str(src / folder))
    mod = importlib.import_module(module)
    config = peer_config(src, algo, steps, seeds)
    used = copy.deepcopy(config)
    wandb.init(mode="disabled")
    logged = []
    mod.wandb.log = logged.append  # MAPPO reports its returns only here
    if algo == "qmix":
        env, _ = mod.env_from_config(copy.deepcopy(config))
        train = mod.make_train(config, env)
    else:
        train = mod.make_train(config)
    rngs = jax.random.split(jax.random.PRNGKey(config["SEED"]), config["NUM_SEEDS"])
    out, c_compile, c_run = run_program(train, rngs, mode)
    n_updates = int(config["NUM_UPDATES"])

    raw = jaxmarl.make(ENV_NAME, max_steps=EPISODE - 1)
    agents, n_agents = raw.agents, raw.num_agents
    n_actions = raw.action_space(agents[0]).n
    eye = jnp.eye(n_agents)

    if algo == "ippo":
        net = mod.ActorCritic(n_actions, activation=config["ACTIVATION"])
        params = out["runner_state"][0].params

        def logits_fn(p, obs, carry, done):
            return net.apply(p, obs)[0].logits, carry
        carry0 = jnp.zeros((n_agents, 0))
    elif algo == "mappo":
        net = mod.ActorRNN(n_actions, config=config)
        params = out["runner_state"][0][0][0].params

        def logits_fn(p, obs, carry, done):
            carry, pi = net.apply(p, carry, (obs[None], done[None]))
            return pi.logits[0], carry
        carry0 = mod.ScannedRNN.initialize_carry(n_agents, config["GRU_HIDDEN_DIM"])
    else:
        net = mod.RNNQNetwork(action_dim=n_actions, hidden_dim=config["HIDDEN_SIZE"])
        params = out["runner_state"][0].params["agent"]

        def logits_fn(p, obs, carry, done):  # CTRolloutManager's input: obs + one-hot id
            x = jnp.concatenate([obs, eye], -1)
            carry, q = jax.vmap(net.apply, in_axes=(None, 0, 0, 0))(
                p, carry, x[:, None, None], done[:, None, None])
            return q[:, 0, 0], carry
        carry0 = mod.ScannedRNN.initialize_carry(config["HIDDEN_SIZE"], n_agents, 1)

    def episode(p, key, how):
        key, k0 = jax.random.split(key)
        obs, st = raw.reset(k0)

        def step(c, _):
            obs, st, carry, done_prev, key, ret, over, length = c
            key, ka, ks = jax.random.split(key, 3)
            x = jnp.stack([obs[a] for a in agents])
            if how == "random":
                act = jax.random.randint(ka, (n_agents,), 0, n_actions)
            else:
                logits, carry = logits_fn(p, x, carry, done_prev)
                act = (jnp.argmax(logits, -1) if how == "greedy"
                       else jax.random.categorical(ka, logits))
            obs, st, rew, done, _ = raw.step(ks, st, {a: act[i] for i, a in enumerate(agents)})
            r = jnp.stack([rew[a] for a in agents])
            live = 1.0 - over
            ret, length = ret + live * r, length + live
            over = jnp.maximum(over, done["__all__"].astype(jnp.float32))
            return (obs, st, carry, jnp.zeros((n_agents,), bool), key, ret, over, length), None

        init = (obs, st, carry0, jnp.zeros((n_agents,), bool), key, jnp.zeros((n_agents,)),
                jnp.zeros(()), jnp.zeros(()))
        c, _ = jax.lax.scan(step, init, None, EPISODE + 5)
        return c[5].mean(), c[6], c[7]

    evals, lengths = {}, {}
    modes = ("greedy", "random") if algo == "qmix" else ("sampled", "greedy", "random")
    keys = jax.random.split(jax.random.PRNGKey(12345), episodes)
    for how in modes:
        f = jax.jit(jax.vmap(jax.vmap(lambda p, k, m=how: episode(p, k, m), (None, 0)),
                             (0, None)))
        ret, over, length = f(params, keys)  # [S, E]
        assert bool(jnp.all(over > 0)), "an evaluation episode did not end"
        evals[how] = summarize([float(x) for x in np.asarray(ret).mean(axis=1)])
        lengths[how] = sorted({int(x) for x in np.asarray(length).ravel()})

    tail = max(n_updates // 10, 1)
    train_ret = None
    if algo == "ippo":  # MPELogWrapper logs returns x num_agents: back to per agent
        r = np.asarray(out["metrics"]["returned_episode_returns"])  # [S, U, T, actors]
        r = r.reshape(r.shape[0], r.shape[1], -1).mean(-1) / n_agents
        train_ret = summarize([float(x) for x in r[:, -tail:].mean(axis=1)])
    elif algo == "mappo" and mode == "seq" and len(logged) == seeds * n_updates:
        r = np.array([float(m["returns"]) for m in logged]).reshape(seeds, -1).T  # [U, S]
        train_ret = summarize([float(x) for x in r[-tail:].mean(axis=0) / n_agents])
    import importlib.metadata as md
    versions = {p: md.version(p) for p in ("jax", "jaxlib", "jaxmarl", "flax", "optax",
                                            "distrax", "flashbax", "wandb", "omegaconf")}
    return {
        "side": "jaxmarl", "algo": algo, "mode": mode, "script": f"{folder}/{module}.py",
        "config_used": {k: v for k, v in used.items() if not isinstance(v, dict) or k ==
                        "ENV_KWARGS"},
        "updates": n_updates,
        "env_steps_per_seed": n_updates * int(config["NUM_STEPS"]) * int(config["NUM_ENVS"]),
        "compile_s": c_compile.wall, "compile_cpu_s": c_compile.cpu,
        "run_s": c_run.wall, "run_cpu_s": c_run.cpu,
        "train_return_last10pct": train_ret, "eval": evals, "eval_episode_lengths": lengths,
        "callbacks_logged": len(logged), "versions": versions,
    }


# ---- driver ----------------------------------------------------------------------------------


def run_worker(python: str, side: str, algo: str, steps: int, seeds: int, episodes: int,
               src: Path, timeout: int, mode: str) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", side, "--algos", algo,
           "--steps", str(steps), "--seeds", str(seeds), "--eval-episodes", str(episodes),
           "--jaxmarl-src", str(src), "--mode", mode]
    # both sides under the XLA:CPU flag metajax sets at import (see metajax/__init__.py): without
    # it jaxlib 0.10.2 never finished JaxMARL's vmapped IPPO (an io_callback per update)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        flags = f"{flags} {SCHEDULER_FLAG}".strip()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    before = loadavg()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"side": side, "algo": algo, "error": p.stderr[-3000:], "process_s": wall,
                "load_before": before, "load_after": loadavg()}
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    res.update(side="ours" if side == "ours" else "jaxmarl", process_s=wall, load_before=before,
               load_after=loadavg(), command=" ".join(cmd))
    return res


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def ret_cell(d: dict | None) -> str:
    if not d:
        return "-"
    per = ", ".join(fmt(v) for v in d["per_seed"])
    return f"{fmt(d['mean'])} ({per})"


def report(data: dict) -> str:
    m = data["machine"]
    lines = [
        BEGIN,
        "## IPPO / MAPPO / QMIX against JaxMARL 0.2's baselines, simple_spread "
        "(`jaxmarl_algos.py`)",
        "",
        f"{m['date']}, {m['cpus']} CPU cores (shared: load averages per run below), "
        f"Python {m['python']}; ours jax {data['versions_ours'].get('jax')}; "
        "peer " + ", ".join(f"{k} {v}" for k, v in data["versions_peer"].items())
        + f"; JaxMARL scripts from commit `{JAXMARL_COMMIT[:7]}` (its package files equal the "
        "0.2.0 wheel's). "
        f"{data['seeds']} seeds per side ("
        + ("vmapped in one program" if data.get("mode", "vmap") == "vmap"
           else "one compiled program called once per seed") + " on both sides), budgets "
        f"{data['ppo_steps']:,} env steps per seed (IPPO, MAPPO) and {data['qmix_steps']:,} "
        f"(QMIX). Command: `{data['command']}`; raw figures: `{data['json']}`.",
        "",
        "env-steps/s are summed over the seeds: seeds x env steps / wall time of the compiled "
        "program (\"run\"), or of compile + run (\"incl. compile\"). CPU s: process CPU time "
        "(all threads) of compile + run. Return: mean undiscounted return per agent of "
        f"{data['eval_episodes']} fresh 25-step episodes per seed of the final parameters "
        "(mean over seeds, then per seed); PPO policies sampled as trained, QMIX greedy; the "
        "random row is the uniform random policy measured the same way on each side's env.",
        "",
        "| algo | side | env steps/seed | compile s | run s | env-steps/s (run) | "
        "env-steps/s (incl. compile) | CPU s | final return | greedy return | "
        "train return (last 10 %) | load before / after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["runs"]:
        if "error" in r:
            lines.append(f"| {r['algo']} | {r['side']} | failed: see JSON | | | | | | | | | |")
            continue
        total = data["seeds"] * r["env_steps_per_seed"]
        main = r["eval"].get("sampled", r["eval"]["greedy"])
        greedy = r["eval"]["greedy"] if "sampled" in r["eval"] else None
        lines.append(
            f"| {r['algo']} | {r['side']} | {r['env_steps_per_seed']:,} | {fmt(r['compile_s'], 1)} "
            f"| {fmt(r['run_s'], 1)} | {total / r['run_s']:,.0f} | "
            f"{total / (r['run_s'] + r['compile_s']):,.0f} | "
            f"{fmt(r['compile_cpu_s'] + r['run_cpu_s'], 0)} | {ret_cell(main)} | "
            f"{ret_cell(greedy)} | {ret_cell(r.get('train_return_last10pct'))} | "
            f"{r['load_before'][0]} / {r['load_after'][0]} |")
    rnd = {}
    for r in data["runs"]:
        if "error" not in r:
            rnd.setdefault(r["side"], r["eval"]["random"])
    for side, d in rnd.items():
        lines.append(f"| random | {side} | | | | | | | {ret_cell(d)} | | | |")
    lines += ["", *data.get("notes", []), END]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    md = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if BEGIN in md and END in md:
        head, rest = md.split(BEGIN, 1)
        md = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        md = md.rstrip("\n") + "\n\n" + text
    RESULTS_MD.write_text(md)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", default="ippo,mappo,qmix")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ppo-steps", type=int, default=1_000_000)
    ap.add_argument("--qmix-steps", type=int, default=500_000)
    ap.add_argument("--eval-episodes", type=int, default=256)
    ap.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    ap.add_argument("--jaxmarl-src", default=str(DEFAULT_SRC))
    ap.add_argument("--json", default="experiments/results/jaxmarl_side_by_side.json")
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 seeds, 40k / 20k steps, 32 episodes, no RESULTS.md")
    ap.add_argument("--mode", choices=("vmap", "seq"), default="vmap",
                    help="vmap: the seeds in one jit(vmap(train)); seq: one compiled train "
                         "called per seed (JaxMARL's MAPPO reports training returns only so)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per worker")
    ap.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    src = Path(args.jaxmarl_src)

    if args.worker:
        if args.worker == "ours":
            res = worker_ours(args.algos, args.steps, args.seeds, args.eval_episodes, args.mode)
        else:
            res = worker_peer(args.algos, args.steps, args.seeds, args.eval_episodes, src,
                              args.mode)
        print("RESULT " + json.dumps(res))
        return

    if args.quick:
        args.seeds, args.ppo_steps, args.qmix_steps, args.eval_episodes = 2, 40_960, 20_000, 32
        args.no_write = True
    peer_ok = not args.no_peer and Path(args.peer_python).exists() and src.is_dir()
    if not args.no_peer and not peer_ok:
        print(f"warning: no peer ({args.peer_python} or {src} missing); ours only",
              file=sys.stderr)
    runs = []
    for algo in args.algos.split(","):
        steps = args.qmix_steps if algo == "qmix" else args.ppo_steps
        sides = [("ours", sys.executable)] + ([("peer", args.peer_python)] if peer_ok else [])
        for side, python in sides:
            print(f"[{time.strftime('%H:%M:%S')}] {algo} {side}: {steps:,} steps x "
                  f"{args.seeds} seeds, load {loadavg()}", flush=True)
            r = run_worker(python, side, algo, steps, args.seeds, args.eval_episodes, src,
                           args.timeout, args.mode)
            if "error" in r:
                print(f"  FAILED:\n{r['error']}", flush=True)
            else:
                total = args.seeds * r["env_steps_per_seed"]
                ev = r["eval"].get("sampled", r["eval"]["greedy"])
                print(f"  compile {r['compile_s']:.1f}s run {r['run_s']:.1f}s "
                      f"({total / r['run_s']:,.0f} env-steps/s), cpu "
                      f"{r['compile_cpu_s'] + r['run_cpu_s']:.0f}s, return "
                      f"{ev['mean']:.2f} {[round(v, 2) for v in ev['per_seed']]}, random "
                      f"{r['eval']['random']['mean']:.2f}", flush=True)
            runs.append(r)
    ours_v = next((r["versions"] for r in runs if r["side"] == "ours" and "versions" in r), {})
    peer_v = next((r["versions"] for r in runs if r["side"] == "jaxmarl" and "versions" in r),
                  {})
    data = {
        "command": "python benchmarks/jaxmarl_algos.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "json": args.json, "seeds": args.seeds, "ppo_steps": args.ppo_steps,
        "qmix_steps": args.qmix_steps, "eval_episodes": args.eval_episodes, "mode": args.mode,
        "jaxmarl_commit": JAXMARL_COMMIT, "versions_ours": ours_v, "versions_peer": peer_v,
        "machine": {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "runs": runs,
    }
    if args.json and not args.quick:
        Path(ROOT / args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ROOT / args.json).write_text(json.dumps(data, indent=1) + "\n")
    text = report(data)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
