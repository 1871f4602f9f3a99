"""Runs over several processes (hosts) with :func:`jax.distributed.initialize`.

With ``metajax run/sweep --distributed`` every process runs the same host loop
(:func:`metajax.train.loop.run_chunks`) over a global mesh of every process's devices: the
member axis (seeds, or grid points x seeds) is split across it, each process computes its
members, and the small per-chunk metrics, parameter checks and evaluations are gathered to every
process (:func:`to_host`, one collective each, so every process must reach them in the same
order). Only process 0 (:func:`is_primary`) writes ``metrics.jsonl``, ``config.json``,
``results.json``, wandb and log lines; the Orbax checkpoints are written by all processes
together (Orbax's multi-host save), so the run directory must be on a filesystem every process
sees.

Where the processes come from: ``coordinator``, ``num_processes``, ``process_id`` arguments,
else the environment (``JAX_COORDINATOR_ADDRESS``, :data:`NUM_PROCESSES_ENV`,
:data:`PROCESS_ID_ENV`), else jax's cluster detection (SLURM, Open MPI, mpi4py, TPU pods,
Kubernetes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from metajax.config import ConfigError

#: Environment variables read by :func:`initialize` for the process count and index (jax itself
#: reads only ``JAX_COORDINATOR_ADDRESS``; SLURM and MPI launchers need neither).
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"${name}={value!r} is not an integer") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join the distributed run (before anything uses a device); returns
    ``(process index, process count)``.

    Raises:
      ConfigError: one line when the coordinator, count or index is missing or invalid, or
        jax cannot join (e.g. the coordinator does not answer).
    """
    num_processes = num_processes if num_processes is not None else _int_env(NUM_PROCESSES_ENV)
    process_id = process_id if process_id is not None else _int_env(PROCESS_ID_ENV)
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"the process count must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not (
            0 <= process_id < num_processes):
        raise ConfigError(f"process id {process_id} is not in 0..{num_processes - 1}")
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(
            f"--distributed: could not join the run ({first}); set JAX_COORDINATOR_ADDRESS "
            f"(host:port of process 0), ${NUM_PROCESSES_ENV} and ${PROCESS_ID_ENV}, or launch "
            "under SLURM/MPI") from None
    return jax.process_index(), jax.process_count()


def joined() -> bool:
    """Whether this process has joined a multi-process run (:func:`initialize`)."""
    return jax.distributed.is_initialized()


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; always true in one process)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process of a multi-process run has reached ``barrier(name)``; a no-op
    in one process. For a check that every process makes before process 0 writes what the
    check looks for (a process that checked later would see the write)."""
    if joined():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def primary_only(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on process 0, a no-op on the others."""
    return log if is_primary() else (lambda _msg: None)


def to_host(tree: Any) -> Any:
    """Every leaf as a numpy array holding the whole (global) value: a leaf split over several
    processes is gathered (a collective: every process must call this at the same point);
    others are copied from the device. Shapes are kept (``[members, ...]``)."""
    from jax.experimental import multihost_utils

    def one(x: Any) -> np.ndarray:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def host_inputs(tree: Any) -> Any:
    """``tree`` with every leaf as numpy, to pass beside global arrays to a jitted function
    (numpy inputs are replicated to every process's devices; an array committed to one local
    device is not allowed there). The identity in one process."""
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(np.asarray, tree)
