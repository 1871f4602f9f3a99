"""Shared test configuration: small static configs per env, and wandb kept offline."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("WANDB_MODE", "disabled")

import jax

import metajax  # noqa: F401  (its XLA flags must be set before the CPU backend starts)

# Identical programs built by separate calls (a run and its resumption, two runs of one seed)
# compile once: XLA executables are cached by program fingerprint for the whole session.
# The background jobs below inherit the directory, so a program they compiled is not compiled
# again by the test that reruns it.
os.environ.setdefault("METAJAX_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="metajax-jax-cache-"))
jax.config.update("jax_compilation_cache_dir", os.environ["METAJAX_TEST_JAX_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

#: Small static configs for every registered env (compile time dominates the suite).
SMALL_CONFIGS: dict[str, dict] = {
    "treasure": dict(max_agents=4, max_objects=3, episode_length=5),
    "resource": dict(max_agents=4, max_objects=3, episode_length=5),
    "pacman": dict(max_pacman=2, max_ghosts=2, max_objects=3, episode_length=5),
    "mpe_climb": dict(max_agents=3, max_objects=3, episode_length=5),
    "spread": dict(episode_length=5),
    "climb": dict(max_agents=3, num_actions=4),
    "climb_multistage": dict(max_agents=2, num_stages=3, num_actions=4),
    "swimmer_climb": dict(episode_length=5),
}


# --- heavy module fixtures in background processes ------------------------------------------
#
# XLA compiles on one core, so a serial suite leaves the second core of a 2-core CI machine
# mostly idle. The heaviest fixtures (a whole training run whose outputs are files) are
# registered here by their test modules, started as subprocesses as soon as collection ends
# (only those whose fixture a selected test uses), and waited for by that fixture. The
# subprocess imports the test module and calls ``module.<func>(out_dir)``.

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

_TESTS = Path(__file__).resolve().parent
_JOBS: dict[str, tuple[str, str, str, dict]] = {}  # name -> (module, function, fixture, env)
_STARTED: dict[str, tuple[subprocess.Popen, Path]] = {}
_T0 = time.monotonic()
_TIMES: dict[str, list[float]] = {}  # name -> [started, ended, waited] (s since import)
_WORK: list[Path] = []  # the session's job directory, made on first use
#: at most this many background jobs at once (CI machines have 2 cores)
MAX_BACKGROUND = 2
_QUEUE: list[str] = []


def background_job(name: str, module: str, function: str, fixture: str,
                   env: dict[str, str] | None = None) -> None:
    """Register ``module.function(out_dir)`` (``module`` a test module's name) as the
    background job ``name``, run with ``env`` added to the environment, and started when a
    selected test uses the fixture ``fixture`` (which calls :func:`background_result`); call
    at the test module's import."""
    _JOBS[name] = (module, function, fixture, dict(env or {}))


def _start(name: str) -> None:
    module, function, _, extra = _JOBS[name]
    if not _WORK:
        _WORK.append(Path(tempfile.mkdtemp(prefix="metajax-bg-")))
    out = _WORK[0] / name
    out.mkdir()
    script = (f"import sys; sys.path.insert(0, {str(_TESTS)!r}); import {module}; "
              f"{module}.{function}(sys.argv[1])")
    env = dict(os.environ, WANDB_MODE="disabled", **extra)
    with (out / "log.txt").open("w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-c", script, str(out / "out")], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(_TESTS.parent))
    _STARTED[name] = (proc, out)
    _TIMES[name] = [time.monotonic() - _T0, float("nan"), 0.0]


def _note_ended() -> None:
    for name, (proc, _) in _STARTED.items():
        if proc.poll() is not None and _TIMES[name][1] != _TIMES[name][1]:  # still nan
            _TIMES[name][1] = time.monotonic() - _T0


def _start_queued() -> None:
    _note_ended()
    running = sum(p.poll() is None for p, _ in _STARTED.values())
    while _QUEUE and running < MAX_BACKGROUND:
        _start(_QUEUE.pop(0))
        running += 1


def background_result(name: str, timeout: float = 1500) -> Path:
    """Wait for the background job ``name`` (starting it now if it was not started) and return
    its output directory; raises with the end of its log if it failed."""
    if name in _QUEUE:
        _QUEUE.remove(name)
    if name not in _STARTED:
        _start(name)
    proc, out = _STARTED[name]
    t = time.monotonic()
    try:
        code = proc.wait(timeout=timeout)
    finally:
        _TIMES[name][2] += time.monotonic() - t
        _note_ended()
        _start_queued()
    if code != 0:
        tail = (out / "log.txt").read_text()[-4000:]
        raise RuntimeError(f"background job {name} failed ({code}):\n{tail}")
    return out / "out"


def pytest_collection_finish(session) -> None:
    """Queue the jobs whose fixture a selected test uses, in test order."""
    if session.config.getoption("collectonly"):
        return
    for item in session.items:
        mod = Path(str(item.fspath)).stem
        for name, (module, _, fixture, _) in _JOBS.items():
            if module == mod and fixture in item.fixturenames and name not in _QUEUE:
                _QUEUE.append(name)
    _start_queued()


def pytest_runtest_setup(item) -> None:
    _start_queued()


def pytest_terminal_summary(terminalreporter) -> None:
    """When each background job ran (seconds since the session started), and how long a test
    waited for it: where the suite's time goes on a 2-core machine."""
    if not _TIMES:
        return
    _note_ended()
    terminalreporter.section("background jobs")
    for name, (start, end, waited) in _TIMES.items():
        terminalreporter.write_line(f"{name:>18}: started {start:6.0f} s, ended {end:6.0f} s "
                                    f"({end - start:5.0f} s), a test waited {waited:5.0f} s")
    terminalreporter.write_line(f"{'session':>18}: {time.monotonic() - _T0:6.0f} s")


def pytest_sessionfinish(session, exitstatus) -> None:
    for proc, _ in _STARTED.values():
        if proc.poll() is None:
            proc.kill()
    for d in _WORK:
        shutil.rmtree(d, ignore_errors=True)
