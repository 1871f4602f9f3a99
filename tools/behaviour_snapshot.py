"""Record, or check against a record, what each pipeline computes on tiny configs.

A refactor that should not change the arithmetic (issue 14: "behaviour preserved, shown") must
leave every logged metric and every result of these runs unchanged, bit for bit on the CPU that
wrote the record. The runs (``tools/snapshot/*.py``): ``train`` on climb and on treasure,
``mra_compare`` (MRA and Reptile) on resource occupation, ``mesa`` (all three stages) on one-step
climb; each trains 2 seeds through ``metajax run``, so the CLI, the configs and the host loops
are part of what is compared.

    python tools/behaviour_snapshot.py record tools/behaviour_snapshot.json
    python tools/behaviour_snapshot.py check tools/behaviour_snapshot.json

``check`` exits 1 and lists the first differing values of each run when a recorded value
changed or went missing (keys only the new run has are listed as new outputs, not failures)
(wall-clock fields such as ``time``, ``sps`` and ``*_s`` are left out of both). The record
holds the CPU model, the jax version and the git commit it was made at; a check on another CPU
or jax version may differ in the last bits of floats (XLA's CPU code depends on both), which the
check reports as a warning line before its differences.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = ("train_climb", "train_treasure", "mra_compare_resource", "mesa_climb")
#: Keys whose values measure wall-clock time or name machine paths, not what was computed.
CLOCK = {"time", "sps", "seconds", "wall_s", "compile_s", "command", "run_dir", "path"}


#: Files not compared: configs (inputs, with paths) and wall-clock records.
SKIP = {"config.json", "timing.json"}


def _clock(key: str) -> bool:
    return key in CLOCK or key.endswith("_s") or key.endswith("_time") or key.endswith("_dir")


def scrub(x: object) -> object:
    """``x`` (parsed JSON) without wall-clock keys; NaN and inf as strings (JSON-safe)."""
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if not _clock(k)}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def collect(run_dir: Path) -> dict:
    """Every ``*.jsonl`` (rows) and ``*.json`` (objects) under ``run_dir``, by relative path,
    scrubbed (:func:`scrub`); checkpoints and images are not read."""
    out = {}
    for p in sorted(run_dir.rglob("*.json*")):
        rel = str(p.relative_to(run_dir))
        if "checkpoints" in p.parts or "stages" in p.parts or p.name in SKIP:
            continue
        text = p.read_text()
        if p.suffix == ".jsonl":
            out[rel] = [scrub(json.loads(x)) for x in text.splitlines() if x.strip()]
        else:
            out[rel] = scrub(json.loads(text))
    return out


def run_one(name: str, root: Path) -> dict:
    """Train ``tools/snapshot/<name>.py`` into ``root/<name>`` through the CLI; its outputs."""
    out = root / name
    cmd = [sys.executable, "-m", "metajax.cli", "run", str(HERE / "snapshot" / f"{name}.py"),
           "--out", str(out), "--wandb", "disabled", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {name} failed ({proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1:] or proc.stdout[-200:]}")
    return collect(out)


def machine() -> dict:
    """CPU model, jax version, Python and the git commit (``benchmarks/_timing.machine_info``
    plus the commit)."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from _timing import machine_info

    info = machine_info()
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"cpu": info["cpu"], "jax": info["jax"], "python": info["python"], "commit": commit}


def differences(a: object, b: object, path: str = "",
                limit: int = 5) -> tuple[list[str], list[str]]:
    """``(changed, added)``: up to ``limit`` ``"path: recorded -> now"`` lines where ``b``
    differs from ``a`` or lacks one of its keys, and the paths of keys only ``b`` has (new
    outputs: reported, not a difference in what was computed)."""
    out: list[str] = []
    added: list[str] = []

    def walk(x: object, y: object, p: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if k not in y:
                    out.append(f"{p}/{k}: missing now")
                elif k not in x:
                    added.append(f"{p}/{k}")
                else:
                    walk(x[k], y[k], f"{p}/{k}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{p}[{i}]")
        elif x != y:
            out.append(f"{p}: {x!r} -> {y!r}")

    walk(a, b, path)
    return out, added


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("record", "check"))
    ap.add_argument("file", type=Path)
    ap.add_argument("--only", nargs="*", choices=RUNS, default=list(RUNS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        now = {name: run_one(name, Path(tmp)) for name in args.only}
    if args.mode == "record":
        args.file.write_text(json.dumps({"machine": machine(), "runs": now}, indent=1) + "\n")
        print(f"recorded {', '.join(now)} into {args.file}")
        return 0
    rec = json.loads(args.file.read_text())
    here = machine()
    if {k: rec["machine"][k] for k in ("cpu", "jax")} != {k: here[k] for k in ("cpu", "jax")}:
        print(f"warning: recorded on {rec['machine']['cpu']} with jax {rec['machine']['jax']}, "
              f"checked on {here['cpu']} with jax {here['jax']}: float bits may differ")
    bad = 0
    for name in now:
        diff, added = differences(rec["runs"].get(name), now[name], name)
        print(f"{name}: {'identical' if not diff else 'DIFFERS'}"
              + (f" (new outputs: {', '.join(sorted({a.rsplit('/', 1)[-1] for a in added}))})"
                 if added else ""))
        for line in diff:
            print(f"  {line}")
        bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
