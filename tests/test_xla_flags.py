"""metajax sets its XLA:CPU workaround flags at import (YNNPACK fusions off: a jaxlib 0.10.2
segfault; the concurrency-optimized scheduler off: programs that never finish), keeping the
user's own XLA flags and the opt-outs; ``METAJAX_FAST_COMPILE=1`` adds the fast-compile profile,
which the test suite runs under, and a run under the default profile gives the same numbers to
float tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import run_in_subprocess

CODE = "import os, metajax; print(os.environ.get('XLA_FLAGS', ''))"


def _flags(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "METAJAX_KEEP_YNN",
                                                           "METAJAX_KEEP_CPU_SCHEDULER",
                                                           "METAJAX_FAST_COMPILE")}
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


def test_fast_compile_profile_is_opt_in_and_user_flags_win():
    import metajax

    work = [metajax.YNN_FLAG, metajax.SCHEDULER_FLAG]
    assert _flags().split() == work
    assert _flags(METAJAX_FAST_COMPILE="0").split() == work
    assert _flags(METAJAX_FAST_COMPILE="1").split() == work + list(metajax.FAST_COMPILE_FLAGS)
    o2 = "--xla_backend_optimization_level=2"
    assert _flags(METAJAX_FAST_COMPILE="1", XLA_FLAGS=o2).split() == [
        o2, *work, "--xla_cpu_use_fusion_emitters=false"]
    # the test session itself runs under the profile (tests/conftest.py), unless the
    # user's environment says METAJAX_FAST_COMPILE=0
    on = os.environ["METAJAX_FAST_COMPILE"] == "1"
    for flag in metajax.FAST_COMPILE_FLAGS:
        assert (flag in os.environ["XLA_FLAGS"]) == on
    bad = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env={**os.environ, "METAJAX_FAST_COMPILE": "yes"})
    assert bad.returncode != 0
    assert "METAJAX_FAST_COMPILE must be 0 or 1, not 'yes'" in bad.stderr.splitlines()[-1]


def test_imported_after_the_backend_started_it_warns():
    code = ("import warnings; warnings.simplefilter('error'); import jax.numpy as jnp; "
            "jnp.zeros(1); import metajax")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "METAJAX_FAST_COMPILE": "1"})
    assert late.returncode != 0
    last = late.stderr.strip().splitlines()[-1]
    assert "imported after XLA's backend started" in last and "import metajax first" in last
    assert "--xla_cpu_use_fusion_emitters=false" in last
    # imported first, or with nothing left to add, it is silent
    first = "import warnings; warnings.simplefilter('error'); import metajax, envs"
    assert subprocess.run([sys.executable, "-c", first], env=env).returncode == 0
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "METAJAX_FAST_COMPILE": "0", "METAJAX_KEEP_YNN": "1",
                               "METAJAX_KEEP_CPU_SCHEDULER": "1"})
    assert done.returncode == 0, done.stderr


def profile_job(out: str) -> None:
    """test_training's small climb run (4 seeds, 40 updates) and the process's XLA flags."""
    import test_training

    test_training.shard_job(out)
    (Path(out) / "flags.json").write_text(json.dumps(os.environ.get("XLA_FLAGS", "")))


def test_default_profile_gives_the_fast_profiles_numbers(tmp_path):
    """What CI does not otherwise run: the default XLA:CPU profile (fusion emitters, LLVM O2)
    on a whole training run. Its metrics equal the fast profile's (this session's) to float
    tolerance: the same program, other generated code."""
    import metajax

    run_in_subprocess("test_xla_flags", "profile_job", tmp_path / "default",
                      {"METAJAX_FAST_COMPILE": "0", "XLA_FLAGS": ""})
    profile_job(str(tmp_path / "fast"))
    got = {p: json.loads((tmp_path / p / "result.json").read_text())["metrics"]
           for p in ("default", "fast")}
    flags = json.loads((tmp_path / "default" / "flags.json").read_text())
    assert not any(f in flags for f in metajax.FAST_COMPILE_FLAGS), flags
    assert len(got["default"]) == len(got["fast"]) >= 2
    for a, b in zip(got["default"], got["fast"], strict=True):
        for k in ("env_steps", "grad_steps", "episodes"):
            assert a[k] == b[k]
        for k in ("episode_return", "critic_loss", "actor_loss", "q_mean"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert min(got["default"][-1]["grad_steps"]) > 0
