"""Which of JaxMARL's QMIX settings make our QMIX learn simple_spread (issue 17).

``experiments/qmix_spread.py`` carries JaxMARL 0.2's ``ql_rnn_mpe.yaml`` settings. This script
trains it (3 seeds vmapped, 500k env steps, as in ``benchmarks/jaxmarl_algos.py``) and, from it,
variants that take settings back to our QMIX defaults:

* ``jaxmarl``: the experiment file as it is;
* ``default_mixer``: hypernetworks of 64 units at flax's initialization (not 128 units with
  orthogonal kernels of gain 0.001);
* ``default_schedule``: mean team reward, constant lr, learning from the first full batch (not
  the sum, a linear decay to 0, learning from 10k env steps);
* ``defaults``: both, i.e. our QMIX defaults with JaxMARL's other hyperparameters (the
  configuration of the first side-by-side run, which did not learn).

Final greedy return: 100 episodes per seed of the final parameters (the runner's evaluation).
Writes ``experiments/results/qmix_spread_ablation.json`` and prints a table.

    python benchmarks/qmix_spread_ablation.py              # ~12 min on 2 cores
    python benchmarks/qmix_spread_ablation.py --smoke      # seconds: 2 variants, tiny budget
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, dict] = {
    "jaxmarl": {},
    "default_mixer": {"qmix.mixer_hidden": 64, "qmix.mixer_init_scale": 0.0},
    "default_schedule": {"qmix.team_reward": "mean", "qmix.lr_decay_steps": 0,
                         "qmix.learning_starts": 0},
    "defaults": {"qmix.mixer_hidden": 64, "qmix.mixer_init_scale": 0.0,
                 "qmix.team_reward": "mean", "qmix.lr_decay_steps": 0,
                 "qmix.learning_starts": 0},
}


def run_variant(name: str, steps: int, seeds: int, out: Path) -> dict:
    """Train one variant into ``out/name``; ``{"per_seed": [S] greedy returns, ...}``."""
    from metajax.pipelines.experiment import configure, load_experiment
    from metajax.pipelines.runner import train

    overrides = {"total_env_steps": steps, "qmix.eps_anneal_steps": max(steps // 10, 1),
                 "chunk_updates": max(steps // 200 // 4, 1)}
    overrides.update(VARIANTS[name])
    if overrides.get("qmix.lr_decay_steps", 1):
        overrides["qmix.lr_decay_steps"] = steps
    if overrides.get("qmix.learning_starts", 1):
        overrides["qmix.learning_starts"] = min(10_000, steps // 10)
    cfg = configure(load_experiment(ROOT / "experiments" / "qmix_spread.py"),
                    overrides=overrides, seeds=seeds)
    shutil.rmtree(out / name, ignore_errors=True)  # a fresh run each time
    t0 = time.time()
    train(cfg, out / name, wandb_mode="disabled", progress=False, log=lambda s: None)
    res = json.loads((out / name / "results.json").read_text())
    return {"overrides": overrides, "per_seed": res["greedy"][0]["per_seed"],
            "wall_s": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "qmix_spread_ablation")
    ap.add_argument("--json", type=Path,
                    default=ROOT / "experiments" / "results" / "qmix_spread_ablation.json")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    names = list(VARIANTS)
    if args.smoke:
        args.steps, args.seeds, names = 4_000, 2, ["jaxmarl", "defaults"]
        args.json = args.out / "smoke.json"
    rows = {}
    for name in names:
        rows[name] = run_variant(name, args.steps, args.seeds, args.out)
        print(f"{name}: {rows[name]['per_seed']} ({rows[name]['wall_s']} s)", flush=True)
    data = {"command": "python benchmarks/qmix_spread_ablation.py"
            + (" --smoke" if args.smoke else ""),
            "experiment": "experiments/qmix_spread.py", "steps": args.steps,
            "seeds": args.seeds, "eval_episodes_per_seed": 100, "variants": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(report(data))


def report(data: dict) -> str:
    """A markdown table: variant, mean greedy return with its 95 % bootstrap CI over seeds."""
    import numpy as np

    from metajax.stats import interval

    lines = ["| variant | greedy return, mean [95 % CI] | per seed |", "|---|---|---|"]
    for name, row in data["variants"].items():
        x = np.asarray(row["per_seed"], float)
        est = interval(x, "mean")
        lines.append(f"| {name} | {est['point']:.2f} [{est['lo']:.2f}, {est['hi']:.2f}] | "
                     + ", ".join(f"{v:.2f}" for v in x) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
