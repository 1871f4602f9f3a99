"""The registries are literal tables: names are known before their modules load, every entry
resolves to what it claims, and unknown names fail with one line listing the known ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metajax import experiment as xp
from metajax import runner
from metajax.config import resolve


@pytest.mark.parametrize("name", sorted(xp.PIPELINES))
def test_every_pipeline_resolves(name):
    p = xp.get_pipeline(name)
    assert isinstance(p, xp.Pipeline)
    assert callable(p.run) and isinstance(p.config_type, type)


@pytest.mark.parametrize("algo", sorted(runner.ALGOS))
def test_every_learner_factory_resolves(algo):
    assert callable(runner.learner_factory(algo))


def test_traceable_entries():
    for algo in runner.TRACEABLE:
        tr = runner.traceable(algo)
        assert isinstance(tr, runner.Traceable) and tr.keys
    assert runner.traceable("no-such-algo") is None


def test_unknown_names_list_the_known_ones():
    with pytest.raises(xp.ExperimentError, match=r"known: .*mesa.*mra.*train"):
        xp.get_pipeline("nope")
    with pytest.raises(ValueError, match="known: maddpg, mra"):
        runner.learner_factory("nope")
    with pytest.raises(ValueError, match="unknown algo 'nope'"):
        runner.TrainConfig(algo="nope")


def test_resolve_reports_a_missing_attribute():
    with pytest.raises(AttributeError, match="no_such_thing"):
        resolve("metajax.runner:no_such_thing")


def test_nothing_registers_on_import():
    """``TrainConfig(algo="mra")`` validates without importing ``metajax.mra``, and importing the
    algorithm modules leaves the tables as they were (no import-time registration)."""
    code = (
        "import sys\n"
        "from metajax import experiment as xp, runner\n"
        "before = (dict(xp.PIPELINES), dict(runner.ALGOS), dict(runner.TRACEABLE))\n"
        "runner.TrainConfig(algo='mra')\n"
        "assert 'metajax.mra' not in sys.modules, 'mra imported by validation'\n"
        "import metajax.mra, metajax.mesa, metajax.mra_experiments\n"
        "after = (dict(xp.PIPELINES), dict(runner.ALGOS), dict(runner.TRACEABLE))\n"
        "assert before == after, (before, after)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
