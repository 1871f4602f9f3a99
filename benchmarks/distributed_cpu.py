"""Two local processes (``metajax run --distributed``) against one process, on one CPU machine.

The same experiment file, seeds and devices in total: one process with ``--devices`` fake CPU
devices, then two processes with ``--devices / 2`` each (coordinator on 127.0.0.1). Wall time
of each command (compile, evaluation and checkpoints included, as a user sees it) and whether
the two give the same ``metrics.jsonl``. On one machine the two processes share its cores, so
this measures the overhead of the multi-process path (gloo collectives, per-chunk gathers,
multi-host checkpoints), not a speed-up: that needs a second machine.

    python benchmarks/distributed_cpu.py --experiment experiments/maddpg_climb.py --seeds 4 \
        --set total_env_steps=20000

Prints a markdown row per configuration and writes nothing else (run outputs under a temporary
directory).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cmd(args: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    sets = ["--set", *args.set] if args.set else []
    return [sys.executable, "-m", "metajax", "run", args.experiment, "--seeds",
            str(args.seeds), "--out", str(out), "--no-progress", "--wandb", "disabled",
            *sets, *extra]


def _env(devices: int, **more: str) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", **more}


def one_process(args: argparse.Namespace, out: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(_cmd(args, out), cwd=ROOT, env=_env(args.devices),
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stdout + r.stderr)
    return time.perf_counter() - t0


def two_processes(args: argparse.Namespace, out: Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(
        _cmd(args, out, "--distributed"), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env=_env(args.devices // 2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                 JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))) for i in (0, 1)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("\n".join(o[-3000:] for o in outs))
    return time.perf_counter() - t0


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if k not in ("time", "sps")}
            for ln in (run / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="experiments/maddpg_climb.py")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--devices", type=int, default=4, help="devices in total (even)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            t1 = one_process(args, Path(tmp) / f"one{r}")
            t2 = two_processes(args, Path(tmp) / f"two{r}")
            same = _rows(Path(tmp) / f"one{r}") == _rows(Path(tmp) / f"two{r}")
            print(f"| {args.experiment} {' '.join(args.set)} | {args.seeds} | {t1:.1f} s | "
                  f"{t2:.1f} s | {t2 / t1:.2f}x | {'bit for bit' if same else 'differ'} |",
                  flush=True)


if __name__ == "__main__":
    main()
