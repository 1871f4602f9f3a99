"""Shared test configuration: wandb kept offline, metajax's fast-compile profile, JAX's
persistent compilation cache shared by the pytest-xdist workers, and the order in which modules
are handed to them (plain helpers live in ``tests/helpers.py``)."""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("WANDB_MODE", "disabled")
# Several xdist workers may share one accelerator: none may preallocate most of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# XLA:CPU's older loop emitters and LLVM at O1 (metajax/__init__.py): the tests' time is mostly
# compilation, which this cuts by about 40 % (the heaviest modules: 117 s against 192 s of wall
# time on 2 cores). Subprocesses inherit it. test_xla_flags runs a training under the default
# profile and checks that its numbers agree. METAJAX_FAST_COMPILE=0 runs the suite without it.
os.environ.setdefault("METAJAX_FAST_COMPILE", "1")

import jax

import metajax  # noqa: F401  (its XLA flags must be set before the CPU backend starts)

# One compilation cache for the session and all its xdist workers (each worker is a process
# of its own, so without it a program two modules build, or a run and its resumption in
# another process, compiles twice). The controller makes the directory before the workers
# start; they inherit the variable. Set METAJAX_TEST_JAX_CACHE to a directory of your own to
# keep the cache between sessions (entries are keyed by program, flags and jax version).
_OWN_CACHE = "METAJAX_TEST_JAX_CACHE" not in os.environ  # made here, removed at the end
os.environ.setdefault("METAJAX_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="metajax-jax-cache-"))
jax.config.update("jax_compilation_cache_dir", os.environ["METAJAX_TEST_JAX_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "early: a module that trains whole runs; handed to an xdist worker first "
                   "so that it does not start last and leave the other workers idle "
                   "(early(0): before the other early modules)")


def _priority(item) -> int:
    mark = item.get_closest_marker("early")
    return mark.args[0] if mark.args else 1


def pytest_collection_modifyitems(session, config, items) -> None:
    """Modules marked ``early`` first (``--dist loadfile`` hands modules to workers in this
    order), ``early(0)`` before plain ``early``, the rest in their collected order."""
    early = sorted((it for it in items if it.get_closest_marker("early")), key=_priority)
    items[:] = early + [it for it in items if not it.get_closest_marker("early")]


def pytest_unconfigure(config) -> None:
    if _OWN_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["METAJAX_TEST_JAX_CACHE"], ignore_errors=True)
