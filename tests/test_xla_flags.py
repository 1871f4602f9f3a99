"""metajax sets its XLA:CPU workaround flags at import (YNNPACK fusions off: a jaxlib 0.10.2
segfault; the concurrency-optimized scheduler off: programs that never finish), keeping the
user's own XLA flags and the opt-outs."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = "import os, metajax; print(os.environ.get('XLA_FLAGS', ''))"


def _flags(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "METAJAX_KEEP_YNN",
                                                           "METAJAX_KEEP_CPU_SCHEDULER")}
    out = subprocess.run([sys.executable, "-c", CODE], env={**base, **env}, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_import_disables_ynn_fusions_and_keeps_user_flags():
    import metajax

    for flag in (metajax.YNN_FLAG, metajax.SCHEDULER_FLAG):
        assert flag in os.environ["XLA_FLAGS"]  # the test session itself
    flags = _flags(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert flags.split() == ["--xla_force_host_platform_device_count=4", metajax.YNN_FLAG,
                             metajax.SCHEDULER_FLAG]


def test_user_choice_of_ynn_fusions_wins():
    import metajax

    assert _flags(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=dot").split() == [
        "--xla_cpu_experimental_ynn_fusion_type=dot", metajax.SCHEDULER_FLAG]
    assert _flags(METAJAX_KEEP_YNN="1") == metajax.SCHEDULER_FLAG
    on = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert _flags(XLA_FLAGS=on).split() == [on, metajax.YNN_FLAG]
    assert _flags(METAJAX_KEEP_CPU_SCHEDULER="1") == metajax.YNN_FLAG
    assert _flags(METAJAX_KEEP_YNN="1", METAJAX_KEEP_CPU_SCHEDULER="1") == ""
