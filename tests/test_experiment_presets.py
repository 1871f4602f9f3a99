"""Every experiment file loads, with its defaults and with each of its presets (a preset that
fails to configure is only found by the user who asks for it, e.g. on a lent GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metajax.pipelines import experiment as xp

FILES = sorted(Path(__file__).parents[1].glob("experiments/*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_preset_configures(path):
    exp = xp.load_experiment(path)
    xp.configure(exp, ())
    for preset in exp.presets:
        xp.configure(exp, (preset,))
