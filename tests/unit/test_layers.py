"""The architecture, enforced: which package may import which.

Layers, lowest first (a layer imports only from layers below it; the packages
of one layer are independent of each other):

    core < runtime < providers | scorers | train < engine < api < server | batch < cli

`api` (the wire formats: protocol models, response bodies, error bodies) sits
under both transports so that the HTTP server and batch files build the same
bodies while staying independent of each other.

The check reads every module's syntax tree and walks *all* of it
(`ast.walk`), so an import inside a function, a method, a `TYPE_CHECKING`
block or a `try` counts exactly like one at the top of the file.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "providers", "scorers")  # folders; installed under the one root w2s
LAYERS: list[tuple[str, ...]] = [  # lowest first; a tuple of independent siblings
    ("w2s.proxy.core",),
    ("w2s.proxy.runtime",),
    ("w2s.providers", "w2s.scorers", "w2s.proxy.train"),
    ("w2s.proxy.engine",),
    ("w2s.proxy.api",),
    ("w2s.proxy.server", "w2s.proxy.batch"),
    ("w2s.proxy.cli",),
]
# Third-party packages a layer must never touch (what "pure" and "transport-free" mean).
FORBIDDEN = {
    "w2s.proxy.core": {"aiohttp", "torch", "transformers", "peft", "openai", "anthropic", "httpx", "httpx2",
                   "tenacity", "tiktoken", "prometheus_client", "trl", "datasets"},
    "w2s.proxy.runtime": {"aiohttp", "openai", "anthropic", "prometheus_client"},
    "w2s.proxy.api": {"aiohttp", "torch", "transformers", "prometheus_client"},
    "w2s.proxy.train": {"aiohttp", "openai", "anthropic", "prometheus_client"},  # training talks to no server
}
def group_of(module: str) -> str | None:
    """The layer entry a dotted module name belongs to (longest match), or None (outside the project)."""
    best = None
    for layer in LAYERS:
        for g in layer:
            if (module == g or module.startswith(g + ".")) and (best is None or len(g) > len(best)):
                best = g
    return best


def level_of(group: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["w2s", *parts])


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import anywhere in `source`, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            out.append((node.lineno, base))
            # `from proxy.api import wire_errors` imports the submodule proxy.api.wire_errors.
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
    return out


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    mine = group_of(module)
    if mine is None:
        return []
    bad = []
    for line, target in imports_of(source, module, is_package):
        top = target.split(".")[0]
        if top in FORBIDDEN.get(mine, ()):
            bad.append(f"{module}:{line} imports {target} (not allowed in {mine})")
        theirs = group_of(target)
        if theirs is None or theirs == mine:
            continue
        if level_of(theirs) >= level_of(mine):
            bad.append(f"{module}:{line} imports {target} ({mine} may not import {theirs})")
    return bad


def project_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_module_imports_only_from_layers_below():
    bad = []
    for path in project_modules():
        bad += violations(module_name(path), path.read_text(), path.name == "__init__.py")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_every_module_belongs_to_a_layer():
    """Also what keeps old paths from coming back as shims: a module at one (w2s.proxy.types, .search,
    .config, ...) is in no layer and fails here; the bare roots (proxy, providers, scorers) are
    checked on the installed wheel (tests/system/test_packaging.py)."""
    homeless = [module_name(p) for p in project_modules()
                if group_of(module_name(p)) is None and module_name(p) != "w2s.proxy"]
    assert not homeless


def test_the_check_sees_imports_inside_functions_and_type_checking_blocks():
    src = ("from typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from w2s.proxy.engine import Engine\n"
           "def f():\n    import w2s.proxy.server.app\n"
           "class C:\n    def m(self):\n        from . import rows\n")
    found = violations("w2s.proxy.core.search", src)
    assert any("w2s.proxy.engine" in v for v in found) and any("w2s.proxy.server.app" in v for v in found)
    assert violations("w2s.scorers.pair", "def f():\n    from w2s.providers import local\n")  # siblings: independent
    assert not violations("w2s.scorers.pair", "def f():\n    from . import rows\n")
    assert violations("w2s.proxy.core.types", "def f():\n    import torch\n")  # core stays pure


def test_few_modules_at_proxys_top_level():
    top = sorted(p.name for p in (ROOT / "proxy").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 6, top


def test_the_search_is_named_steps_none_long_or_complex():
    from radon.complexity import cc_visit

    path = ROOT / "proxy" / "core" / "search.py"
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= 40, f"{node.name} is over 40 lines"
    worst = max(cc_visit(source), key=lambda b: b.complexity)
    assert worst.complexity <= 25, f"{worst.name}: cyclomatic complexity {worst.complexity}"


def test_no_function_in_providers_is_complex():
    """One sampler class per way of drawing keeps each provider's functions simple (radon cc <= 12)."""
    from radon.complexity import cc_visit

    worst = max((b.complexity, f"{p.relative_to(ROOT)}:{b.name}")
                for p in (ROOT / "providers").rglob("*.py") for b in cc_visit(p.read_text()))
    assert worst[0] <= 12, f"{worst[1]}: cyclomatic complexity {worst[0]}"
