"""``benchmarks/gpu_check.sh``: its summary from synthetic stage outputs (fast), and the whole
script in ``--cpu-smoke`` form (about 2 minutes on 2 cores, mostly compilation, under
metajax's fast-compile profile)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# the whole script takes about 2 minutes: this module is handed to a worker before all others
pytestmark = pytest.mark.early(0)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gpu_check", ROOT / "benchmarks" /
                                                  "_gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _numbers(tree: Any) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    return [tree]


def _check_summary(summary: dict, stages: tuple[str, ...]) -> None:
    """Every stage has a status; a successful stage's figures are positive finite numbers."""
    assert set(summary["stages"]) == set(stages)
    for name, st in summary["stages"].items():
        assert st["status"] in ("ok", "failed", "timeout", "skipped", "pending"), (name, st)
        if st["status"] == "ok" and name != "info":
            nums = _numbers(st["figures"])
            assert nums, name
            for x in nums:
                assert isinstance(x, int | float) and not isinstance(x, bool), (name, x)
                assert math.isfinite(x) and x > 0, (name, st["figures"])


def _write(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj))


def _stage_lines(name: str, times: tuple[float, ...]) -> list[str]:
    """A MESA stage's chunk lines (40 env steps per learner and chunk) as the host loop writes
    them (:class:`metajax.train.loop.HostLog`), stamped as the probe's log stamps them."""
    from metajax.train.loop import HostLog

    lines: list[str] = []
    host = HostLog(name, len(times), 40, 0, len(times), show=False, wb=None, log=lines.append)
    for c in range(len(times)):
        host.chunk(c, {"episode_return": [0.0]})
    return [f"{t:.3f}\t[{t:7.1f}s] {line}" for t, line in zip(times, lines, strict=True)]


