"""The ``metajax`` command's entry point: joins a multi-process run first when asked.

``jax.distributed.initialize`` must run before anything starts XLA's backend, and importing the
environments does (jumanji builds arrays at import time), so ``--distributed`` is handled here,
before :mod:`metajax.cli` and its imports load; then :func:`metajax.cli.main` runs the command.
"""

from __future__ import annotations

import argparse
import sys


def _join_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--coordinator", default=None)
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    return p.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> int:
    """``metajax ...`` (see :mod:`metajax.cli`); with ``--distributed`` (``run``, ``sweep``)
    :func:`metajax.train.distributed.initialize` runs before the command is even imported."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--distributed" in argv and argv[:1] in (["run"], ["sweep"]):
        from metajax.config import ConfigError
        from metajax.train import distributed

        try:
            a = _join_args(argv)
        except SystemExit:  # a malformed value: the full parser below says what is wrong
            a = None
        if a is not None:
            try:
                distributed.initialize(a.coordinator, a.num_processes, a.process_id)
            except ConfigError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    from metajax import cli

    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
