"""metajax: pure-JAX multi-agent RL across games (MRA, MESA).

Importing :mod:`metajax` sets two XLA:CPU flags that work around jaxlib 0.10.2 bugs, each unless
``XLA_FLAGS`` already sets that flag or its opt-out variable is ``1``:

* ``--xla_cpu_experimental_ynn_fusion_type=`` (opt-out ``METAJAX_KEEP_YNN``): one of the YNNPACK
  library fusions (a transpose inside the MRA learner's Eq. 11 step, vmapped over 2 seeds on the
  two-team Pac-Man world) crashes the process with a segmentation fault in
  ``slinky::fuse_contiguous_dims`` (``YnnFusionThunk``).
* ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` (opt-out
  ``METAJAX_KEEP_CPU_SCHEDULER``): with that scheduler some programs never finish; the host
  waits in ``BlockUntilReady`` while every XLA worker thread sleeps. Seen on the 2-core CI box
  with QMIX's evaluation vmapped over 8 seeds x 3 games of the multi-stage climb game
  (``mesa_multistage.py --preset learners``: 6 members finish) and with JaxMARL 0.2's IPPO
  (an ``io_callback`` per update) vmapped over 2 seeds for 20 updates; both finish with the
  flag.

XLA reads the flags when the CPU backend starts, so this must run before the first computation.
"""

import os

__version__ = "0.1.0"

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

#: ``(flag, its opt-out environment variable)`` in the order they are appended.
WORKAROUND_FLAGS = ((YNN_FLAG, "METAJAX_KEEP_YNN"),
                    (SCHEDULER_FLAG, "METAJAX_KEEP_CPU_SCHEDULER"))


def _set_workaround_flags() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    for flag, opt_out in WORKAROUND_FLAGS:
        name = flag.lstrip("-").split("=")[0]
        if os.environ.get(opt_out) == "1" or name in flags:
            continue
        flags = f"{flags} {flag}".strip()
    if flags:
        os.environ["XLA_FLAGS"] = flags


_set_workaround_flags()
