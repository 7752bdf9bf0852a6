"""Every bench script imports and parses its arguments; bench/lib holds what they share.

The benches run for minutes to hours, so nothing here runs one: it catches what rots silently (a moved import,
a renamed module, a script that imports another script, a bench helper the tests moved). The server benches'
--quick modes run in tests/system/test_bench_smoke.py.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
# The bench's own files: not a virtualenv kept beside them (bench/.vllm-venv, ignored by git).
BENCH_SOURCES = sorted(p for p in BENCH.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(BENCH).parts))
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")
LIB = sorted(p.stem for p in (BENCH / "lib").glob("*.py") if p.stem != "__init__")
# Arguments a script requires; every other script parses an empty command line.
REQUIRED = {"cost_frontier": ["report"], "trained_guide": ["report"], "plain_words": ["report"], "guide_mixture": ["report"],
            "reward_model_guide": ["report"],
            "vllm_check": ["--base", "http://127.0.0.1:1/v1", "--model-dir", "/nonexistent"]}


def test_the_scripts_are_there():
    assert {"latency", "sentiment", "trained_guide", "plain_words", "scorer"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_and_parses_its_arguments(name):
    module = importlib.import_module(f"bench.{name}")
    args = module.parser().parse_args(REQUIRED.get(name, []))
    assert vars(args)
    assert callable(module.main)


@pytest.mark.parametrize("name", LIB)
def test_lib_module_imports(name):
    """testkit included: it imports the test suite's fakes the benches reuse, so a move there fails here."""
    importlib.import_module(f"bench.lib.{name}")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("path", BENCH_SOURCES, ids=lambda p: str(p.relative_to(BENCH)))
def test_no_sys_path_editing_and_no_script_imports_a_script(path):
    source = path.read_text()
    assert "sys.path" not in source, f"{path}: run it as python -m bench.<script> instead"
    scripts = {f"bench.{s}" for s in SCRIPTS}
    assert not _imports(path) & scripts, f"{path} imports a script; shared code belongs in bench/lib"


@pytest.mark.parametrize("path", BENCH_SOURCES, ids=lambda p: str(p.relative_to(BENCH)))
def test_every_bench_import_resolves(path):
    """Imports inside functions included: a lazy `from bench.x import y` is only found when the bench runs."""
    for name in sorted(n for n in _imports(path) if n.startswith("bench.")):
        module, _, attr = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attr), f"{path}: {name} does not exist"


def test_stats():
    from bench.lib import stats

    m, se = stats.mean_se([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and se == pytest.approx(0.6455, abs=1e-4)
    assert stats.paired_diff([3.0, 5.0], [1.0, 2.0]) == stats.mean_se([2.0, 3.0])
    assert stats.win_rate([1.0, 2.0, 3.0], [1.0, 3.0, 0.0]) == pytest.approx(0.5)  # a tie, a loss, a win
    assert stats.win_rate([1.0, 2.0], [2.0, 1.0], sign=-1) == 0.5  # lower wins
    assert stats.share([0.1, -0.2, 0.3, 0.0], lambda x: x > 0.05) == 0.5
    assert stats.nearest_rank([3.0, 1.0, 2.0], 0.5) == 2.0 and stats.quantile([1.0, 2.0], 0.5) == 1.5


def test_table():
    from bench.lib.tables import pm, table

    assert table(["a", "b"], [[1, 0.5], ["x", float("nan")]]).splitlines() == [
        "| a | b |", "|---|---|", "| 1 | 0.5 |", "| x | — |"]
    assert pm((0.1234, 0.0456)) == "+0.123 ± 0.046"
