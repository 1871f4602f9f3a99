"""Sweep throughput: wall time of an N-point ``metajax sweep`` against N separate runs of the
same points, compile included.

Run from the repository root::

    .venv/bin/python benchmarks/sweep_throughput.py           # N = 4, 16 on climb and treasure;
                                                               # rewrites its RESULTS.md section
    .venv/bin/python benchmarks/sweep_throughput.py --quick   # smoke run (N = 2, tiny budgets),
                                                               # prints the table, no RESULTS.md

What is timed, for each experiment and N (each measurement in a fresh subprocess, so no jit
cache is shared between them; JAX's persistent compilation cache is off):

* **sweep**: :func:`metajax.pipelines.sweep.run_sweep` of an N-point grid (``maddpg.actor_lr`` x
  ``maddpg.tau``, both traced: one compiled program) x ``--seeds`` seeds: the wall time of the
  call, i.e. planning, building, init, compilation, every chunk, the final evaluation of every
  point, checkpoints and the results table;
* **N runs**: :func:`metajax.pipelines.runner.train` of each point in turn in one process (what
  a script looping over the grid does; no interpreter start-up per run, which favours the runs): the
  summed wall time. Programs that are identical between the runs (init, evaluator: they do not
  depend on the swept values) are compiled once there, which favours them too.

Both train the same members (N points x seeds seeds, same keys) for the same env steps. The
``first chunk`` columns are the first chunk's wall time as ``metrics.jsonl`` records it
(compilation of the chunk plus one chunk of training): for the runs, their mean.

The experiment files are the repository's (``experiments/maddpg_climb.py``,
``experiments/maddpg_treasure.py``) with a small budget (``--set`` below); treasure's replay
buffer is cut to 5,000 transitions so that 16 x seeds buffers fit in memory.

The script rewrites only its own section of ``benchmarks/RESULTS.md`` (between the
``sweep_throughput:begin``/``end`` marker comments); the rest of the file is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

BEGIN = "<!-- sweep_throughput:begin -->"
END = "<!-- sweep_throughput:end -->"
MARKER = "SWEEP_THROUGHPUT_JSON"

#: experiment -> (file, --set overrides of the small budget)
EXPERIMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "climb": ("experiments/maddpg_climb.py", {"total_env_steps": 10_000}),
    "treasure": ("experiments/maddpg_treasure.py",
                 {"total_env_steps": 5_000, "maddpg.buffer_size": 5_000}),
}
QUICK: dict[str, dict[str, Any]] = {
    "climb": {"total_env_steps": 5_000, "chunk_updates": 125},
    "treasure": {"total_env_steps": 2_600, "maddpg.buffer_size": 2_600, "chunk_updates": 13,
                 "eval_episodes": 2},
}
#: grid values per N: actor learning rates x soft-update rates
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
TAUS = (0.005, 0.01, 0.03, 0.1)


def grid_for(n: int) -> dict[str, list[float]]:
    """An ``n``-point grid (``n`` = a x b with a, b <= 4): learning rates x taus."""
    for a in (1, 2, 3, 4):
        if n % a == 0 and n // a <= len(TAUS) and a <= len(LRS) and a >= n // a:
            return {"maddpg.actor_lr": list(LRS[:a]), "maddpg.tau": list(TAUS[:n // a])}
    raise ValueError(f"no grid of {n} points (at most 4 x 4)")


# --- workers (one fresh process per measurement) ----------------------------------------------


def worker(kind: str, experiment: str, overrides: dict, n: int, seeds: int, out: Path) -> dict:
    """Time one measurement (see the module docstring) and return its figures."""
    os.environ["WANDB_MODE"] = "disabled"
    from metajax.pipelines import experiment as xp
    from metajax.pipelines import runner, sweep

    exp = xp.load_experiment(ROOT / EXPERIMENTS[experiment][0])
    cfg = xp.configure(exp, (), overrides, seeds)
    grid = grid_for(n)
    quiet = dict(wandb_mode="disabled", progress=False, log=lambda _: None)
    t0 = time.perf_counter()
    if kind == "sweep":
        sweep.run_sweep(cfg, grid, seeds, out, **quiet)
        wall = time.perf_counter() - t0
        first = [_first_chunk(out / "groups" / "g0")]
    else:
        plan = sweep.plan_sweep(cfg, grid, seeds)
        for i, c in enumerate(plan.configs):
            runner.train(c, out / f"p{i}", **quiet)
        wall = time.perf_counter() - t0
        first = [_first_chunk(out / f"p{i}") for i in range(n)]
    return {"kind": kind, "experiment": experiment, "n": n, "seeds": seeds, "wall_s": wall,
            "first_chunk_s": sum(first) / len(first), "grid": grid, "overrides": overrides,
            "env_steps": cfg.total_env_steps}


def _first_chunk(run_dir: Path) -> float:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["time"]


def measure(kind: str, experiment: str, overrides: dict, n: int, seeds: int,
            timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
               "--experiment", experiment, "--overrides", json.dumps(overrides),
               "--n", str(n), "--seeds", str(seeds), "--out", str(Path(tmp) / "out")]
        env = dict(os.environ, WANDB_MODE="disabled", JAX_ENABLE_COMPILATION_CACHE="false")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER + " ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {experiment} N={n} failed ({proc.returncode}):\n"
                           f"{(proc.stderr or proc.stdout)[-3000:]}")
    return json.loads(lines[-1][len(MARKER) + 1:])


# --- report ----------------------------------------------------------------------------------


def render(results: dict) -> str:
    info = results["machine"]
    lines = [
        BEGIN,
        "## Sweeps: one compiled program against N separate runs",
        "",
        f"Generated by `benchmarks/sweep_throughput.py` on {info['date']}: {info['cpu']}, "
        f"{info['cores']} cores, Python {info['python']}, jax {info['jax']} "
        f"({info['jax_backend']}); load average {info['load_start'][0]} at the start, "
        f"{info['load_end'][0]} at the end.",
    ]
    if results.get("note"):
        lines += ["", results["note"]]
    lines += [
        "",
        f"Command: `{results['command']}`",
        "",
        "Wall time, compile included, each measurement in a fresh process. *Sweep*: "
        "`metajax.pipelines.sweep.run_sweep` of an N-point grid (`maddpg.actor_lr` x "
        "`maddpg.tau`, both "
        "traced: one compiled program) x seeds; *N runs*: `runner.train` of every point in "
        "turn in one process (the same members, keys and env steps). *First chunk*: the first "
        "chunk's wall time in `metrics.jsonl` (its compilation plus one chunk; mean over the "
        "runs). Budgets: " + "; ".join(
            f"{e} `{EXPERIMENTS[e][0]}` with "
            + " ".join(f"`{k}={v}`" for k, v in results["overrides"][e].items())
            for e in results["overrides"]) + ".",
        "",
        "| experiment | N points | seeds | members | sweep s | N runs s | N runs / sweep "
        "| sweep first chunk s | run first chunk s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        s, r = row["sweep"], row["runs"]
        lines.append(
            f"| {row['experiment']} | {row['n']} | {row['seeds']} | {row['n'] * row['seeds']} "
            f"| {s['wall_s']:.1f} | {r['wall_s']:.1f} | {r['wall_s'] / s['wall_s']:.1f}x "
            f"| {s['first_chunk_s']:.1f} | {r['first_chunk_s']:.1f} |")
    lines += [
        "",
        "- Where the ratio comes from: each run compiles its own chunk program (the swept "
        "values are constants of it), so N runs pay the *run first chunk* column N times ("
        + "; ".join(f"{r['experiment']} N={r['n']}: {r['n']} x "
                    f"{r['runs']['first_chunk_s']:.1f} s = "
                    f"{r['n'] * r['runs']['first_chunk_s']:.0f} s of {r['runs']['wall_s']:.0f} s"
                    for r in results["rows"] if r["n"] == max(x["n"] for x in results["rows"]))
        + "); the sweep compiles one program for every member. With a longer budget the "
        "training itself, which the members share out on the same 2 cores either way, takes "
        "a larger share and the ratio is expected to fall (not measured here).",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 2, tiny budgets, no RESULTS.md")
    p.add_argument("--n", type=int, action="append", default=None,
                   help="grid sizes (default 4 and 16; quick: 2)")
    p.add_argument("--experiments", default="climb,treasure")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600, help="per measurement, seconds")
    p.add_argument("--json", default="", help="also write the raw figures here")
    p.add_argument("--note", default="", help="a sentence for the report (e.g. machine load)")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"))
    p.add_argument("--render-json", default="",
                   help="rewrite the RESULTS.md section from a --json file of an earlier run")
    p.add_argument("--worker", choices=("sweep", "runs"), help=argparse.SUPPRESS)
    p.add_argument("--experiment", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.render_json:  # rewrite the section from saved figures (no measurement)
        from _timing import write_section

        write_section(args.results, render(json.loads(Path(args.render_json).read_text())),
                      BEGIN, END)
        return 0
    if args.worker:
        out = worker(args.worker, args.experiment, json.loads(args.overrides), args.n[0],
                     args.seeds, Path(args.out))
        print(f"{MARKER} {json.dumps(out)}", flush=True)
        return 0

    from _timing import machine_info, write_section

    ns = args.n or ([2] if args.quick else [4, 16])
    names = args.experiments.split(",")
    overrides = {e: {**EXPERIMENTS[e][1], **(QUICK[e] if args.quick else {})} for e in names}
    info = machine_info()
    rows = []
    for e in names:
        for n in ns:
            row = {"experiment": e, "n": n, "seeds": args.seeds}
            for kind in ("sweep", "runs"):
                row[kind] = measure(kind, e, overrides[e], n, args.seeds, args.timeout)
                print(f"{e} N={n} {kind}: {row[kind]['wall_s']:.1f} s "
                      f"(first chunk {row[kind]['first_chunk_s']:.1f} s)", flush=True)
            print(f"{e} N={n}: N runs / sweep = "
                  f"{row['runs']['wall_s'] / row['sweep']['wall_s']:.1f}x", flush=True)
            rows.append(row)
    info["load_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {"machine": info, "rows": rows, "overrides": overrides, "note": args.note,
               "command": "python benchmarks/sweep_throughput.py " + " ".join(
                   a if " " not in a else repr(a) for a in (argv or sys.argv[1:]))}
    text = render(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.quick:
        write_section(args.results, text, BEGIN, END)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
