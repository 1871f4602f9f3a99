"""metajax turns off XLA:CPU's YNNPACK fusions at import (a jaxlib 0.10.2 segfault), keeping the
user's own XLA flags and the opt-out."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = "import os, metajax; print(os.environ.get('XLA_FLAGS', ''))"


def _flags(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "METAJAX_KEEP_YNN")}
    out = subprocess.run([sys.executable, "-c", CODE], env={**base, **env}, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_import_disables_ynn_fusions_and_keeps_user_flags():
    import metajax

    assert metajax.YNN_FLAG in os.environ["XLA_FLAGS"]  # the test session itself
    flags = _flags(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert flags.split() == ["--xla_force_host_platform_device_count=4", metajax.YNN_FLAG]


def test_user_choice_of_ynn_fusions_wins():
    assert _flags(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=dot") == (
        "--xla_cpu_experimental_ynn_fusion_type=dot")
    assert _flags(METAJAX_KEEP_YNN="1") == ""
