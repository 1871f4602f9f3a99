"""Timing helpers shared by the benchmark scripts (only jax and the standard library).

Used both by :mod:`env_throughput` (main venv) and by :mod:`_peer_bench` (the separate
``.venv-bench`` holding the peer implementations), so every implementation is timed the same way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def steps_for(batch: int, target_env_steps: int, min_steps: int, max_steps: int) -> int:
    """Scan length ``T`` so that one timed call does about ``target_env_steps`` env-steps."""
    return int(max(min_steps, min(max_steps, target_env_steps // max(batch, 1))))


def time_jitted(
    init: Callable[[jax.Array], Any],
    run: Callable[[Any], Any],
    env_steps_per_call: int,
    *,
    seed: int = 0,
    min_reps: int = 3,
    max_reps: int = 10,
    min_time: float = 1.0,
    max_time: float = 10.0,
) -> dict[str, float]:
    """Time ``run`` (a pure function ``carry -> carry`` doing ``env_steps_per_call`` env-steps).

    ``init(key) -> carry`` builds the first carry (run eagerly, not timed). ``run`` is compiled
    ahead of time with ``jit(run).lower(carry).compile()``: that wall time is reported as
    ``compile_s`` (tracing, lowering and XLA compilation). Then one untimed warm-up call, then
    calls chained on their own output (``carry = run(carry)``, each ended by
    ``block_until_ready``) until at least ``min_reps`` calls and ``min_time`` seconds, at most
    ``max_reps`` calls, and no new call once ``max_time`` seconds are spent (slow configs).
    Throughput uses the fastest call (the least disturbed by other load); the median is
    reported too, and the process CPU time of the fastest-in-CPU call (``cpu_s``), which is
    less sensitive to other processes competing for the cores.
    """
    carry = jax.block_until_ready(init(jax.random.key(seed)))
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(carry).compile()
    compile_s = time.perf_counter() - t0
    carry = jax.block_until_ready(compiled(carry))  # warm-up
    times: list[float] = []
    cpus: list[float] = []
    while len(times) < max_reps and (len(times) < min_reps or sum(times) < min_time):
        if times and sum(times) >= max_time:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        carry = jax.block_until_ready(compiled(carry))
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return _summary(times, cpus, env_steps_per_call, compile_s)


def _summary(times, cpus, env_steps, compile_s) -> dict[str, float]:
    best, med = min(times), statistics.median(times)
    return {
        "compile_s": compile_s,
        "best_s": best,
        "median_s": med,
        "cpu_s": min(cpus),
        "reps": len(times),
        "env_steps_per_call": env_steps,
        "env_steps_per_s": env_steps / best,
        "env_steps_per_s_median": env_steps / med,
        "env_steps_per_cpu_s": env_steps / max(min(cpus), 1e-9),
    }


def time_python_loop(
    step_block: Callable[[int], int], n_steps: int, *, min_reps: int = 3, min_time: float = 1.0
) -> dict[str, float]:
    """Time a host loop: ``step_block(n)`` runs ``n`` env-steps and returns how many it ran.

    A short untimed warm-up, then the best of at least ``min_reps`` blocks (and ``min_time``
    seconds, at most 20 blocks).
    """
    step_block(max(n_steps // 10, 1))
    times: list[float] = []
    cpus: list[float] = []
    done = n_steps
    while len(times) < 20 and (len(times) < min_reps or sum(times) < min_time):
        t0, c0 = time.perf_counter(), time.process_time()
        done = step_block(n_steps)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return _summary(times, cpus, done, 0.0)


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores (total and usable), Python, jax and
    jaxlib versions, backend and device kind, date (UTC) and the load average at the start."""
    import datetime as dt
    import os
    import platform
    from pathlib import Path

    import jaxlib

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jax_backend": jax.default_backend(),
        "backend": f"{jax.default_backend()} ({jax.devices()[0].device_kind})",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_start": [round(x, 2) for x in load],
    }


def write_section(path: Any, section: str, begin: str, end: str) -> None:
    """Replace the text between the markers ``begin`` and ``end`` in the file ``path`` by
    ``section`` (which carries the markers), or append it (creating the file if needed)."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, stop = text.find(begin), text.find(end)
    if start != -1 and stop != -1 and stop > start:
        text = text[:start] + section.rstrip("\n") + text[stop + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text if text.endswith("\n") else text + "\n")
