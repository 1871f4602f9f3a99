"""The Python side of ``benchmarks/gpu_check.sh`` (see ``benchmarks/README.md``).

Subcommands (the shell script calls them; each is usable alone):

* ``info --out FILE``: jax and jaxlib versions, backend, devices, the machine
  (:func:`_timing.machine_info`) and an import preflight of the modules the stages need (a
  device image may lack some of the project's dependencies); exits 1 when an import fails.
* ``probe {mesa,mra} --mode {gpu,cpu-smoke} --chunks N --work DIR``: a short run of one paper
  experiment through the CLI (``metajax run FILE --preset paper --set ...``, called in this
  process): the config is built first to size the step budgets to ``N`` chunks, the plan
  (command, chunk sizes, learners per stage, memory) goes to ``DIR/<kind>.plan.json``, and
  every line the run prints is written, with the seconds since the start, to
  ``DIR/<kind>.tslog`` (flushed line by line, so a run killed by ``timeout`` keeps its log).
* ``summary --work DIR --out DIR ...``: reads what the stages left (their exit status and wall
  time from the shell, the raw JSON of the throughput scripts, the probes' logs and run
  directories) and writes ``OUT/gpu_check.json``; standard library only, so it runs even when
  jax does not import. ``--final`` makes its exit status 1 when a stage failed or timed out.

Only ``info`` and ``probe`` import jax / metajax, and only inside their functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Every stage, in run order.
STAGES = ("info", "env", "train", "mesa", "mra", "sweep")
#: Modules the stages import (the preflight of ``info``).
PREFLIGHT = ("envs", "metajax.algos.maddpg", "metajax.pipelines.runner", "metajax.pipelines.mesa",
             "metajax.pipelines.mra_compare", "metajax.cli")

#: The envs of the ``env`` stage (``gpu_check.sh`` passes them to ``env_throughput.py``).
ENV_NAMES = ("spread", "treasure")
MESA_FILE = "experiments/mesa_mpe_2a5l.py"
MRA_FILE = "experiments/mra_fig5_resource.py"
MRA_ARM = "mra"

#: Probe overrides on top of the paper presets, both modes: MESA without its baselines, one
#: exploration policy and no zero-shot evaluation (the stages that train stay: collection,
#: exploration policy, meta-test); MRA's one arm, without the zero-shot and reference
#: evaluations, going on after a NaN so that the metrics show it.
MESA_PROBE: dict[str, Any] = {"methods": ["mesa"], "num_explorers": 1, "zero_shot": False}
MRA_PROBE: dict[str, Any] = {"arms": {MRA_ARM: {}}, "zero_shot": False, "references": [],
                             "base.allow_nonfinite": True}

#: ``--cpu-smoke``: the same experiment files without their paper preset, cut to seconds.
_TINY_LEARNER = {"num_envs": 2, "rollout_steps": 10, "batch_size": 32, "buffer_size": 1000,
                 "learning_starts": 40, "hidden": [16]}
MESA_SMOKE: dict[str, Any] = {
    "n_train": 2, "n_test": 1, "seeds": 1, "env_config.episode_length": 10,
    **{f"maddpg.{k}": v for k, v in _TINY_LEARNER.items()},
    **{f"collect.{k}": v for k, v in _TINY_LEARNER.items()},
    "dataset_capacity": 16, "num_clusters": 4, "kmeans_iters": 5, "coverage_episodes": 4,
    "eval_episodes": 1, "count_episodes": 1, "chunk_updates": 2, "eval_every": 0,
    "anneal_steps": 40, "xla_fast": True,
}
MRA_SMOKE: dict[str, Any] = {
    "seeds": 2,  # the summary's confidence intervals need two
    **{f"base.maddpg.{k}": v for k, v in {
        "batch_size": 16, "buffer_size": 1000, "learning_starts": 32, "rollout_steps": 8,
        "num_envs": 3, "updates_per_rollout": 1, "hidden": [16], "num_heads": 2,
        "head_dim": 4, "embed_dim": 8, "critic_hidden": 16}.items()},
    "base.chunk_updates": 2, "base.eval_episodes": 1,
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _err(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


# --- info ------------------------------------------------------------------------------------


def preflight(modules: tuple[str, ...] = PREFLIGHT) -> list[dict[str, str]]:
    """``[{"module", "error", "missing"}]`` for each module that fails to import (``missing``:
    the top-level package that is not installed, if that is why)."""
    import importlib

    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:
            missing = getattr(e, "name", None) if isinstance(e, ImportError) else None
            failed.append({"module": name, "error": _err(e),
                           "missing": (missing or "").split(".")[0]})
    return failed


def cmd_info(args: argparse.Namespace) -> int:
    out: dict[str, Any] = {"date": _now()}
    try:
        import jax
        import jaxlib

        sys.path.insert(0, str(HERE))
        from _timing import machine_info

        out["machine"] = machine_info()
        out["jax"] = jax.__version__
        out["jaxlib"] = jaxlib.__version__
        out["backend"] = jax.default_backend()
        out["devices"] = [{"id": d.id, "platform": d.platform, "kind": d.device_kind}
                          for d in jax.devices()]
    except Exception as e:
        out["error"] = _err(e)
    out["preflight_failed"] = preflight()
    _write_json(Path(args.out), out)
    print(json.dumps(out, indent=1))
    return 1 if "error" in out or out["preflight_failed"] else 0


# --- probes: planning ------------------------------------------------------------------------


def _sets(overrides: dict[str, Any]) -> list[str]:
    """``--set`` arguments, values as JSON."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def _nbytes(tree: Any) -> int:
    import jax

    return int(sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def plan_mesa(mode: str, chunks: int, run_dir: Path) -> dict[str, Any]:
    """The MESA probe: the paper preset (``gpu``) or the CPU defaults cut down (``cpu-smoke``),
    :data:`MESA_PROBE`, and ``collect_steps`` / ``explorer_steps`` / ``test_steps`` of exactly
    ``chunks`` chunks of each stage's learner."""
    import metajax  # noqa: F401, I001  (its XLA flags first: import envs starts the backend)

    import jax

    import envs
    from metajax.algos.maddpg import make_maddpg
    from metajax.pipelines import experiment as xp

    exp = xp.load_experiment(ROOT / MESA_FILE)
    presets = ["paper"] if mode == "gpu" else []
    overrides = {**MESA_PROBE, **(MESA_SMOKE if mode == "cpu-smoke" else {})}
    cfg = xp.configure(exp, presets, overrides)

    def per_update(m: Any) -> int:  # make_maddpg's env_steps_per_update
        return m.num_envs * m.rollout_steps

    n = chunks * cfg.chunk_updates
    budgets = {"collect_steps": n * per_update(cfg.collect_config),
               "explorer_steps": n * per_update(cfg.explorer_config),
               "test_steps": n * per_update(cfg.maddpg)}
    overrides = {**overrides, **budgets}
    cfg = xp.configure(exp, presets, overrides)
    S, B, K = cfg.seeds, cfg.n_train, cfg.n_test
    plan: dict[str, Any] = {
        "kind": "mesa", "file": MESA_FILE, "chunks": chunks, "chunk_updates": cfg.chunk_updates,
        "seeds": S, "n_train": B, "n_test": K, "methods": list(cfg.methods),
        # vmapped learners per stage: collection per seed and training task, an exploration
        # policy (and the pretrained baselines) per seed, the meta-test per seed and test task
        "learners": {"collect": S * B, "explorer": S, "pretrain_meta": S, "goal_meta": S,
                     "test": S * K},
        "env_steps_per_update": {"collect": per_update(cfg.collect_config),
                                 "explorer": per_update(cfg.explorer_config),
                                 "test": per_update(cfg.maddpg)},
        "presets": presets, "overrides": overrides,
    }
    try:  # replay memory per stage, all its learners together (hooks' buffers not counted)
        env = envs.make(cfg.env, **cfg.env_config)
        task = env.sample_task(jax.random.PRNGKey(0))
        plan["replay_gb"] = {}
        for stage, m in (("collect", cfg.collect_config), ("explorer", cfg.explorer_config),
                         ("test", cfg.maddpg)):
            init = make_maddpg(m, env, task).init
            per = _nbytes(jax.eval_shape(init, jax.random.PRNGKey(0)).buffer)
            plan["replay_gb"][stage] = per * plan["learners"][stage] / 1e9
    except Exception as e:
        plan["replay_gb"] = {"error": _err(e)}
    plan["argv"] = _argv(MESA_FILE, presets, overrides, run_dir)
    return plan


def plan_mra(mode: str, chunks: int, run_dir: Path) -> dict[str, Any]:
    """The MRA probe: Fig. 5's paper preset (``gpu``) or its CPU default cut down
    (``cpu-smoke``), one arm (:data:`MRA_PROBE`), ``base.total_env_steps`` of ``chunks``
    chunks (more if the first gradient step comes later: one chunk after it at least) and a
    replay buffer no larger than the probe's steps (the paper's 200k transitions of 21 agents
    are about 16 GB per seed, and the run's last checkpoint writes them all to disk; the plan
    records that size)."""
    import jax

    from metajax.pipelines import experiment as xp
    from metajax.pipelines import runner

    exp = xp.load_experiment(ROOT / MRA_FILE)
    presets = ["paper"] if mode == "gpu" else []
    overrides = {**MRA_PROBE, **(MRA_SMOKE if mode == "cpu-smoke" else {})}
    cfg = xp.configure(exp, presets, overrides)
    arm = cfg.arm_config(MRA_ARM, run_dir)
    env = runner.build_env(arm)
    learner = runner.build_learner(arm, env)
    per_chunk = learner.env_steps_per_update * arm.chunk_updates
    first = max(arm.maddpg.learning_starts, arm.maddpg.batch_size)
    n = max(chunks, math.ceil(first / per_chunk) + 1)
    configured_state = _nbytes(jax.eval_shape(learner.init, jax.random.PRNGKey(0)))
    configured_buffer = buffer = arm.maddpg.buffer_size
    total = n * per_chunk
    overrides = {**overrides, "base.total_env_steps": total}
    if buffer > total:
        buffer = max(total, arm.maddpg.batch_size)
        overrides["base.maddpg.buffer_size"] = buffer
    cfg = xp.configure(exp, presets, overrides)
    arm = cfg.arm_config(MRA_ARM, run_dir)
    state = _nbytes(jax.eval_shape(runner.build_learner(arm, env).init, jax.random.PRNGKey(0)))
    return {
        "kind": "mra", "file": MRA_FILE, "arm": MRA_ARM, "chunks": n,
        "chunk_updates": arm.chunk_updates, "seeds": arm.seeds,
        "env_steps_per_chunk": per_chunk, "first_gradient_step": first,
        "games": len(arm.tasks), "presets": presets, "overrides": overrides,
        # learner state (replay buffer included) per seed, as configured and in the probe
        "state_gb_per_seed": {"configured": configured_state / 1e9, "probe": state / 1e9},
        "buffer_size": {"configured": configured_buffer, "probe": buffer},
        "argv": _argv(MRA_FILE, presets, overrides, run_dir),
    }


def _argv(file: str, presets: list[str], overrides: dict[str, Any], run_dir: Path) -> list[str]:
    """``metajax run`` arguments: ``file``, its presets, the overrides, the run directory."""
    argv = ["run", file]
    for p in presets:
        argv += ["--preset", p]
    argv += ["--set", *_sets(overrides)]
    return [*argv, "--out", str(run_dir), "--wandb", "disabled", "--no-progress"]


# --- probes: running -------------------------------------------------------------------------


class _Stamped(io.TextIOBase):
    """A text stream that passes everything on to ``stream`` and writes each complete line,
    prefixed by the seconds since ``t0``, to ``log`` (flushed at once)."""

    def __init__(self, stream: TextIO, log: TextIO, t0: float):
        self.stream, self.log, self.t0, self.buf = stream, log, t0, ""

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.buf += s
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            self.log.write(f"{time.perf_counter() - self.t0:.3f}\t{line}\n")
        if lines:
            self.log.flush()
        return len(s)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False


def cmd_probe(args: argparse.Namespace) -> int:
    work = Path(args.work)
    run_dir = work / f"{args.kind}_run"
    plan_path, tslog = work / f"{args.kind}.plan.json", work / f"{args.kind}.tslog"
    t0 = time.perf_counter()
    try:
        plan = (plan_mesa if args.kind == "mesa" else plan_mra)(args.mode, args.chunks, run_dir)
    except Exception as e:
        _write_json(plan_path, {"kind": args.kind, "error": f"planning failed: {_err(e)}"})
        print(f"error: planning the {args.kind} probe failed: {_err(e)}", file=sys.stderr)
        return 2
    plan["plan_s"] = time.perf_counter() - t0
    plan["command"] = "metajax " + " ".join(
        a if re.fullmatch(r"[\w./=:,+-]+", a) else "'" + a.replace("'", "'\\''") + "'"
        for a in plan["argv"])
    _write_json(plan_path, plan)
    print(plan["command"], flush=True)
    from metajax import cli

    out, err = sys.stdout, sys.stderr
    with tslog.open("w") as log:
        t0 = time.perf_counter()
        sys.stdout, sys.stderr = _Stamped(out, log, t0), _Stamped(err, log, t0)
        try:
            rc = cli.main(plan["argv"])
        except BaseException as e:  # an unexpected error: keep its line in the log
            print(f"error: {_err(e)}", file=sys.stderr)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = out, err
    return int(rc or 0)


# --- parsing what the stages left (standard library only) ------------------------------------


def nonfinite_numbers(obj: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of the NaN / infinite numbers in a JSON value."""
    if isinstance(obj, float) and not math.isfinite(obj):
        yield path or "."
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from nonfinite_numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for v in obj:  # one hit per list (a metric's per-seed values)
            hit = next(nonfinite_numbers(v, path), None)
            if hit is not None:
                yield hit
                break


def scan_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """``(rows, non-finite keys)`` of a JSON-lines file (``NaN``/``Infinity`` as Python's json
    writes them); unreadable lines are skipped (a run killed mid-write)."""
    rows, bad = [], []
    try:
        text = path.read_text()
    except OSError:
        return rows, bad
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        rows.append(row)
        for key in nonfinite_numbers(row):
            if key not in bad:
                bad.append(key)
    return rows, bad


#: A chunk line of MESA's stages as :class:`metajax.train.loop.HostLog` writes it (``env steps``:
#: per learner), after the CLI's elapsed-time prefix.
_MESA_CHUNK = re.compile(r"^\[\s*[\d.]+s\] \[(?P<stage>[^\]]+)\] chunk (?P<c>\d+)/(?P<n>\d+)"
                         r"\s+env steps (?P<steps>[\d,]+)")


def read_tslog(path: Path) -> list[tuple[float, str]]:
    """The ``(seconds, line)`` pairs of a probe's timestamped log."""
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        t, _, rest = line.partition("\t")
        try:
            out.append((float(t), rest))
        except ValueError:
            continue
    return out


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def mesa_stage_figures(lines: list[tuple[float, str]], plan: dict) -> dict[str, dict]:
    """Per MESA stage, from its chunk lines: ``first_chunk_s`` (from the line before its first
    chunk: initialisation, compilation and the chunk), ``chunk_s`` (median time between two
    chunk lines), ``compile_s`` (their difference), ``env_steps_per_s`` (summed over the
    stage's vmapped learners), chunks done / planned."""
    stages: dict[str, dict] = {}
    prev_t = 0.0
    for t, line in lines:
        m = _MESA_CHUNK.match(line)
        if m:
            name = m["stage"]
            st = stages.setdefault(name, {"times": [], "steps": [], "start": prev_t,
                                          "planned": int(m["n"])})
            st["times"].append(t)
            st["steps"].append(int(m["steps"].replace(",", "")))
        prev_t = t
    out = {}
    for name, st in stages.items():
        group = ("test" if name.startswith("test_") else
                 "explorer" if name.startswith("explorer") else name)
        learners = plan.get("learners", {}).get(group, 0)
        fig: dict[str, Any] = {"first_chunk_s": st["times"][0] - st["start"],
                               "chunks_done": len(st["times"]), "chunks_planned": st["planned"],
                               "learners": learners,
                               "env_steps_per_chunk": learners * st["steps"][0]}
        gaps = [b - a for a, b in zip(st["times"], st["times"][1:], strict=False)]
        chunk_s = _median(gaps)
        if chunk_s:
            fig["chunk_s"] = chunk_s
            fig["env_steps_per_s"] = fig["env_steps_per_chunk"] / chunk_s
            if fig["first_chunk_s"] > chunk_s:
                fig["compile_s"] = fig["first_chunk_s"] - chunk_s
        out[name] = fig
    return out


def probe_result(kind: str, work: Path) -> dict[str, Any]:
    """Figures and checks of a MESA or MRA probe (see :func:`cmd_probe`)."""
    plan = _read_json(work / f"{kind}.plan.json") or {}
    res: dict[str, Any] = {"command": plan.get("command"), "figures": {}, "checks": {},
                           "plan": {k: v for k, v in plan.items()
                                    if k not in ("argv", "command", "overrides")}}
    if "error" in plan:
        res["error"] = plan["error"]
        return res
    lines = read_tslog(work / f"{kind}.tslog")
    if lines:
        res["figures"]["run_s"] = lines[-1][0]
    if plan.get("plan_s"):
        res["figures"]["plan_s"] = plan["plan_s"]
    run_dir = work / f"{kind}_run"
    missing: list[str] = []
    if kind == "mesa":
        stages = mesa_stage_figures(lines, plan)
        res["figures"]["stages"] = stages
        bad = []
        for path in sorted(run_dir.glob("metrics_*.jsonl")):
            bad += [f"{path.stem}:{k}" for k in scan_jsonl(path)[1]]
        res["checks"] = {"nonfinite": bool(bad), "nonfinite_keys": bad,
                         "results_json": (run_dir / "results.json").exists()}
        want = ["collect", "explorer0", *(f"test_{m}" for m in plan.get("methods", []))]
        missing = [s for s in want if "env_steps_per_s" not in stages.get(s, {})]
    else:
        rows, bad = scan_jsonl(run_dir / plan.get("arm", MRA_ARM) / "metrics.jsonl")
        fig = res["figures"]
        if rows:
            fig["first_chunk_s"] = rows[0]["time"]
            fig["chunks_done"] = len(rows)
            fig["chunks_planned"] = plan.get("chunks")
            fig["env_steps_per_chunk"] = plan.get("env_steps_per_chunk", 0) * plan.get("seeds", 1)
            later = [r["time"] for r in rows[1:]]
            learning = [r["time"] for r in rows[1:] if min(r.get("grad_steps", [1])) > 0]
            chunk_s = _median(learning or later)
            if chunk_s:
                fig["chunk_s"] = chunk_s
                fig["env_steps_per_s"] = fig["env_steps_per_chunk"] / chunk_s
                if fig["first_chunk_s"] > chunk_s:
                    fig["compile_s"] = fig["first_chunk_s"] - chunk_s
        last = rows[-1] if rows else {}
        res["checks"] = {"nonfinite": bool(bad), "nonfinite_keys": bad,
                         "prior_tv": last.get("prior_tv"), "game_ce": last.get("game_ce"),
                         "summary_json": (run_dir / "summary.json").exists()}
        missing = [k for k in ("env_steps_per_s",) if k not in fig]
    if missing:
        res["missing"] = [f"no steady-state throughput of {m} (fewer than 2 chunks done)"
                          for m in missing]
    return res


def env_result(path: Path, batches: list[int]) -> dict[str, Any]:
    """Figures of ``env_throughput.py --json``: per env and batch env-steps/s, agent-steps/s
    and compile time (spread also without auto-reset and with the per-game reset)."""
    report = _read_json(path)
    if report is None:
        return {"figures": {}, "missing": [f"no {path.name}"]}
    figures: dict[str, Any] = {}
    missing = [f"{name}: not in {path.name}" for name in ENV_NAMES
               if name not in report.get("envs", {})]
    for name, entry in report.get("envs", {}).items():
        act = entry.get("active_agents") or 0
        per = {}
        for b in batches:
            r = entry.get("results", {}).get(str(b))
            if r is None:
                missing.append(f"{name} B={b}: {entry.get('error', 'not measured')}")
                continue
            per[str(b)] = {"env_steps_per_s": r["env_steps_per_s"], "compile_s": r["compile_s"],
                           "agent_steps_per_s": r["env_steps_per_s"] * act}
        figures[name] = per
    for variant in ("ours_per_game", "ours_no_reset"):
        res = report.get("spread", {}).get(variant, {})
        if res:
            figures[f"spread_{variant[5:]}"] = {
                b: {"env_steps_per_s": r["env_steps_per_s"], "compile_s": r["compile_s"]}
                for b, r in res.items()}
    return {"figures": figures, "wall_s_reported": report.get("wall_s"), "missing": missing}


def train_result(path: Path, seeds: list[int]) -> dict[str, Any]:
    """Figures of ``train_throughput.py --json`` (MADDPG on treasure): per seed count
    env-steps/s and gradient steps/s (summed over seeds), compile and chunk time."""
    report = _read_json(path)
    if report is None:
        return {"figures": {}, "missing": [f"no {path.name}"]}
    rows = {r["seeds"]: r for r in report.get("rows", [])
            if r.get("impl") == "ours" and str(r.get("world", "")).startswith("treasure")}
    figures = {}
    world = None
    for s in seeds:
        r = rows.get(s)
        if r is None:
            continue
        world = r["world"]
        figures[str(s)] = {k: r[k] for k in ("env_steps_per_s", "updates_per_s", "compile_s",
                                             "chunk_s", "buffer_mb_per_seed")}
    return {"figures": figures, "world": world, "chunk_updates": report.get("chunk_updates"),
            "missing": [f"{s} seeds: not measured" for s in seeds if str(s) not in figures]}


def positive_figures(fig: Any, path: str = "") -> list[str]:
    """Paths of the figures that are not positive finite numbers (bools and strings are not
    figures)."""
    if isinstance(fig, dict):
        return [p for k, v in fig.items()
                for p in positive_figures(v, f"{path}.{k}" if path else str(k))]
    if isinstance(fig, bool) or not isinstance(fig, int | float):
        return [path]
    return [] if math.isfinite(fig) and fig > 0 else [path]


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _gpu(work: Path, info: dict | None) -> dict[str, Any]:
    rows = []
    try:
        for line in (work / "nvidia_smi.csv").read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0]:
                rows.append({"name": parts[0], "memory_total": parts[1],
                             **({"driver": parts[2]} if len(parts) > 2 else {})})
    except OSError:
        pass
    devices = (info or {}).get("devices") or []
    if rows:
        return {"model": rows[0]["name"], "memory_total": rows[0]["memory_total"],
                "count": len(rows), "source": "nvidia-smi", "nvidia_smi": rows,
                "jax_devices": devices}
    if devices:
        return {"model": devices[0]["kind"], "count": len(devices), "source": "jax.devices()",
                "jax_devices": devices}
    return {"model": None, "source": None}


def _git() -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def sweep_result(run_dir: Path, wall_s: float) -> dict[str, Any]:
    """Figures and checks of the sweep stage from its directory (``metajax sweep``'s
    ``sweep.json`` and ``results.json``): grid points, members (points x seeds), compiled
    groups, env steps per member, members' env-steps/s over the stage's wall time (compile
    included), the best point with its IQM, and the grid points whose scores are not finite."""
    spec, res = _read_json(run_dir / "sweep.json"), _read_json(run_dir / "results.json")
    if not spec or not res or not res.get("points"):
        return {"figures": {}, "missing": [f"no finished sweep in {run_dir.name}"]}
    points = res["points"]
    seeds = int(res.get("seeds") or spec.get("seeds") or 0)
    steps = max(int(p.get("env_steps") or 0) for p in points)
    members = len(points) * seeds
    bad = [p["point"] for p in points
           if not all(math.isfinite(x) for row in p["scores"] for x in row)]
    best = res.get("best") or {}
    return {"figures": {"points": len(points), "members": members,
                        "groups": len(spec.get("groups") or []) or 1,
                        "env_steps_per_member": steps,
                        "env_steps_per_s": members * steps / wall_s if wall_s > 0 else None},
            "best": {"values": best.get("values"),
                     "iqm": (best.get("iqm") or {}).get("point", best.get("mean"))},
            "checks": {"nonfinite_points": bad}}


def stage_entry(name: str, work: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One stage's record: ``status`` (ok / failed / timeout / skipped / pending), the shell's
    exit status, wall time and time limit, its figures and the error of a failed stage."""
    rc_rec = _read_json(work / f"{name}.rc")
    if rc_rec is None:
        return {"status": "pending"}
    if rc_rec.get("skipped"):
        return {"status": "skipped", "reason": rc_rec["skipped"]}
    rc = int(rc_rec["rc"])
    entry: dict[str, Any] = {"status": "ok", "rc": rc, "wall_s": rc_rec.get("wall_s"),
                             "timeout_s": rc_rec.get("timeout_s")}
    res: dict[str, Any] = {"figures": {}}
    if name == "info":
        info = _read_json(work / "info.json") or {}
        for k in ("jax", "jaxlib", "backend", "preflight_failed"):
            if k in info:
                entry[k] = info[k]
        missing = sorted({f["missing"] or f["module"] for f in info.get("preflight_failed", [])})
        if "error" in info or missing:
            res["error"] = "; ".join(
                ([f"jax: {info['error']}"] if "error" in info else [])
                + ([f"imports fail, missing: {', '.join(missing)}"] if missing else []))
    elif name == "env":
        res = env_result(out / "env.json", args.env_batches)
        entry["json"] = "env.json"
    elif name == "train":
        res = train_result(out / "train.json", args.train_seeds)
        entry["json"] = "train.json"
    elif name == "sweep":
        res = sweep_result(work / "sweep_run", float(rc_rec.get("wall_s") or 0.0))
    else:
        res = probe_result(name, work)
    entry.update(res)
    errors = list(res.get("missing", []))
    if name in ("env", "train", "mesa", "mra", "sweep"):
        errors += [f"figure {p} is not a positive number"
                   for p in positive_figures(res.get("figures", {}))]
    if name == "sweep" and (res.get("checks") or {}).get("nonfinite_points"):
        errors.append(f"non-finite scores at grid points {res['checks']['nonfinite_points']}")
    if rc in (124, 137):
        entry["status"] = "timeout"
        entry["error"] = f"time limit of {rc_rec.get('timeout_s')} s reached (exit {rc})"
    elif rc != 0:
        entry["status"] = "failed"
        entry["error"] = res.get("error") or f"exit status {rc}"
    elif errors:
        entry["status"] = "failed"
        entry["error"] = "; ".join(errors)
    if entry["status"] != "ok":
        entry["log_tail"] = _tail(work / f"{name}.log")
    entry.pop("missing", None)
    return entry


def cmd_summary(args: argparse.Namespace) -> int:
    work, out = Path(args.work), Path(args.out)
    info = _read_json(work / "info.json")
    selected = [s for s in args.stages.split(",") if s]
    stages = {}
    for name in STAGES:
        if name in selected:
            stages[name] = stage_entry(name, work, out, args)
        else:
            stages[name] = {"status": "skipped", "reason": "not selected (--stages)"}
    summary = {
        "check": "benchmarks/gpu_check.sh",
        "mode": args.mode,
        "command": args.command,
        "started": args.started,
        "written": _now(),
        "elapsed_s": args.elapsed,
        "budget_s": args.budget,
        "complete": all(v["status"] != "pending" for v in stages.values()),
        "gpu": _gpu(work, info),
        "jax": {k: (info or {}).get(k) for k in ("jax", "jaxlib", "backend")},
        "machine": (info or {}).get("machine"),
        "git": _git(),
        "stages": stages,
    }
    _write_json(out / "gpu_check.json", summary)
    if args.print:
        print(render(summary))
    bad = [n for n, v in stages.items() if v["status"] in ("failed", "timeout")]
    return 1 if args.final and bad else 0


def _rate(x: float | None) -> str:
    if not x:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def render(summary: dict) -> str:
    """A few lines per stage (what the script prints at the end)."""
    gpu = summary["gpu"]
    lines = [f"gpu_check ({summary['mode']}): {gpu.get('model') or 'no GPU found'}, jax "
             f"{summary['jax'].get('jax')} ({summary['jax'].get('backend')}), "
             f"{summary['elapsed_s']} s of {summary['budget_s']} s"]
    for name, st in summary["stages"].items():
        head = f"  {name:<6} {st['status']:<8}"
        if st.get("wall_s") is not None:
            head += f" {st['wall_s']:7.1f} s"
        lines.append(head + (f"  {st.get('reason', '')}" if st["status"] == "skipped" else ""))
        fig = st.get("figures") or {}
        if name == "env":
            for env, per in fig.items():
                lines.append(f"         {env}: " + ", ".join(
                    f"B={b} {_rate(r['env_steps_per_s'])}/s" for b, r in per.items()))
        elif name == "train" and fig:
            lines.append("         " + ", ".join(
                f"{s} seeds {_rate(r['env_steps_per_s'])} env-steps/s (compile "
                f"{r['compile_s']:.1f} s)" for s, r in fig.items()))
        elif name == "mesa":
            for stage, r in (fig.get("stages") or {}).items():
                lines.append(f"         {stage}: first chunk {r['first_chunk_s']:.1f} s, "
                             f"{_rate(r.get('env_steps_per_s'))} env-steps/s")
        elif name == "mra" and fig:
            lines.append(f"         first chunk {fig.get('first_chunk_s', 0):.1f} s, "
                         f"{_rate(fig.get('env_steps_per_s'))} env-steps/s, prior_tv "
                         f"{st['checks'].get('prior_tv')}, game_ce {st['checks'].get('game_ce')}")
        if name in ("mesa", "mra") and st.get("checks", {}).get("nonfinite"):
            lines.append(f"         NON-FINITE: {st['checks']['nonfinite_keys']}")
        if st.get("error"):
            lines.append(f"         error: {st['error'][:300]}")
    return "\n".join(lines)


# --- the RESULTS.md section ------------------------------------------------------------------

BEGIN = "<!-- gpu_check:begin -->"
END = "<!-- gpu_check:end -->"


def _f(x: Any, digits: int = 1) -> str:
    return "-" if not isinstance(x, int | float) or isinstance(x, bool) else f"{x:.{digits}f}"


def markdown(summary: dict) -> str:
    """The ``benchmarks/RESULTS.md`` section of a summary (``report`` subcommand)."""
    gpu, jx, st = summary["gpu"], summary["jax"], summary["stages"]
    git = summary.get("git") or {}
    commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
    lines = [
        BEGIN, "## GPU check (`benchmarks/gpu_check.sh`)", "",
        f"{gpu.get('model') or 'unknown device'}"
        + (f", {gpu['memory_total']}" if gpu.get("memory_total") else "")
        + f"; jax {jx.get('jax')} / jaxlib {jx.get('jaxlib')} ({jx.get('backend')}); commit "
        f"{commit}; {summary.get('written')}; mode `{summary['mode']}`, "
        f"{summary.get('elapsed_s')} s of a {summary.get('budget_s')} s budget.", "",
        "| stage | status | wall s |", "| --- | --- | --- |",
    ]
    for name, e in st.items():
        note = e.get("reason") or e.get("error") or ""
        if note.startswith(e["status"]):
            note = note[len(e["status"]):].lstrip(": ")
        lines.append(f"| {name} | {e['status']}{': ' + note[:120] if note else ''} "
                     f"| {_f(e.get('wall_s'))} |")
    env = (st.get("env") or {}).get("figures") or {}
    if env:
        batches = sorted({int(b) for per in env.values() for b in per})
        lines += ["", "Env-steps/s (`env_throughput.py`, random actions, auto-reset; compile "
                  "time in parentheses):", "",
                  "| env | " + " | ".join(f"B={b}" for b in batches) + " |",
                  "| --- |" + " --- |" * len(batches)]
        for name, per in env.items():
            cells = [f"{_rate(per[str(b)]['env_steps_per_s'])} ({_f(per[str(b)]['compile_s'])} s)"
                     if str(b) in per else "-" for b in batches]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    train = (st.get("train") or {}).get("figures") or {}
    if train:
        lines += ["", f"MADDPG training throughput (`train_throughput.py`, "
                  f"{st['train'].get('world')}, {st['train'].get('chunk_updates')} updates per "
                  "chunk, summed over seeds):", "",
                  "| seeds | env-steps/s | updates/s | compile s | chunk s |",
                  "| --- | --- | --- | --- | --- |"]
        for seeds, r in train.items():
            lines.append(f"| {seeds} | {_rate(r['env_steps_per_s'])} | {_f(r['updates_per_s'])} "
                         f"| {_f(r['compile_s'])} | {_f(r['chunk_s'], 3)} |")
    mesa = st.get("mesa") or {}
    if (mesa.get("figures") or {}).get("stages"):
        lines += ["", f"MESA probe: `{mesa.get('command')}`", "",
                  "| stage | learners | first chunk s | chunk s | env-steps/s |",
                  "| --- | --- | --- | --- | --- |"]
        for name, r in mesa["figures"]["stages"].items():
            lines.append(f"| {name} | {r['learners']} | {_f(r['first_chunk_s'])} "
                         f"| {_f(r.get('chunk_s'), 2)} | {_rate(r.get('env_steps_per_s'))} |")
        replay = (mesa.get("plan") or {}).get("replay_gb") or {}
        sizes = ", ".join(f"{k} {_f(v)}" for k, v in replay.items() if k != "error")
        lines += ["", f"Replay buffers, all learners of a stage: {sizes or '-'} GB. Non-finite "
                  f"metrics: {mesa['checks'].get('nonfinite_keys') or 'none'}."]
    mra = st.get("mra") or {}
    fig = mra.get("figures") or {}
    if fig:
        ck = mra.get("checks") or {}
        mem = (mra.get("plan") or {}).get("state_gb_per_seed") or {}
        buf = (mra.get("plan") or {}).get("buffer_size") or {}

        def r3(xs: Any) -> Any:
            return [round(x, 3) for x in xs] if isinstance(xs, list) else xs

        lines += ["", f"MRA probe: `{mra.get('command')}`", "",
                  f"First chunk {_f(fig.get('first_chunk_s'))} s, then {_f(fig.get('chunk_s'), 2)}"
                  f" s per chunk, {_rate(fig.get('env_steps_per_s'))} env-steps/s (all seeds); "
                  f"last `prior_tv` {r3(ck.get('prior_tv'))}, `game_ce` {r3(ck.get('game_ce'))}; "
                  f"non-finite metrics: {ck.get('nonfinite_keys') or 'none'}. Learner state per "
                  f"seed {_f(mem.get('configured'), 2)} GB as configured (replay "
                  f"{buf.get('configured')}), {_f(mem.get('probe'), 2)} GB in the probe (replay "
                  f"{buf.get('probe')})."]
    sw = st.get("sweep") or {}
    fig = sw.get("figures") or {}
    if fig:
        best = sw.get("best") or {}
        lines += ["", f"Sweep: {fig['points']} grid points x {fig['members'] // fig['points']} "
                  f"seeds = {fig['members']} members in {fig['groups']} compiled program(s), "
                  f"{fig['env_steps_per_member']:,} env steps each, "
                  f"{_rate(fig.get('env_steps_per_s'))} env-steps/s over the stage's "
                  f"{_f(sw.get('wall_s'))} s (compile included); best point {best.get('values')}"
                  f" (IQM {_f(best.get('iqm'), 3)}); non-finite points: "
                  f"{sw['checks'].get('nonfinite_points') or 'none'}."]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def cmd_report(args: argparse.Namespace) -> int:
    summary = json.loads(Path(args.summary).read_text())
    text = markdown(summary)
    print(text)
    if args.write:
        sys.path.insert(0, str(HERE))
        from _timing import write_section

        write_section(Path(args.write), text, BEGIN, END)
        print(f"wrote the gpu_check section of {args.write}", file=sys.stderr)
    return 0


# --- main ------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("info")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_info)
    s = sub.add_parser("probe")
    s.add_argument("kind", choices=("mesa", "mra"))
    s.add_argument("--mode", choices=("gpu", "cpu-smoke"), default="gpu")
    s.add_argument("--chunks", type=int, default=2)
    s.add_argument("--work", required=True)
    s.set_defaults(fn=cmd_probe)
    s = sub.add_parser("summary")
    s.add_argument("--work", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--mode", default="gpu")
    s.add_argument("--stages", default=",".join(STAGES))
    s.add_argument("--env-batches", type=_ints, default=[])
    s.add_argument("--train-seeds", type=_ints, default=[])
    s.add_argument("--budget", type=int, default=0)
    s.add_argument("--elapsed", type=int, default=0)
    s.add_argument("--started", default="")
    s.add_argument("--command", default="")
    s.add_argument("--final", action="store_true")
    s.add_argument("--print", action="store_true")
    s.set_defaults(fn=cmd_summary)
    s = sub.add_parser("report", help="the RESULTS.md section of a gpu_check.json")
    s.add_argument("summary", help="a gpu_check.json")
    s.add_argument("--write", default="", help="rewrite that section of this file")
    s.set_defaults(fn=cmd_report)
    args = p.parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    return fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
