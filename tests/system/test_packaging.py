"""The wheel is complete: built from this tree, installed into a fresh venv, every
subpackage imports from the venv (not the checkout) under the one import root `w2s`
and nothing else (`proxy`, `providers`, `scorers` are not importable), and the
embedded default config and the search page's files ship with it.

An editable install hides a missing subpackage (the checkout is on the path),
so this runs the installed copy from a directory outside the checkout. The
venv borrows the heavy dependencies (torch, transformers) from the site-packages
of the interpreter running the tests, whether that is a bare interpreter or
itself a virtualenv; only the project itself is installed into it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

from w2s.proxy.server.ui import asset_bytes
from w2s.proxy.server.ui.routes import ASSETS

ROOT = Path(__file__).resolve().parents[2]

CHECK = r"""
import importlib, json, pkgutil, sys
from pathlib import Path
venv = Path(sys.prefix)
mods = []
for pkg in ("w2s.proxy", "w2s.providers", "w2s.scorers"):
    root = importlib.import_module(pkg)
    mods.append(root)
    for info in pkgutil.walk_packages(root.__path__, pkg + "."):
        mods.append(importlib.import_module(info.name))
outside = [m.__name__ for m in mods if venv not in Path(m.__file__).resolve().parents]
from w2s.proxy.core.config_load import default_config_path, load_config
cfg = load_config()
from w2s.proxy.server.ui import asset_bytes
from w2s.proxy.server.ui.routes import ASSETS
bare = {}
for name in ("proxy", "providers", "scorers"):  # the folders' names: not import roots once installed
    try:
        importlib.import_module(name)
        bare[name] = "imported"
    except ModuleNotFoundError:
        bare[name] = "ModuleNotFoundError"
print(json.dumps({"modules": sorted(m.__name__ for m in mods), "outside": outside, "bare": bare,
                  "config": str(default_config_path()), "routes": sorted(cfg.routes),
                  "page": {name: len(asset_bytes(name)) for name in ASSETS}}))
"""


def run(*cmd, cwd=None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_every_subpackage_imports(tmp_path):
    # Built from a clean copy: setuptools' build/ scratch folder would carry stale modules into the wheel.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                             "results", ".venv"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
        str(src))
    (wheel,) = (tmp_path / "dist").glob("w2s_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("/data/share/w2s-proxy/config.yaml") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    assert {f"w2s/proxy/server/ui/{name}" for name in ASSETS} <= set(names)  # the page ships in the wheel

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # The dependencies: the site-packages this interpreter sees (its venv's, when it runs in one; the
    # base's with --system-site-packages; the user's), after the venv's own. A .pth line only adds the
    # folder: the .pth files in it (this checkout's editable install among them) are not run.
    lib = Path(run(str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    deps = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    assert sysconfig.get_paths()["purelib"] in deps
    (lib / "_test_dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    # pip from this interpreter, aimed at the venv's interpreter.
    run(sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
        "--force-reinstall", str(wheel))
    got = json.loads(run(str(py), "-c", CHECK, cwd=tmp_path).strip().splitlines()[-1])

    shipped = {"w2s." + str(p.relative_to(ROOT).with_suffix("")).replace("/", ".").removesuffix(".__init__")
               for pkg in ("proxy", "providers", "scorers") for p in (ROOT / pkg).rglob("*.py")}
    assert set(got["modules"]) == shipped
    assert got["outside"] == [], f"imported from outside the venv: {got['outside']}"
    assert got["bare"] == dict.fromkeys(("proxy", "providers", "scorers"), "ModuleNotFoundError")
    assert Path(got["config"]).is_relative_to(env_dir) and "w2s-default" in got["routes"]
    assert got["page"] == {name: len(asset_bytes(name)) for name in ASSETS}  # read from the installed copy
    assert "usage: w2s" in run(str(env_dir / "bin" / "w2s"), "--help", cwd=tmp_path)