def _fake_run(work: Path, out: Path, *, nan: bool = False, timeout: bool = False) -> None:
    """Stage outputs in the formats the real stages leave (see ``_gpu_check.py``)."""
    for name in ("info", "env", "train", "mesa", "mra", "sweep"):
        rc = 124 if timeout and name == "mesa" else 0
        _write(work / f"{name}.rc", {"rc": rc, "wall_s": 2.5, "timeout_s": 60})
        (work / f"{name}.log").write_text(f"{name} log line\n")
    (work / "nvidia_smi.csv").write_text("NVIDIA H200, 143771 MiB, 580.159.04\n")
    _write(work / "info.json", {"jax": "0.11.2", "jaxlib": "0.11.2", "backend": "gpu",
                                "devices": [{"id": 0, "platform": "gpu", "kind": "NVIDIA H200"}],
                                "preflight_failed": []})
    res = {"env_steps_per_s": 1e6, "compile_s": 1.5}
    _write(out / "env.json", {
        "wall_s": 30.0,
        "envs": {"spread": {"active_agents": 3.0, "results": {"1": res, "64": res}},
                 "treasure": {"active_agents": 6.0, "results": {"1": res, "64": res}}},
        "spread": {"ours": {"1": res, "64": res}, "ours_per_game": {"1": res, "64": res},
                   "ours_no_reset": {"1": res, "64": res}}})
    row = {"impl": "ours", "world": "treasure (3 agents, 3 treasures)", "env_steps_per_s": 5e4,
           "updates_per_s": 50.0, "compile_s": 9.0, "chunk_s": 0.1, "buffer_mb_per_seed": 32.0}
    _write(out / "train.json", {"chunk_updates": 10,
                                "rows": [{**row, "seeds": 1}, {**row, "seeds": 2}]})
    # MESA: the plan, the timestamped log and the stage metrics of a run
    _write(work / "mesa.plan.json", {
        "kind": "mesa", "command": "metajax run experiments/mesa_mpe_2a5l.py", "chunks": 2,
        "methods": ["mesa"], "learners": {"collect": 6, "explorer": 3, "test": 9},
        "plan_s": 3.0})
    log = ["0.020\texperiments/mesa_mpe_2a5l.py -> run (pipeline mesa, 3 seed(s))",
           "8.000\t[    8.0s] mesa_mpe_2a5l: env MPEClimb(...), 3 seed(s)",
           *_stage_lines("collect", (20.0, 21.0)),
           "22.000\t[   22.0s] M_*: [3, 4, 5] pairs per seed (capacity 32)",
           *_stage_lines("explorer0", (30.0, 30.5)),
           *_stage_lines("test_mesa", (40.0, 42.0))]
    (work / "mesa.tslog").write_text("\n".join(log) + "\n")
    run = work / "mesa_run"
    run.mkdir()
    bad = "NaN" if nan else "0.5"
    (run / "metrics_collect.jsonl").write_text(
        '{"stage": "collect", "chunk": 1, "critic_loss": [0.1, 0.2, 0.3]}\n'
        f'{{"stage": "collect", "chunk": 2, "critic_loss": [0.1, {bad}, 0.3]}}\n')
    _write(run / "results.json", {})
    # MRA: the plan and the arm's metrics.jsonl
    _write(work / "mra.plan.json", {"kind": "mra", "arm": "mra", "chunks": 3, "seeds": 2,
                                    "env_steps_per_chunk": 6000, "plan_s": 4.0})
    (work / "mra.tslog").write_text("0.1\tstart\n50.0\tend\n")
    arm = work / "mra_run" / "mra"
    arm.mkdir(parents=True)
    rows = [{"chunk": c, "time": t, "sps": 1.0, "grad_steps": g, "prior_tv": [0.1 * c, 0.2],
             "game_ce": [1.0 / c, 0.5]}
            for c, t, g in ((1, 40.0, [0, 0]), (2, 2.0, [10, 10]), (3, 2.2, [20, 20]))]
    (arm / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the sweep: 2 points x 2 seeds, one compiled group (metajax sweep's files)
    sw = work / "sweep_run"
    sw.mkdir()
    _write(sw / "sweep.json", {"grid": {"maddpg.tau": [0.01, 0.1]}, "seeds": 2,
                               "groups": [{"index": 0, "points": [0, 1]}]})
    score = float("nan") if nan else 2.0
    points = [{"point": 0, "values": {"maddpg.tau": 0.01}, "scores": [[1.0], [score]],
               "env_steps": 400, "mean": 1.5, "iqm": {"point": 1.5}},
              {"point": 1, "values": {"maddpg.tau": 0.1}, "scores": [[3.0], [4.0]],
               "env_steps": 400, "mean": 3.5, "iqm": {"point": 3.5}}]
    _write(sw / "results.json", {"seeds": 2, "points": points, "best": points[1]})


def _summarize(tmp_path: Path, **fake: bool) -> dict:
    mod = _module()
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    _fake_run(work, out, **fake)
    code = mod.main(["summary", "--work", str(work), "--out", str(out), "--mode", "gpu",
                     "--env-batches", "1,64", "--train-seeds", "1,2", "--budget", "470",
                     "--elapsed", "300", "--final"])
    summary = json.loads((out / "gpu_check.json").read_text())
    summary["_code"] = code
    return summary


def test_summary_reads_every_stage(tmp_path: Path) -> None:
    s = _summarize(tmp_path)
    _check_summary(s, _module().STAGES)
    st = s["stages"]
    assert s["_code"] == 0 and s["complete"]
    assert s["gpu"]["model"] == "NVIDIA H200" and s["gpu"]["source"] == "nvidia-smi"
    assert s["jax"]["jax"] == "0.11.2"
    assert {k: v["status"] for k, v in st.items()} == {
        "info": "ok", "env": "ok", "train": "ok", "mesa": "ok", "mra": "ok", "sweep": "ok"}
    sweep = st["sweep"]["figures"]
    assert (sweep["points"], sweep["members"], sweep["groups"]) == (2, 4, 1)
    wall = st["sweep"]["wall_s"]
    assert sweep["env_steps_per_s"] == pytest.approx(4 * 400 / wall)
    assert st["sweep"]["best"] == {"values": {"maddpg.tau": 0.1}, "iqm": 3.5}
    assert st["env"]["figures"]["treasure"]["64"]["agent_steps_per_s"] == pytest.approx(6e6)
    assert set(st["train"]["figures"]) == {"1", "2"}
    mesa = st["mesa"]["figures"]["stages"]
    # first chunk: from the line before it; steady chunk: between the two chunk lines
    assert mesa["collect"]["first_chunk_s"] == pytest.approx(12.0)
    assert mesa["collect"]["chunk_s"] == pytest.approx(1.0)
    assert mesa["collect"]["env_steps_per_s"] == pytest.approx(6 * 40 / 1.0)
    assert mesa["test_mesa"]["env_steps_per_s"] == pytest.approx(9 * 40 / 2.0)
    assert st["mesa"]["checks"]["nonfinite"] is False
    mra = st["mra"]
    assert mra["figures"]["first_chunk_s"] == 40.0
    assert mra["figures"]["chunk_s"] == pytest.approx(2.1)
    assert mra["figures"]["env_steps_per_s"] == pytest.approx(12000 / 2.1)
    assert mra["checks"]["prior_tv"] == pytest.approx([0.3, 0.2])
    assert mra["checks"]["game_ce"] == pytest.approx([1 / 3, 0.5])
    md = _module().markdown(s)  # the RESULTS.md section
    assert md.startswith("<!-- gpu_check:begin -->") and "NVIDIA H200, 143771 MiB" in md
    assert "Sweep: 2 grid points x 2 seeds = 4 members in 1 compiled program(s)" in md
    assert "best point {'maddpg.tau': 0.1} (IQM 3.500)" in md
    assert "| collect | 6 | 12.0 | 1.00 | 240 |" in md


def test_summary_flags_nan_and_timeout(tmp_path: Path) -> None:
    s = _summarize(tmp_path, nan=True, timeout=True)
    _check_summary(s, _module().STAGES)
    mesa = s["stages"]["mesa"]
    assert mesa["status"] == "timeout" and "time limit" in mesa["error"]
    assert mesa["log_tail"] == "mesa log line"
    assert mesa["checks"]["nonfinite"] is True
    assert mesa["checks"]["nonfinite_keys"] == ["metrics_collect:critic_loss"]
    sweep = s["stages"]["sweep"]
    assert sweep["status"] == "failed" and "non-finite scores at grid points [0]" in sweep["error"]
    assert s["_code"] == 1  # --final: a stage timed out


def test_summary_marks_missing_figures_failed(tmp_path: Path) -> None:
    mod = _module()
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    _fake_run(work, out)
    (work / "mra_run" / "mra" / "metrics.jsonl").write_text(
        '{"chunk": 1, "time": 40.0, "sps": 1.0}\n')  # one chunk: no steady-state figure
    mod.main(["summary", "--work", str(work), "--out", str(out), "--stages", "info,mra,sweep"])
    st = json.loads((out / "gpu_check.json").read_text())["stages"]
    assert st["mra"]["status"] == "failed" and "fewer than 2 chunks" in st["mra"]["error"]
    assert st["env"] == {"status": "skipped", "reason": "not selected (--stages)"}


def _run_smoke(out: Path) -> None:
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    env.pop("GPU_CHECK_WORK", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1000, check=False)
    assert (out / "gpu_check.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="gpu_check.sh needs bash and coreutils' timeout")
def test_gpu_check_cpu_smoke(tmp_path: Path) -> None:
    """The whole script, CI-sized on the CPU: every stage runs, succeeds and reports positive
    figures (issue 16: the script passes in CI)."""
    out = tmp_path / "out"
    _run_smoke(out)
    summary = json.loads((out / "gpu_check.json").read_text())
    _check_summary(summary, _module().STAGES)
    st = summary["stages"]
    failed = {k: v.get("error") for k, v in st.items() if v["status"] not in ("ok", "skipped")}
    assert not failed, failed
    assert st["sweep"]["figures"]["points"] == 16
    assert summary["mode"] == "cpu-smoke" and summary["complete"]
    assert summary["jax"]["jax"] and summary["gpu"]["model"]
    assert set(st["env"]["figures"]) >= {"spread", "treasure"}
    assert set(st["train"]["figures"]) == {"1", "2"}
    assert st["mesa"]["checks"]["nonfinite"] is False
    assert st["mra"]["checks"]["prior_tv"] and st["mra"]["checks"]["game_ce"]
    assert sorted(p.name for p in out.iterdir()) == [
        "env.json", "gpu_check.json", "gpu_check.log", "train.json"]
