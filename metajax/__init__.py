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

``METAJAX_FAST_COMPILE=1`` also adds the *fast-compile profile*, each flag unless ``XLA_FLAGS``
already sets it (:data:`FAST_COMPILE_FLAGS`): ``--xla_cpu_use_fusion_emitters=false`` (XLA:CPU's
older loop emitters, not its MLIR fusion emitters) and ``--xla_backend_optimization_level=1``
(LLVM at O1, not O2). For short runs on a CPU, where compilation is most of the time
(``benchmarks/compile_profile.py``, 2-core CI box): the MRA learner's update compiles in 5.7 s
instead of 12.9 s and small eager operations take half as long, while the compiled update ran
as fast (1.01x; 1.09x in an earlier probe). The test suite sets it (``tests/conftest.py``).
The arithmetic is the same program's, but the generated code differs, so float results are
not bit for bit those of the default profile.

XLA reads the flags when the CPU backend starts, so this must run before the first computation
(importing :mod:`envs` is one: import metajax first). Imported later, it warns that its flags
take no effect in this process.
"""

import os

__version__ = "0.1.0"

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

#: ``(flag, its opt-out environment variable)`` in the order they are appended.
WORKAROUND_FLAGS = ((YNN_FLAG, "METAJAX_KEEP_YNN"),
                    (SCHEDULER_FLAG, "METAJAX_KEEP_CPU_SCHEDULER"))
#: The fast-compile profile, appended (after the workarounds) when ``METAJAX_FAST_COMPILE=1``.
FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false",
                      "--xla_backend_optimization_level=1")


def _set_workaround_flags() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    wanted = [flag for flag, opt_out in WORKAROUND_FLAGS if os.environ.get(opt_out) != "1"]
    fast = os.environ.get("METAJAX_FAST_COMPILE") or "0"
    if fast not in ("0", "1"):
        raise ValueError(f"METAJAX_FAST_COMPILE must be 0 or 1, not {fast!r}")
    if fast == "1":
        wanted += FAST_COMPILE_FLAGS
    added = [f for f in wanted if f.lstrip("-").split("=")[0] not in flags]
    flags = " ".join([flags, *added]).strip()
    if flags:
        os.environ["XLA_FLAGS"] = flags
    if added and _backend_started():
        import warnings

        warnings.warn(f"metajax was imported after XLA's backend started (e.g. after `import "
                      f"envs` or a first jax computation), so {' '.join(added)} take no effect "
                      f"in this process: import metajax first", stacklevel=3)


def _backend_started() -> bool:
    """Whether jax is imported and its backends are up (XLA has read ``XLA_FLAGS``)."""
    import sys

    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover (a jax without the module: cannot tell)
        return False
    return bool(getattr(xla_bridge, "backends_are_initialized", lambda: False)())


_set_workaround_flags()
