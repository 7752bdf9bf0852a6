"""Running the `w2s` command as a subprocess, as a user would."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def w2s(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "w2s.proxy.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def write_config(tmp_path, data) -> str:
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)
