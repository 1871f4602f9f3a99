"""Test-only kill points: with ``METAJAX_TEST_KILL_AT=<point>`` in its environment, a run
SIGKILLs itself at that exact point, so that ``tests/test_kill_anywhere.py`` can show that
``metajax run ... --resume`` after a kill anywhere ends bit for bit like an uninterrupted run.
Without the variable every point is inert (one environment lookup).

Points (``N`` counts chunks from 1 over the whole run, like ``metrics.jsonl`` rows and
checkpoint steps):

* ``compile``: XLA starts compiling the training chunk (or looking it up in the persistent
  compilation cache), inside the first chunk call of the process;
* ``chunk:N``: chunk ``N`` has been dispatched and none of its results read back, so nothing of
  it is on disk yet;
* ``checkpoint:N``: Orbax has written every item of checkpoint ``N`` into the step's temporary
  directory (``N.orbax-checkpoint-tmp``, each item with its commit marker) but has not
  committed the step (no ``commit_success.txt``, not renamed): Orbax's
  ``AsyncOptions.post_finalization_callback``, run by its save thread just before that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

import jax

#: The environment variable that arms one kill point.
VAR = "METAJAX_TEST_KILL_AT"
#: The JAX monitoring event recorded (as a scalar) when XLA starts compiling a program.
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def kill_at(point: str) -> None:
    """SIGKILL this process if ``point`` is the armed kill point."""
    if os.environ.get(VAR) == point:
        _kill(point)


@contextlib.contextmanager
def compiling(fn: Callable) -> Iterator[None]:
    """Within the block, SIGKILL this process when XLA starts compiling the jitted ``fn``
    (armed by ``compile``)."""
    if os.environ.get(VAR) != "compile":
        yield
        return
    name = f"jit({fn.__name__})"

    def listener(event: str, value: float, **kwargs: object) -> None:
        if event == _BACKEND_COMPILE and kwargs.get("fun_name") == name:
            _kill("compile")

    jax.monitoring.register_scalar_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_scalar_listener(listener)


def checkpoint_hook(step: Callable[[], int | None]) -> Callable[[], None] | None:
    """Orbax's ``post_finalization_callback`` for ``checkpoint:N`` (``step()`` names the step
    being saved), or ``None`` when no checkpoint point is armed."""
    if not os.environ.get(VAR, "").startswith("checkpoint:"):
        return None
    return lambda: kill_at(f"checkpoint:{step()}")


def _kill(point: str) -> None:
    print(f"{VAR}: killed at {point}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
