"""Shared test configuration: wandb kept offline, the compilation cache, and the background
fixtures (plain helpers live in ``tests/helpers.py``)."""

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

# --- heavy module fixtures in background processes ------------------------------------------
#
# XLA compiles on one core, so a serial suite leaves the second core of a 2-core CI machine
# mostly idle. The heaviest fixtures (a whole training run whose outputs are files) are
# registered here by their test modules, started as subprocesses as soon as collection ends
# (only those whose fixture a selected test uses), and waited for by that fixture. The
# subprocess imports the test module and calls ``module.<func>(out_dir)``.

import functools  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

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
    out = _work_dir() / name
    out.mkdir()
    script = (f"import sys; sys.path.insert(0, {str(_TESTS)!r}); import {module}; "
              f"{module}.{function}(sys.argv[1])")
    env = dict(os.environ, WANDB_MODE="disabled", **extra)
    with (out / "log.txt").open("w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-c", script, str(out / "out")], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(_TESTS.parent))
    _STARTED[name] = (proc, out)
    _TIMES[name] = [time.monotonic() - _T0, float("nan"), 0.0]


def _work_dir() -> Path:
    """The session's directory for job outputs and the warm pass, made on first use."""
    if not _WORK:
        _WORK.append(Path(tempfile.mkdtemp(prefix="metajax-bg-")))
    return _WORK[0]


def _running() -> int:
    return sum(p.poll() is None for p, _ in _STARTED.values())


def _note_ended() -> None:
    if "proc" in _WARM and "end" not in _WARM and _WARM["proc"].poll() is not None:
        _WARM["end"] = time.monotonic() - _T0
    for name, (proc, _) in _STARTED.items():
        if proc.poll() is not None and math.isnan(_TIMES[name][1]):
            _TIMES[name][1] = time.monotonic() - _T0


def _start_queued() -> None:
    _note_ended()
    running = _running()
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


def _jobs_of(item) -> list[str]:
    """The background jobs whose fixture the test ``item`` uses."""
    mod = Path(str(item.fspath)).stem
    return [name for name, (module, _, fixture, _) in _JOBS.items()
            if module == mod and fixture in item.fixturenames]


def pytest_collection_finish(session) -> None:
    """Queue the jobs whose fixture a selected test uses, in test order, and plan the warm
    pass (see below)."""
    if session.config.getoption("collectonly") or _WARM_MODE:
        return
    for item in session.items:
        _QUEUE.extend(name for name in _jobs_of(item) if name not in _QUEUE)
    _plan_warm(session.items)
    _start_queued()


# --- the warm pass ---------------------------------------------------------------------------
#
# Once the last job has started, a job slot frees and, with the jobs done, the second core would
# idle for the rest of the session. It then runs the remaining tests a second time in a
# subprocess (the "warm pass"), *last module first*, only to fill
# the shared compilation cache: when the main session reaches a module the warm pass already
# ran, its programs load from the cache instead of compiling. The warm pass stops when it
# reaches the module the main session is in. Its outcome is ignored (every test still runs,
# and counts, in the main session); METAJAX_TEST_NO_WARM=1 turns it off.

_WARM_MODE = "METAJAX_TEST_WARM" in os.environ  # this process is a warm pass
_WARM: dict = {}  # plan and state of the session's warm pass


def _plan_warm(items: list) -> None:
    if os.environ.get("METAJAX_TEST_NO_WARM"):
        return
    order: list[str] = []  # module files in the session's order
    keep: list[str] = []
    for item in items:
        path = str(item.fspath)
        if path not in order:
            order.append(path)
        if not _jobs_of(item):
            keep.append(item.nodeid)
    if len(order) < 2:
        return
    _WARM.update(order=order, keep=keep, current=0)


