"""The registries are literal tables: names are known before their modules load, every entry
resolves to what it claims, and unknown names fail with one line listing the known ones."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import metajax
from metajax.config import resolve
from metajax.core import interfaces
from metajax.pipelines import experiment as xp
from metajax.pipelines import runner


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
        assert isinstance(tr, interfaces.Traceable)
        # MADDPG and MRA trace their numeric hyperparameters; PPO/QMIX/VDN none (one group
        # per grid point)
        assert bool(tr.keys) == (algo in ("maddpg", "mra")), algo
    assert set(runner.TRACEABLE) == set(runner.ALGOS)  # every learner can be swept
    assert runner.traceable("no-such-algo") is None


def test_unknown_names_list_the_known_ones():
    with pytest.raises(xp.ExperimentError, match=r"known: .*mesa.*mra.*train"):
        xp.get_pipeline("nope")
    with pytest.raises(ValueError, match="known: ippo, maddpg, mappo, mra, qmix, vdn"):
        runner.learner_factory("nope")
    with pytest.raises(ValueError, match="unknown algo 'nope'"):
        runner.TrainConfig(algo="nope")


def test_resolve_reports_a_missing_attribute():
    with pytest.raises(AttributeError, match="no_such_thing"):
        resolve("metajax.pipelines.runner:no_such_thing")


def test_nothing_registers_on_import():
    """``TrainConfig(algo="mra")`` validates without importing ``metajax.algos.mra``, and importing
    the algorithm modules leaves the tables as they were (no import-time registration)."""
    code = (
        "import sys\n"
        "from metajax.pipelines import registry as r, runner\n"
        "before = (dict(r.PIPELINES), dict(r.ALGOS), dict(r.TRACEABLE))\n"
        "runner.TrainConfig(algo='mra')\n"
        "assert 'metajax.algos.mra' not in sys.modules, 'mra imported by validation'\n"
        "import metajax.algos.mra, metajax.pipelines.mesa, metajax.pipelines.mra_compare\n"
        "after = (dict(r.PIPELINES), dict(r.ALGOS), dict(r.TRACEABLE))\n"
        "assert before == after, (before, after)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


#: The layers of ``metajax`` (ARCHITECTURE.md): a module may import from its own layer and the
#: layers below it only. ``config``, ``stats`` and ``plots`` import nothing of ``metajax``.
LAYERS = {"config": 0, "stats": 0, "plots": 0, "core": 1, "train": 2, "algos": 3,
          "pipelines": 4, "cli": 5}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if parts[0] == "metajax" and len(parts) > 1 else None


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """Every metajax module an ``import`` statement names (at any depth, so lazy imports inside
    functions count too), with its line."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = ([f"metajax.{a.name}" for a in node.names] if node.module == "metajax"
                     else [node.module])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(n, node.lineno) for n in names]
    return out


def test_no_module_imports_from_a_layer_above_its_own():
    root = Path(metajax.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 20
    upward = []
    for path in files:
        module = ".".join(("metajax", *path.relative_to(root).with_suffix("").parts))
        mine = _layer(module.removesuffix(".__init__"))
        if mine is None:
            continue
        for name, line in _imports(ast.parse(path.read_text())):
            theirs = _layer(name)
            if theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(root)}:{line} imports {name}")
    assert not upward, upward


def test_the_layer_check_sees_an_upward_import():
    tree = ast.parse("def f():\n    from metajax.pipelines import runner\n")
    assert [_layer(n) for n, _ in _imports(tree)] == [4]


def test_an_experiment_importing_a_moved_module_names_its_new_home(tmp_path):
    path = tmp_path / "old.py"
    path.write_text("from metajax.runner import TrainConfig\nCONFIG = TrainConfig()\n")
    with pytest.raises(xp.ExperimentError, match=r"imports metajax\.runner, which has moved: "
                                                 r"import from metajax\.pipelines\.runner"):
        xp.load_experiment(path)
