"""metajax: pure-JAX multi-agent RL across games (MRA, MESA).

Importing :mod:`metajax` turns off XLA:CPU's YNNPACK library fusions (unless ``XLA_FLAGS``
already sets ``xla_cpu_experimental_ynn_fusion_type`` or ``METAJAX_KEEP_YNN=1``): with jaxlib
0.10.2 one of them (a transpose inside the MRA learner's Eq. 11 step, vmapped over 2 seeds on
the two-team Pac-Man world) crashes the process with a segmentation fault in
``slinky::fuse_contiguous_dims`` (``YnnFusionThunk``). XLA reads the flag when the CPU backend
starts, so this must run before the first computation.
"""

import os

__version__ = "0.1.0"

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _disable_ynn_fusions() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("METAJAX_KEEP_YNN") == "1" or "xla_cpu_experimental_ynn_fusion_type" in flags:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()


_disable_ynn_fusions()