def _start_warm() -> None:
    """Start the warm pass over the modules after the current one, last first."""
    later = _WARM["order"][_WARM["current"] + 1:]
    if not later:
        return
    d = _work_dir()
    (d / "warm_items.txt").write_text("\n".join(_WARM["keep"]))
    (d / "warm_order.txt").write_text("\n".join(_WARM["order"]))
    _write_progress()
    env = dict(os.environ, WANDB_MODE="disabled", METAJAX_TEST_WARM=str(d))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp", str(d / "warm_tmp"), *reversed(later)]
    with (d / "warm_log.txt").open("w") as log:
        _WARM["proc"] = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(_TESTS.parent))
    _WARM["start"] = time.monotonic() - _T0


def _write_progress() -> None:
    path = _work_dir() / "warm_progress.txt"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(_WARM["current"]))
    tmp.replace(path)


def _warm_step(item) -> None:
    """Main session: track its module; start the warm pass once no job waits to start and a
    job slot is free."""
    if not _WARM:
        return
    idx = _WARM["order"].index(str(item.fspath))
    if idx != _WARM["current"]:
        _WARM["current"] = idx
        if "proc" in _WARM:
            _write_progress()
    if ("proc" not in _WARM and not _QUEUE
            and _running() < MAX_BACKGROUND):
        _start_warm()


def pytest_collection_modifyitems(session, config, items) -> None:
    """Warm pass: only the main session's selected tests that need no background job."""
    if not _WARM_MODE:
        return
    keep = set((Path(os.environ["METAJAX_TEST_WARM"]) / "warm_items.txt").read_text().split())
    items[:] = [it for it in items if it.nodeid in keep]


@functools.cache
def _main_order() -> list[str]:
    """Warm pass: the main session's module files, in its order."""
    return (Path(os.environ["METAJAX_TEST_WARM"]) / "warm_order.txt").read_text().split("\n")


def _warm_caught_up(item) -> bool:
    d = Path(os.environ["METAJAX_TEST_WARM"])
    order = _main_order()
    try:
        main = int((d / "warm_progress.txt").read_text())
    except (OSError, ValueError):
        return False
    path = str(item.fspath)
    return path not in order or order.index(path) <= main


def pytest_runtest_setup(item) -> None:
    if _WARM_MODE:
        if _warm_caught_up(item):
            pytest.exit("warm pass: the main session has reached this module", returncode=0)
        with (Path(os.environ["METAJAX_TEST_WARM"]) / "warm_modules.txt").open("a") as f:
            f.write(Path(str(item.fspath)).stem + "\n")
        return
    _start_queued()
    _warm_step(item)


def pytest_terminal_summary(terminalreporter) -> None:
    """When each background job and the warm pass ran (seconds since the session started), and
    how long a test waited for a job: where the suite's time goes on a 2-core machine."""
    if _WARM_MODE or not (_TIMES or "proc" in _WARM):
        return
    _note_ended()
    terminalreporter.section("background jobs")
    for name, (start, end, waited) in _TIMES.items():
        terminalreporter.write_line(f"{name:>18}: started {start:6.0f} s, ended {end:6.0f} s "
                                    f"({end - start:5.0f} s), a test waited {waited:5.0f} s")
    if "proc" in _WARM:
        try:
            ran = (_work_dir() / "warm_modules.txt").read_text().split()
        except OSError:
            ran = []
        mods = list(dict.fromkeys(ran))
        end = _WARM.get("end", float("nan"))
        terminalreporter.write_line(
            f"{'warm pass':>18}: started {_WARM['start']:6.0f} s, ended {end:6.0f} s; "
            f"{len(ran)} tests of {len(mods)} modules, last module first: {', '.join(mods)}")
    terminalreporter.write_line(f"{'session':>18}: {time.monotonic() - _T0:6.0f} s")


def pytest_sessionfinish(session, exitstatus) -> None:
    if _WARM_MODE:
        return
    procs = [p for p, _ in _STARTED.values()] + ([_WARM["proc"]] if "proc" in _WARM else [])
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def pytest_unconfigure(config) -> None:
    """Remove the job directories (after the terminal summary, which reads the warm log)."""
    for d in _WORK:
        shutil.rmtree(d, ignore_errors=True)
